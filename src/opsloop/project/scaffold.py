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


STARTER_FILES = ["events/demo_request.yml", "samples/demo_request.json", "workflows/demo_request_sla.yml"]
"""What ``init_project`` writes besides opsloop.yml (checked first: init never overwrites a user's file
unless ``force``; an existing .gitignore gets opsloop's lines added, an existing .env is kept)."""


def _starter_files(example: str | None) -> list[str]:
    files = list(STARTER_FILES)
    if example == "saas":
        from .examples import example_files

        files += example_files()
    return files


def init_project(target: Path, example: str | None = None, force: bool = False) -> list[Path]:
    """Write the starter project into ``target``; returns the files written."""
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise OpsloopError(f"{target} is a file, not a folder; give the path of a new or empty folder for the project")
    if (target / "opsloop.yml").exists() and not force:
        raise OpsloopError(f"{target}/opsloop.yml already exists; choose an empty folder or pass --force")
    if not force:
        clashes = [rel for rel in _starter_files(example) if (target / rel).exists()]
        if clashes:
            shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
            raise OpsloopError(f"{target} already has {shown}, which opsloop init would overwrite; choose an empty "
                               "folder, move those files away, or pass --force to overwrite them")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OpsloopError(f"cannot create the folder {target}: {exc.strerror}; choose a folder you can write "
                           "to") from exc
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
    gitignore = target / ".gitignore"
    if gitignore.exists() and not force:  # an existing repository's: add opsloop's lines, keep the rest
        have = gitignore.read_text(encoding="utf-8")
        missing = [line for line in GITIGNORE.splitlines() if line not in have.splitlines()]
        if missing:
            write(".gitignore", have + ("" if have.endswith("\n") or not have else "\n") + "\n".join(missing) + "\n")
    else:
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
