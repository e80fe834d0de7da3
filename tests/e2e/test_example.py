"""The example company's files: a fresh `opsloop init --example saas` validates with no accounts, a mistake in
it is reported with its file, and docs/example.md names files that exist."""

from __future__ import annotations

import re
from pathlib import Path

from ..conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_a_fresh_example_validates_with_no_accounts(tmp_path: Path) -> None:
    made = run_cli("init", str(tmp_path / "acme"), "--example", "saas")
    assert made.returncode == 0, made.stderr
    result = run_cli("validate", "--project", str(tmp_path / "acme"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:"), result.stdout
    dotenv = (tmp_path / "acme" / ".env").read_text()
    for name in ("STRIPE_WEBHOOK_SECRET", "APP_WEBHOOK_SECRET", "SLACK_SIGNING_SECRET", "HUBSPOT_TOKEN",
                 "ZENDESK_API_TOKEN", "STRIPE_SECRET_KEY"):
        assert f"\n{name}=" in dotenv


def test_a_broken_example_file_is_reported_with_its_line(tmp_path: Path) -> None:
    root = tmp_path / "acme"
    assert run_cli("init", str(root), "--example", "saas").returncode == 0
    sync = root / "syncs" / "zendesk_users.yml"
    sync.write_text(sync.read_text().replace("mode: upsert", "mode: upsart"))
    result = run_cli("validate", "--project", str(root))
    assert result.returncode == 1
    assert "syncs/zendesk_users.yml:" in result.stdout + result.stderr


def test_docs_example_names_the_files_the_example_writes(tmp_path: Path) -> None:
    root = tmp_path / "acme"
    assert run_cli("init", str(root), "--example", "saas").returncode == 0
    text = (ROOT / "docs" / "example.md").read_text()
    rows = re.findall(r"^\| (`[^|]+`) \|", text, re.M)
    names = [n for row in rows for n in re.findall(r"`([a-z_/*.]+\.(?:yml|py|sql|csv))`", row)]
    assert len(names) >= 15
    for name in names:
        assert list(root.glob(name)), f"docs/example.md names {name}, which the example does not write"
    documented = {p for name in names for p in root.glob(name)}
    for folder in ("workflows", "segments", "syncs", "sources", "metrics", "dashboards", "seeds"):
        for path in (root / folder).glob("*.*"):
            assert path in documented, f"{path.relative_to(root)} is not described in docs/example.md"
