"""YAML workflows: validation with file:line through `opsloop validate`, and the interpreter's control flow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from opsloop.workflows import runs

from ..conftest import ServerThread, run_cli, wait_for
from .conftest import emit, use_slack, wait_runs, write_files
from .fake_slack import FakeSlack

BAD = """
on: demo_request.created
steps:
  - id: notify
    slack.post: {channel: "#sales", text: "hi {{ event.data.name }}"}
  - slack.update: {message: "{{ steps.notfy }}", text: "x"}
  - id: wait
    wait_for: {event: demo_request.claimed, match: "event.data.email == == 1", timeout: 15x}
  - slack.pots: {channel: "#sales", text: "typo"}
  - if: "steps.wait is none"
    then:
      - event.emit: {name: escalated, data: "{{ steps.later.id }}"}
"""


def test_validate_names_every_problem_with_file_and_line(project_dir: Path) -> None:
    write_files(project_dir, {"workflows/bad.yml": BAD})
    result = run_cli("validate", "--project", str(project_dir))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "workflows/bad.yml:5: unknown step 'notfy'" in out and "did you mean 'notify'?" in out
    assert "workflows/bad.yml:7: bad Jinja" in out
    assert "workflows/bad.yml:7: '15x' is not a duration" in out
    assert "workflows/bad.yml:8: unknown action or step key 'slack.pots'" in out and "'slack.post'" in out
    assert "workflows/bad.yml:11: unknown step 'later'" in out
    assert "Traceback" not in out


def test_python_workflow_import_errors_point_at_the_line(project_dir: Path) -> None:
    write_files(project_dir, {"workflows/broken.py": "from opsloop import workflow\n\nx = 1 / 0\n"})
    result = run_cli("validate", "--project", str(project_dir))
    assert result.returncode != 0
    assert "workflows/broken.py:3: importing this file failed: ZeroDivisionError" in result.stdout + result.stderr


FLOW = """
on: lead.created
retries: 0
steps:
  - id: notify
    slack.post: {channel: "#sales", text: "Lead {{ event.data.email }}"}
  - id: answer
    wait_for: {event: lead.answered, match: "event.data.email == trigger.data.email", timeout: 1s}
  - if: "steps.answer is none"
    then:
      - id: nudge
        slack.update: {message: "{{ steps.notify }}", text: "No answer from {{ event.data.email }}"}
      - id: escalated
        event.emit: {name: lead.escalated, data: {email: "{{ event.data.email }}", ts: "{{ steps.notify.ts }}"}}
    else:
      - id: thanks
        slack.update: {message: "{{ steps.notify }}", text: "Answered by {{ steps.answer.data.by }}"}
  - id: pause
    sleep: 1s
"""


def test_yaml_if_else_wait_emit_sleep(project_dir: Path, fake_slack: FakeSlack,
                                      start: Callable[..., ServerThread]) -> None:
    use_slack(project_dir, fake_slack)
    write_files(project_dir, {"workflows/lead.yml": FLOW})
    srv = start(project_dir, time_scale=0.5)
    emit(srv, "lead.created", {"email": "a@x.com"})
    emit(srv, "lead.created", {"email": "b@x.com"})
    wait_for(lambda: len(fake_slack.all_messages()) == 2, what="two posts")
    emit(srv, "lead.answered", {"email": "b@x.com", "by": "sam"})
    done = wait_runs(srv, 2, workflow="lead")
    texts = sorted(m["text"] for m in fake_slack.all_messages())
    assert texts == ["Answered by sam", "No answer from a@x.com"]
    [escalated] = srv.app.store.list_events(name="lead.escalated")
    assert escalated.payload["email"] == "a@x.com"
    by_email = {r.trigger["data"]["email"]: r for r in done if r.trigger}
    steps_a = [s["step"] for s in runs.run_steps(srv.app.store, by_email["a@x.com"].id)]
    assert steps_a == ["notify", "answer", "nudge", "escalated", "pause"]
    steps_b = [s["step"] for s in runs.run_steps(srv.app.store, by_email["b@x.com"].id)]
    assert steps_b == ["notify", "answer", "thanks", "pause"]
