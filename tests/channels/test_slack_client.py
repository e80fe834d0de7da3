"""The Slack channel's client against the local Slack Web API (tests/workflows/fake_slack.py, a real HTTP
server): calls reuse kept-open connections, and Slack's answers become the same typed errors as before
(429 with Retry-After, refusals with Slack's code, timeouts and unreachable servers as transient)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from opsloop.channels import SlackClient, SlackRefused, SlackSettings
from opsloop.errors import TransientDeliveryError

from ..workflows.fake_slack import TOKEN, FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def client_for(fake: FakeSlack, **changes: Any) -> SlackClient:
    return SlackClient(replace(SlackSettings(token=TOKEN, api_url=fake.url), **changes))


def test_several_calls_reuse_one_connection(slack: FakeSlack) -> None:
    client = client_for(slack)
    try:
        handles = [client.post_message("#sales", f"hello {n}") for n in range(20)]
        listed = client.call("conversations.list", limit=200)
        client.call("chat.update", channel=handles[0]["channel"], ts=handles[0]["ts"], text="edited")
    finally:
        client.close()
    assert [h["channel"] for h in handles] == ["C0SALES001"] * 20
    assert {c["name"] for c in listed["channels"]} == {"sales", "general", "ops"}
    assert len(slack.calls) == 22
    assert slack.connections == 1


def test_threads_calling_at_once_share_a_few_kept_open_connections(slack: FakeSlack) -> None:
    client = client_for(slack)
    start = threading.Barrier(4)

    def post_five(n: int) -> None:
        start.wait(timeout=10)
        for i in range(5):
            client.post_message("#ops", f"thread {n} message {i}")

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post_five, range(4)))
    finally:
        client.close()
    assert len(slack.posts()) == 20
    assert 1 <= slack.connections <= 4  # one per thread calling at once at most, not one per call


def test_a_429_is_transient_and_carries_retry_after_and_the_connection_stays_usable(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.rate_limit("chat.postMessage", times=1, retry_after=7)
    try:
        with pytest.raises(TransientDeliveryError, match=r"Slack chat\.postMessage: ratelimited") as info:
            client.post_message("#sales", "too soon")
        assert info.value.retry_after == 7
        assert client.post_message("#sales", "now")["channel"] == "C0SALES001"
    finally:
        client.close()
    assert slack.connections == 1


def test_refusals_name_slacks_error_with_a_hint(slack: FakeSlack) -> None:
    client = client_for(slack)
    wrong = client_for(slack, token="xoxb-wrong", token_env="OPS_SLACK")
    try:
        with pytest.raises(SlackRefused, match=r"channel_not_found \(check the channel name") as info:
            client.post_message("#nowhere", "hi")
        assert info.value.code == "channel_not_found"
        with pytest.raises(SlackRefused, match=r"invalid_auth \(the bot token in OPS_SLACK is wrong or revoked\)"):
            wrong.post_message("#sales", "hi")
        with pytest.raises(SlackRefused, match=r"Slack chat\.bogus failed: unknown_method"):
            client.call("chat.bogus")
    finally:
        client.close()
        wrong.close()


def test_a_slow_answer_times_out_as_a_transient_error(slack: FakeSlack) -> None:
    slack.delay["chat.postMessage"] = 1.5
    client = client_for(slack, timeout=0.3)
    try:
        with pytest.raises(TransientDeliveryError, match=r"cannot reach .*ReadTimeout|cannot reach .*timed out"):
            client.post_message("#sales", "slow")
        slack.delay.clear()
        assert client.post_message("#sales", "quick")["channel"] == "C0SALES001"  # a fresh connection
    finally:
        client.close()


def test_an_unreachable_api_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = SlackClient(SlackSettings(token=TOKEN, api_url=f"http://127.0.0.1:{port}/api/", timeout=2))
    try:
        with pytest.raises(TransientDeliveryError, match=rf"cannot reach http://127\.0\.0\.1:{port}/api/"):
            client.post_message("#sales", "hi")
    finally:
        client.close()
