"""``opsloop init``: write a working starter project."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from ..errors import OpsloopError

OPSLOOP_YML = """\
# opsloop project settings. Values may use ${{ENV_VAR}}; secrets belong in .env, never here.
name: {name}
warehouse:
  type: duckdb              # postgres, clickhouse, snowflake, bigquery past one machine
  path: warehouse.duckdb
state:
  url: sqlite:///state/opsloop.sqlite   # postgresql://user@host/db to share between processes
server:
  host: 127.0.0.1
  port: 8620
  fsync_on_commit: true     # an acknowledged webhook survives power loss, not only a crash
retention_days: 30
"""

DEMO_REQUEST_YML = """\
# A person asks for a demo on the website; the site POSTs this JSON to /hooks/demo_request.
description: Demo requests from the website form
event: demo_request.created
signature:
  preset: standard_webhooks          # webhook-id / webhook-timestamp / webhook-signature headers
  secret_env: DEMO_REQUEST_SECRET     # the secret lives in .env
idempotency:
  header: webhook-id                 # a retried delivery with the same id is accepted once
  window: 24h
max_body: 256KB
redact: []                           # dotted payload paths to blank before storage, e.g. [phone]
retention_days: 30
schema:
  type: object
  required: [email, name]
  properties:
    email: {type: string, format: email}
    name: {type: string, minLength: 1}
    company: {type: string}
  additionalProperties: true
"""

DEMO_REQUEST_SLA_YML = """\
# When someone asks for a demo: post it to Slack with a Claim button. If nobody claims it within
# 15 minutes, the same message is updated to say so (and an sla.breached event is logged); when someone
# clicks Claim, it is updated with who claimed it and after how long.
# Slack settings live in .env: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (for the Claim button). Without a
# token the messages go to the sandbox outbox, so this works with no accounts.
on: demo_request.created
steps:
  - id: sla
    sla:
      channel: "#sales"
      text: "New demo request: {{ event.data.name }} <{{ event.data.email }}> {{ event.data.company or '' }}"
      within: 15m
      breached_text: ":warning: SLA breached, unclaimed for 15 min: {{ event.data.name }} ({{ event.data.email }})"
      claimed_text: ":white_check_mark: {{ event.data.name }} claimed by {{ claim.by }} after {{ claim.after }}"
"""

GITIGNORE = """\
.env
state/
*.duckdb
*.duckdb.wal
target/
"""

SAMPLE_EVENT = """\
{"email": "ada@example.com", "name": "Ada Lovelace", "company": "Analytical Engines"}
"""

FOLDERS = ["events", "workflows", "sources", "models", "seeds", "segments", "syncs", "metrics", "dashboards"]


def _standard_webhooks_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def init_project(target: Path, example: str | None = None, force: bool = False) -> list[Path]:
    """Write the starter project into ``target``; returns the files written."""
    target = target.resolve()
    if (target / "opsloop.yml").exists() and not force:
        raise OpsloopError(f"{target}/opsloop.yml already exists; choose an empty folder or pass --force")
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(rel: str, text: str) -> None:
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    name = target.name.replace(" ", "-").lower() or "opsloop-project"
    write("opsloop.yml", OPSLOOP_YML.format(name=name))
    write("events/demo_request.yml", DEMO_REQUEST_YML)
    write("samples/demo_request.json", SAMPLE_EVENT)
    write("workflows/demo_request_sla.yml", DEMO_REQUEST_SLA_YML)
    write(".gitignore", GITIGNORE)
    env_path = target / ".env"
    if not env_path.exists():
        write(
            ".env",
            "# Secrets for this project. Keep this file out of git (it is in .gitignore).\n"
            f"OPSLOOP_API_TOKEN={secrets.token_urlsafe(32)}\n"
            f"DEMO_REQUEST_SECRET={_standard_webhooks_secret()}\n",
        )
        env_path.chmod(0o600)
    for folder in FOLDERS:
        (target / folder).mkdir(exist_ok=True)
        keep = target / folder / ".gitkeep"
        if not any((target / folder).iterdir()):
            keep.touch()
    if example == "saas":
        from .examples import write_saas_example

        written.extend(write_saas_example(target))
    return written
