"""`server.receiver_processes`: webhooks verified and answered in separate processes, committed by the main
one; every other request passes through to the main process."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from opsloop import load_project
from opsloop.events.signatures import SignedRequest, make_preset

from .conftest import free_port, run_cli, wait_for
from .test_cli_server import UpProcess, receiver_pids


def _signer(root: Path):  # type: ignore[no-untyped-def]
    project = load_project(root)
    cfg = project.endpoints["demo_request"]
    preset = make_preset(cfg.signature, project.secret(cfg.signature.secret_env or ""))
    token = project.env["OPSLOOP_API_TOKEN"]

    def sign(body: bytes, msg_id: str) -> dict[str, str]:
        return {**preset.sign(SignedRequest(body, {"webhook-id": msg_id}), time.time()),
                "content-type": "application/json"}

    return sign, token


@pytest.mark.slow
def test_receiver_takes_webhooks_and_passes_everything_else_through(project_dir: Path) -> None:
    sign, token = _signer(project_dir)
    up = UpProcess(project_dir, free_port(), "--receivers", "1")
    try:
        [receiver] = receiver_pids(up.proc.pid)
        sent = run_cli("send", "demo_request", "@samples/demo_request.json", "--url", up.url, "--json",
                       cwd=project_dir)
        assert sent.returncode == 0, sent.stderr
        event_id = json.loads(sent.stdout)["id"]
        bad = httpx.post(f"{up.url}/hooks/demo_request", content=b'{"email": "nope", "name": "x"}',
                         headers=sign(b'{"email": "nope", "name": "x"}', "m-bad"))
        assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/email"
        body = b'{"email": "ok@example.com", "name": "Ok"}'
        tampered = httpx.post(f"{up.url}/hooks/demo_request", content=body + b" ", headers=sign(body, "m-t"))
        assert tampered.status_code == 401
        assert httpx.post(f"{up.url}/hooks/nope", content=body).status_code == 404

        # the same delivery posted 16 times at once: accepted once, the others answer with its id
        dup_headers = sign(body, "m-dup")
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def post() -> None:
            r = httpx.post(f"{up.url}/hooks/demo_request", content=body, headers=dup_headers, timeout=10)
            with lock:
                answers.append(r)

        threads = [threading.Thread(target=post) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * 15 + [202], codes
        assert len({r.json()["id"] for r in answers}) == 1

        # the API, pages and login pass through to the main process, auth included
        api = httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        listed = wait_for(lambda: [e for e in api.get("/api/events", params={"status": "dispatched"}).json()["events"]
                                   if e["id"] == event_id], 20, what="the event to be dispatched")
        assert listed[0]["endpoint"] == "demo_request"
        assert httpx.get(f"{up.url}/api/events").status_code == 401
        home = httpx.get(f"{up.url}/")
        assert home.status_code == 303 and home.headers["location"].startswith("/login")
        login = httpx.get(f"{up.url}/login")
        assert login.status_code == 200 and "text/html" in login.headers["content-type"]
        assert len(login.headers.get_list("date")) == 1
        with httpx.Client(base_url=up.url, timeout=10) as browser:
            signed_in = browser.post("/login", data={"token": token, "next": "/events"})
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/events"
            page = browser.get("/events")
            assert page.status_code == 200 and event_id in page.text
        status = api.get("/api/status")
        assert status.status_code == 200

        # a receiver that dies is replaced; webhooks are answered again
        os.kill(receiver, signal.SIGKILL)
        replaced = wait_for(lambda: [p for p in receiver_pids(up.proc.pid) if p != receiver], 20,
                            what="a new receiver process")
        again = wait_for(lambda: _post_ok(up.url, body, sign), 20, what="webhooks to be answered again")
        assert again == 202
        runtime = _runtime_dir(replaced[0])
        assert runtime.is_dir()
    finally:
        code = up.stop(signal.SIGTERM)
    assert code == 0
    assert receiver_pids(up.proc.pid) == []
    assert not runtime.exists()


def test_restart_delay_grows_while_a_receiver_fails_at_start() -> None:
    from opsloop._receivers import restart_delay

    assert [restart_delay(n) for n in range(8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@pytest.mark.slow
def test_a_receiver_failing_at_start_is_retried_more_slowly_and_comes_back(project_dir: Path) -> None:
    sign, _ = _signer(project_dir)
    up = UpProcess(project_dir, free_port(), "--receivers", "1")
    lines = up.lines
    config = project_dir / "opsloop.yml"
    good = config.read_text()
    try:
        receiver = wait_for(lambda: receiver_pids(up.proc.pid), 20, what="the receiver process")[0]
        config.write_text(good + "server_typo: [\n")  # receivers started from now on cannot load the project
        os.kill(receiver, signal.SIGKILL)
        wait_for(lambda: any("starting another in 4.0 s" in line for line in lines), 40,
                 what="the third restart, 4 s after the second")
        delays = [line.split("starting another in ")[1].split(" s")[0] for line in lines
                  if "starting another in" in line]
        # (the first is 0.0 instead when the killed receiver had already run for 10 s on a slow machine)
        assert delays[delays.index("4.0") - 2:delays.index("4.0") + 1] == ["1.0", "2.0", "4.0"], lines
        assert up.proc.poll() is None  # the main process keeps running (and committing) meanwhile
        config.write_text(good)
        body = json.dumps({"email": "back@example.com", "name": "Back"}).encode()
        assert wait_for(lambda: _post_ok(up.url, body, sign), 60, what="a receiver to start again") == 202
    finally:
        config.write_text(good)
        code = up.stop(signal.SIGTERM)
    assert code == 0


def _post_ok(url: str, body: bytes, sign) -> int | None:  # type: ignore[no-untyped-def]
    try:
        r = httpx.post(f"{url}/hooks/demo_request", content=body, headers=sign(body, f"m-{time.time()}"))
    except httpx.HTTPError:
        return None
    return r.status_code if r.status_code == 202 else None


def _runtime_dir(pid: int) -> Path:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return Path(args[args.index("--dir") + 1])


@pytest.mark.slow
def test_sigterm_drains_receivers_first(project_dir: Path) -> None:
    """Requests in flight when the stop begins are answered and committed; after the stop nothing answers."""
    sign, _ = _signer(project_dir)
    up = UpProcess(project_dir, free_port(), "--receivers", "2")
    acked: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not stop.is_set():
                i += 1
                body = json.dumps({"email": f"w{worker}-{i}@example.com", "name": "x"}).encode()
                try:
                    r = client.post(f"{up.url}/hooks/demo_request", content=body, headers=sign(body, f"{worker}-{i}"))
                except httpx.HTTPError:
                    return
                if r.status_code == 202:
                    acked.append(r.json()["id"])

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) > 50, 30, what="some webhooks to be accepted")
    assert len(receiver_pids(up.proc.pid)) == 2
    code = up.stop(signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(20)
    assert code == 0
    out = "".join(up.lines)
    assert "2 receiver process(es)" in out and "stopped cleanly" in out
    shown = run_cli("events", "--json", "--limit", "100000", cwd=project_dir)
    stored = {e["id"] for e in json.loads(shown.stdout)}
    assert set(acked) <= stored


def test_bad_receiver_settings_are_refused(project_dir: Path) -> None:
    bad_env = run_cli("up", "--port", str(free_port()), cwd=project_dir,
                      env={"OPSLOOP_RECEIVER_PROCESSES": "two"}, timeout=30)
    assert bad_env.returncode == 1
    assert "OPSLOOP_RECEIVER_PROCESSES='two' is not a whole number" in bad_env.stderr
    config = project_dir / "opsloop.yml"
    config.write_text(config.read_text().replace("server:\n", "server:\n  receiver_processes: -1\n", 1))
    checked = run_cli("validate", cwd=project_dir)
    assert checked.returncode == 1 and "opsloop.yml" in checked.stderr and "receiver_processes" in checked.stderr


def test_port_in_use_is_a_clear_error(project_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_cli("up", "--port", str(port), "--receivers", "1", cwd=project_dir, timeout=30)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr


# -- receiver_processes: auto ----------------------------------------------------------------------


def test_auto_starts_one_receiver_per_spare_core_and_none_on_one_core() -> None:
    from opsloop.settings import AUTO_RECEIVERS_MAX, auto_receivers

    assert [auto_receivers(n) for n in (1, 2, 3, 4)] == [0, 1, 2, 3]
    assert auto_receivers(64) == AUTO_RECEIVERS_MAX == 4


def test_usable_cores_follow_a_cgroup_cpu_quota(tmp_path: Path) -> None:
    from opsloop.settings import usable_cores

    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # docker run --cpus 1.5: one whole core
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("20000 100000\n")  # a fifth of a core still runs the main process
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # cgroup v1, no quota
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(tmp_path) == affinity
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert usable_cores(tmp_path) == 1


def _set_receivers(root: Path, value: str) -> int:
    """Write ``server.receiver_processes: value`` into opsloop.yml; returns its line number."""
    config = root / "opsloop.yml"
    text = config.read_text()
    assert "receiver_processes" not in text
    text = text.replace("server:\n", f"server:\n  receiver_processes: {value}\n", 1)
    config.write_text(text)
    return text.splitlines().index(f"  receiver_processes: {value}") + 1


def test_auto_is_the_default_and_resolves_on_the_cores_and_the_role(project_dir: Path) -> None:
    from opsloop.project.config import ServerConfig
    from opsloop.settings import resolve_settings

    assert ServerConfig().receiver_processes == "auto"
    settings = resolve_settings(load_project(project_dir))
    assert settings.receiver_processes == "auto"
    assert [settings.receivers(cores=n) for n in (1, 2, 8)] == [0, 1, 4]
    # past one machine a receiver or worker process takes no receivers of its own (and is not refused)
    assert settings.with_(role="receiver").receivers(cores=8) == 0
    assert settings.with_(role="worker").receivers(cores=8) == 0


def test_an_explicit_number_wins_over_auto(project_dir: Path) -> None:
    from opsloop.settings import resolve_settings

    _set_receivers(project_dir, "0")
    in_file = resolve_settings(load_project(project_dir))
    assert in_file.receiver_processes == 0 and in_file.receivers(cores=8) == 0
    env = {**os.environ, "OPSLOOP_RECEIVER_PROCESSES": "2"}
    assert resolve_settings(load_project(project_dir, environ=env)).receivers(cores=1) == 2
    env["OPSLOOP_RECEIVER_PROCESSES"] = "auto"  # the environment may ask for auto over the file's number
    assert resolve_settings(load_project(project_dir, environ=env)).receivers(cores=2) == 1
    assert resolve_settings(load_project(project_dir), {"receiver_processes": 3}).receivers(cores=1) == 3


@pytest.mark.parametrize("value", ["lots", "-1", "65", "true", "1.5"])
def test_a_bad_receiver_processes_names_the_file_and_line(project_dir: Path, value: str) -> None:
    from opsloop.errors import ConfigError
    from opsloop.project import read_project_config

    line = _set_receivers(project_dir, value)
    with pytest.raises(ConfigError) as caught:
        read_project_config(project_dir)
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == ("opsloop.yml", line)
    assert "receiver_processes" in problem.message and "auto" in problem.message, problem.message
    checked = run_cli("validate", cwd=project_dir)
    assert checked.returncode == 1 and f"opsloop.yml:{line}" in checked.stderr + checked.stdout


@pytest.mark.slow
def test_opsloop_up_starts_the_receivers_auto_resolves_to(project_dir: Path) -> None:
    from opsloop.settings import auto_receivers, usable_cores

    expected = auto_receivers(usable_cores())
    up = UpProcess(project_dir, free_port())
    try:
        wait_for(lambda: len(receiver_pids(up.proc.pid)) == expected, 30,
                 what=f"{expected} receiver process(es) from receiver_processes: auto")
    finally:
        assert up.stop() == 0
    out = "".join(up.lines)
    assert f"receiver_processes auto on {usable_cores()} core(s)" in out
    if expected:
        assert f"{expected} receiver process(es)" in out
