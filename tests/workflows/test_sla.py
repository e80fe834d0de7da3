"""The SLA scenario end to end: the starter workflow, a fake Slack, the Claim button, a 2 s SLA."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from opsloop import outbox
from opsloop.events.signatures import SignedRequest, make_preset
from opsloop.project.config import SignatureConfig

from ..conftest import ServerThread, wait_for
from ..test_inbox import signed_post
from .conftest import runs_of, use_slack, wait_runs, write_files
from .fake_slack import FakeSlack

SLA_SCALE = 2 / 900  # the starter's 15 min SLA becomes 2 s
SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_env(root: Path, slack: FakeSlack) -> None:
    use_slack(root, slack)
    with (root / ".env").open("a") as env:
        env.write(f"SLACK_SIGNING_SECRET={SIGNING}\n")


def click_claim(srv: ServerThread, message: dict[str, Any], channel: str, user: str = "ada",
                secret: str = SIGNING) -> httpx.Response:
    button = message["blocks"][1]["elements"][0]
    payload = {
        "type": "block_actions", "user": {"id": "U0ADA00001", "username": user, "name": user},
        "channel": {"id": channel}, "message": {"ts": message["ts"]}, "container": {"message_ts": message["ts"]},
        "actions": [{"action_id": button["action_id"], "block_id": "opsloop_actions", "value": button["value"],
                     "type": "button", "action_ts": f"{time.time():.6f}"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    preset = make_preset(SignatureConfig(preset="slack", secret_env="SLACK_SIGNING_SECRET"), secret)
    headers = preset.sign(SignedRequest(body, {}), time.time())
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return httpx.post(f"{srv.url}/slack/interactions", content=body, headers=headers, timeout=10)


def sales(slack: FakeSlack) -> list[dict[str, Any]]:
    return slack.messages["C0SALES001"]


def test_unclaimed_request_breaches_then_a_click_claims_it(project_dir: Path, fake_slack: FakeSlack,
                                                           start: Callable[..., ServerThread]) -> None:
    slack_env(project_dir, fake_slack)
    srv = start(project_dir, time_scale=SLA_SCALE)
    signed_post(srv, "demo_request", {"email": "ada@example.com", "name": "Ada", "company": "AE"}, msg_id="d-1")
    [message] = wait_for(lambda: sales(fake_slack), what="the Slack post")
    assert message["text"] == "New demo request: Ada <ada@example.com> AE"
    assert message["blocks"][1]["elements"][0]["text"]["text"] == "Claim"
    posted = time.time()
    wait_for(lambda: "SLA breached" in message["text"], timeout=10, what="the breach update")
    assert 1.5 < time.time() - posted < 6  # the 15 min SLA, scaled to 2 s
    assert message["text"].startswith(":warning: SLA breached, unclaimed for 15 min: Ada")
    breaches = wait_for(lambda: srv.app.store.list_events(name="sla.breached"), what="an sla.breached event")
    assert len(breaches) == 1 and breaches[0].payload["ts"] == message["ts"]
    assert click_claim(srv, message, "C0SALES001", user="grace").status_code == 200
    wait_for(lambda: "claimed by grace" in message["text"], what="the claim update")
    assert message["text"].startswith(":white_check_mark: Ada claimed by grace after ")
    assert "blocks" not in message  # the Claim button is gone
    [run] = wait_runs(srv, 1)
    assert run.output["breached"] is True and run.output["claimed_by"] == "grace"
    assert len(fake_slack.posts()) == 1  # one message, updated in place
    assert len(fake_slack.method_calls("chat.update")) == 2


def test_claim_within_the_sla_updates_the_message_with_who_and_when(project_dir: Path, fake_slack: FakeSlack,
                                                                    start: Callable[..., ServerThread]) -> None:
    slack_env(project_dir, fake_slack)
    srv = start(project_dir, time_scale=SLA_SCALE)
    signed_post(srv, "demo_request", {"email": "bo@example.com", "name": "Bo"}, msg_id="d-2")
    [message] = wait_for(lambda: sales(fake_slack), what="the Slack post")
    assert click_claim(srv, message, "C0SALES001", user="lin").status_code == 200
    [run] = wait_runs(srv, 1)
    assert message["text"].startswith(":white_check_mark: Bo claimed by lin after ")
    assert message["text"].endswith(" s")
    assert run.output["breached"] is False
    assert srv.app.store.list_events(name="sla.breached") == []


def test_interactions_with_a_bad_signature_are_refused(project_dir: Path, fake_slack: FakeSlack,
                                                       start: Callable[..., ServerThread]) -> None:
    slack_env(project_dir, fake_slack)
    srv = start(project_dir, time_scale=SLA_SCALE)
    signed_post(srv, "demo_request", {"email": "c@example.com", "name": "C"}, msg_id="d-3")
    [message] = wait_for(lambda: sales(fake_slack), what="the Slack post")
    response = click_claim(srv, message, "C0SALES001", secret="not-the-secret")
    assert response.status_code == 401 and "signature" in response.json()["error"]
    assert srv.app.store.list_events(name="demo_request.claimed") == []


def test_without_a_slack_token_the_starter_uses_the_sandbox_outbox(project_dir: Path,
                                                                   start: Callable[..., ServerThread]) -> None:
    srv = start(project_dir, time_scale=SLA_SCALE)
    signed_post(srv, "demo_request", {"email": "d@example.com", "name": "Dee"}, msg_id="d-4")
    [item] = wait_for(lambda: outbox.list_items(srv.app.store, "slack"), what="an outbox message")
    assert item.payload["text"].startswith("New demo request: Dee")
    wait_for(lambda: (i := outbox.get(srv.app.store, item.id)) and "SLA breached" in i.payload["text"],
             timeout=10, what="the sandbox message updated in place")
    assert len(outbox.list_items(srv.app.store, "slack")) == 1


def test_429_retry_after_is_honoured_and_the_message_posted_once(project_dir: Path, fake_slack: FakeSlack,
                                                                 start: Callable[..., ServerThread]) -> None:
    slack_env(project_dir, fake_slack)
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    srv = start(project_dir, time_scale=SLA_SCALE)
    signed_post(srv, "demo_request", {"email": "e@example.com", "name": "E"}, msg_id="d-5")
    wait_for(lambda: sales(fake_slack), what="the Slack post")
    attempts = [t for t, m, _ in fake_slack.calls if m == "chat.postMessage"]
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 0.95
    assert len(sales(fake_slack)) == 1


def test_slack_errors_fail_the_run_with_slacks_own_error(project_dir: Path, fake_slack: FakeSlack,
                                                         start: Callable[..., ServerThread]) -> None:
    slack_env(project_dir, fake_slack)
    write_files(project_dir, {"workflows/demo_request_sla.yml": """
        on: demo_request.created
        steps:
          - id: notify
            slack.post: {channel: "#nowhere", text: "hi {{ event.data.name }}"}
    """})
    srv = start(project_dir, time_scale=SLA_SCALE)
    signed_post(srv, "demo_request", {"email": "f@example.com", "name": "F"}, msg_id="d-6")
    [run] = wait_runs(srv, 1, status="failed")
    assert "channel_not_found" in str(run.error) and "invite the bot" in str(run.error)
    assert len(fake_slack.posts()) == 1  # a terminal error is not retried
    assert runs_of(srv)[0].status == "failed"
