"""Schemathesis against a running opsloop server, driven from its own OpenAPI document.

``fuzz(url, token, examples=N)`` loads ``GET /api/openapi.json`` (with the token), then for every operation
draws ``examples`` cases (schema-valid and schema-breaking, derandomized so a run repeats), sends each to
the server and checks the answer: no 5xx, a documented status, a documented content type, a body that
conforms to the documented schema. Failures are collected, not raised, so one run reports all of them.

A longer run by hand (figures for the report)::

    .venv/bin/python -m tests.hostile._fuzz --examples 300
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SKIPPED = {"GET /api/dashboards/{name}/events": "an endless text/event-stream (tested on its own)"}


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    operations: int = 0
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (f"schemathesis: {self.requests} requests to {self.operations} operations in {self.seconds:.1f} s; "
                f"5xx: {self.server_errors}; failed checks: {len(self.failures)}; statuses {codes}")


def fuzz(url: str, token: str, examples: int, timeout: float = 60.0, progress: bool = False,
         strict: bool = False) -> FuzzReport:
    """``timeout``: seconds one request may take (a replay of thousands of events takes a while; a hang
    does not end). ``strict``: also require every schema-breaking case to be refused with a 4xx."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    auth = {"Authorization": f"Bearer {token}"}
    document = httpx.get(f"{url}/api/openapi.json", headers=auth, timeout=timeout).raise_for_status().json()
    schema = schemathesis.openapi.from_dict(document)
    # the token is ours to send: a made-up Authorization header only measures the 401 again and again
    schema.config.generation.update(with_security_parameters=False)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    if strict:
        from schemathesis.specs.openapi.checks import negative_data_rejection

        checks.append(negative_data_rejection)
    report = FuzzReport()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in SKIPPED:
            continue
        report.operations += 1
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        send = given(case=strategy)(_sender(report, label, url, auth, timeout, checks))
        settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))(send)()
        if progress:
            print(f"{label}: {dict(sorted(report.by_operation.get(label, Counter()).items()))}", flush=True)
    report.seconds = time.monotonic() - started
    return report


def _sender(report: FuzzReport, label: str, url: str, auth: dict[str, str], timeout: float,
            checks: list[Any]) -> Any:
    from schemathesis.core.failures import FailureGroup

    def send(case: Any) -> None:
        report.requests += 1
        try:
            response = case.call(base_url=url, headers=auth, timeout=timeout)
        except Exception as exc:  # a timeout or a dropped connection is a finding, not a crash of the run
            report.failures.append(f"{label}: no answer ({type(exc).__name__}: {exc})\n  {case.as_curl_command()}")
            return
        report.statuses[response.status_code] += 1
        report.by_operation.setdefault(label, Counter())[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as exc:  # a BaseExceptionGroup
            report.failures.append(f"{label} -> {response.status_code}: {str(exc)[:1500]}")

    return send


@contextmanager
def example_project(root: Path) -> Iterator[Path]:
    """``opsloop init --example saas`` at ``root``, its Stripe, HubSpot and Zendesk sources pointed at local
    stand-ins of those APIs (so a pull the fuzz asks for runs for real, against 127.0.0.1)."""
    from opsloop.project.scaffold import init_project

    from ..sources.fake_hubspot import HubSpotFake
    from ..sources.fake_stripe import StripeFake
    from ..sources.fake_zendesk import ZendeskFake

    init_project(root, example="saas")
    stripe, hubspot, zendesk = StripeFake(), HubSpotFake(), ZendeskFake()
    try:
        stripe.put("customers", "cus_ada", email="ada@example.com", name="Ada Lovelace")
        with (root / ".env").open("a", encoding="utf-8") as env:
            env.write(f"STRIPE_API_URL={stripe.url}\nSTRIPE_SECRET_KEY={stripe.key}\n"
                      f"HUBSPOT_API_URL={hubspot.url}\nHUBSPOT_TOKEN={hubspot.token}\n"
                      f"ZENDESK_EMAIL={zendesk.email}\nZENDESK_API_TOKEN={zendesk.api_token}\n")
        with (root / "sources" / "zendesk.yml").open("a", encoding="utf-8") as cfg:
            cfg.write(f"base_url: {zendesk.url}\n")
        yield root
    finally:
        for fake in (stripe, hubspot, zendesk):
            fake.close()


def send_webhook(root: Path, url: str, endpoint: str, payload: dict[str, Any], msg_id: str) -> str:
    """POST ``payload`` to one of the project's webhook endpoints, signed as its preset says; the event id."""
    from opsloop import load_project
    from opsloop.events.signatures import SignedRequest, make_preset

    project = load_project(root)
    cfg = project.endpoints[endpoint]
    preset = make_preset(cfg.signature, project.secret(cfg.signature.secret_env or ""))
    body = json.dumps(payload).encode()
    headers = preset.sign(SignedRequest(body, {"webhook-id": msg_id}), time.time())
    answer = httpx.post(f"{url}/hooks/{endpoint}", content=body,
                        headers={**headers, "content-type": "application/json"}, timeout=15)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def send_app_events(root: Path, url: str, count: int = 3) -> list[str]:
    """Post ``count`` signed ``user.login`` webhooks to the example project's ``app`` endpoint; their ids."""
    return [send_webhook(root, url, "app", {"type": "user.login", "user": {"id": f"u{i}", "email": f"u{i}@x.org"}},
                         f"msg_fuzz_{i}") for i in range(count)]


def prepare(root: Path, url: str, token: str) -> None:
    from ..conftest import wait_for

    """Give the fuzz something to find: events, workflow runs, and the models built (so metrics and tiles
    answer)."""
    send_app_events(root, url)
    # a purchase starts the example's `purchase` workflow: runs to show, cancel and rerun
    for i in range(2):
        subscription = {"id": f"sub_{i}", "object": "subscription", "customer": f"cus_{i}", "status": "active",
                        "metadata": {"email": f"buyer{i}@example.com"}}
        send_webhook(root, url, "stripe", {"id": f"evt_fuzz_{i}", "type": "customer.subscription.created",
                                           "data": {"object": subscription}}, f"msg_stripe_{i}")
    auth = {"Authorization": f"Bearer {token}"}
    built = httpx.post(f"{url}/api/models/build", headers=auth, timeout=120)
    assert built.status_code == 200 and built.json()["ok"], built.text
    wait_for(lambda: len(httpx.get(f"{url}/api/runs", headers=auth, timeout=15).json()["runs"]) >= 2, 30,
             what="the purchase workflow's runs")


def _main() -> None:
    import tempfile

    from ..conftest import ServerThread, make_app

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--strict", action="store_true", help="also: schema-breaking input must get a 4xx")
    args = parser.parse_args()
    with example_project(Path(tempfile.mkdtemp()) / "saas") as root, ServerThread(make_app(root)) as server:
        prepare(root, server.url, server.token)
        report = fuzz(server.url, server.token, args.examples, progress=True, strict=args.strict)
    for failure in report.failures:
        print(failure, "\n")
    print(report.summary())


if __name__ == "__main__":
    _main()
