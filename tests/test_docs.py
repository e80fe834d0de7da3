"""The docs' examples are executed: YAML examples load, and every verb the README names has --help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsloop import load_project

from .conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


def blocks(page: str, lang: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_webhook_page_examples_load(project_dir: Path) -> None:
    examples = [b for b in blocks("webhooks.md", "yaml") if b.startswith("# events/")]
    assert examples
    for block in examples:
        name = block.splitlines()[0].removeprefix("# events/").strip()
        (project_dir / "events" / name).write_text(block)
        (project_dir / "schemas").mkdir(exist_ok=True)
        for schema_file in re.findall(r"schema_file: (\S+)", block):
            (project_dir / schema_file).write_text('{"type": "object"}')
    project = load_project(project_dir, environ={"STRIPE_WEBHOOK_SECRET": "whsec_x"})
    assert "stripe" in project.endpoints
    assert project.endpoints["stripe"].event_name_for({"type": "invoice.paid"}) == "stripe.invoice.paid"


def test_project_page_opsloop_yml_is_valid(project_dir: Path) -> None:
    block = next(b for b in blocks("project.md", "yaml") if b.startswith("name:"))
    (project_dir / "opsloop.yml").write_text(block)
    assert load_project(project_dir).config.name == "acme"


def readme_verbs() -> list[str]:
    text = (ROOT / "README.md").read_text()
    verbs = set(re.findall(r"^\| `opsloop ([a-z]+)", text, re.M))
    return sorted(verbs)


@pytest.mark.parametrize("verb", readme_verbs())
def test_every_readme_verb_has_help(verb: str) -> None:
    result = run_cli(verb, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_readme_commands_are_the_ci_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test" in readme and "bash scripts/test" in ci
    assert "bash scripts/demo" in readme


def test_migration_guide_examples_validate(tmp_path: Path) -> None:
    """The guide's workflow and sync load and validate (the sync against a local HubSpot stand-in)."""
    from opsloop.project.scaffold import init_project

    from .syncs.conftest import FakeServer
    from .syncs.fakes import FakeHubSpot

    hub = FakeHubSpot()
    server = FakeServer(hub)
    try:
        root = tmp_path / "mig"
        init_project(root)
        for block in blocks("migrating.md", "yaml"):
            rel = block.splitlines()[0].removeprefix("# ").strip()
            if rel.startswith("syncs/"):
                block = block.replace("  token_env: HUBSPOT_TOKEN\n",
                                      f"  token_env: HUBSPOT_TOKEN\n  base_url: {server.url}\n")
            (root / rel).write_text(block)
        (root / "models" / "customers.sql").write_text("select 'a@b.co' as email, 'Acme' as company\n")
        with (root / ".env").open("a") as fh:
            fh.write(f"HUBSPOT_TOKEN={hub.token}\n")
        result = run_cli("validate", "--project", str(root))
        assert result.returncode == 0, result.stderr
        assert any(r.path.startswith("/crm/v3/properties/contacts") for r in server.requests)
    finally:
        server.close()
