"""Loading and validating a project: every problem at once, each with file:line and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsloop import load_project
from opsloop.errors import ConfigError

from .conftest import run_cli


def test_init_writes_a_valid_project_with_secrets(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "acme"))
    assert result.returncode == 0, result.stderr
    assert "opsloop up" in result.stdout and "opsloop send demo_request" in result.stdout
    env = (tmp_path / "acme" / ".env").read_text()
    assert "OPSLOOP_API_TOKEN=" in env and "DEMO_REQUEST_SECRET=whsec_" in env
    project = load_project(tmp_path / "acme")
    assert set(project.endpoints) == {"demo_request"}
    schema = project.schemas["demo_request"]
    assert schema["properties"]["email"]["format"] == "email"
    for folder in ("events", "workflows", "sources", "models", "seeds", "segments", "syncs", "metrics", "dashboards"):
        assert (tmp_path / "acme" / folder).is_dir()
    ok = run_cli("validate", "--project", str(tmp_path / "acme"))
    assert ok.returncode == 0 and "ok:" in ok.stdout


def test_init_refuses_to_overwrite(project_dir: Path) -> None:
    result = run_cli("init", str(project_dir))
    assert result.returncode == 1
    assert "already exists" in result.stderr and "Traceback" not in result.stderr


def test_bad_yaml_names_file_and_line(project_dir: Path) -> None:
    (project_dir / "events" / "broken.yml").write_text("event: x\nschema:\n  type: object\n   bad: [\n")
    with pytest.raises(ConfigError) as info:
        load_project(project_dir)
    text = str(info.value)
    assert "events/broken.yml:4" in text and "invalid YAML" in text


def test_every_problem_is_reported_at_once_with_lines(project_dir: Path) -> None:
    (project_dir / "events" / "one.yml").write_text(
        "event: one.created\nsignatur:\n  preset: github\n"  # typo on line 2
    )
    (project_dir / "events" / "two.yml").write_text(
        "event: two.created\nsignature:\n  preset: stripe\n  secret_env: TWO_SECRET\n"  # secret not set, line 4
    )
    (project_dir / "events" / "three.yml").write_text(
        "event: three\nschema:\n  type: objekt\n"  # invalid schema, line 2
    )
    result = run_cli("validate", "--project", str(project_dir))
    assert result.returncode == 1
    err = result.stderr
    assert "events/one.yml:2: unknown key 'signatur'" in err
    assert "events/two.yml:4: the secret TWO_SECRET is not set" in err and "add TWO_SECRET=" in err
    assert "events/three.yml:2: the JSON Schema is invalid" in err
    assert "3 problem(s) found" in err
    assert "Traceback" not in err


def test_validate_json_lists_problems(project_dir: Path) -> None:
    (project_dir / "opsloop.yml").write_text("name: x\nserver:\n  prot: 1\n")
    result = run_cli("validate", "--project", str(project_dir), "--json")
    assert result.returncode == 1
    assert '"line": 3' in result.stdout and "unknown key 'server.prot'" in result.stdout


def test_missing_project_says_what_to_do(tmp_path: Path) -> None:
    result = run_cli("validate", "--project", str(tmp_path))
    assert result.returncode == 1
    assert "no opsloop.yml here" in result.stderr and "opsloop init" in result.stderr


def test_settings_precedence_env_over_dotenv_over_yaml(project_dir: Path) -> None:
    from opsloop.settings import resolve_settings

    (project_dir / "opsloop.yml").write_text("name: x\nserver:\n  port: 9001\n")
    base = load_project(project_dir, environ={})
    assert resolve_settings(base).port == 9001
    with (project_dir / ".env").open("a") as fh:
        fh.write("OPSLOOP_PORT=9002\n")
    assert resolve_settings(load_project(project_dir, environ={})).port == 9002
    assert resolve_settings(load_project(project_dir, environ={"OPSLOOP_PORT": "9003"})).port == 9003


def test_env_interpolation_in_opsloop_yml(project_dir: Path) -> None:
    (project_dir / "opsloop.yml").write_text("name: ${COMPANY:-fallback}\n")
    assert load_project(project_dir, environ={"COMPANY": "acme"}).config.name == "acme"
    assert load_project(project_dir, environ={}).config.name == "fallback"
    assert load_project(project_dir, environ={"COMPANY": ""}).config.name == "fallback"


def test_public_surface_is_curated() -> None:
    import opsloop

    assert sorted(opsloop.__all__) == sorted(
        ["App", "ConfigError", "OpsloopError", "Project", "Settings", "TerminalError", "TransientError",
         "__version__", "load_project", "resolve_settings", "Context", "workflow"]
    )
    for name in opsloop.__all__:
        assert hasattr(opsloop, name)


def test_init_example_saas_writes_the_example_company(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "co"), "--example", "saas")
    assert result.returncode == 0, result.stderr
    project = load_project(tmp_path / "co")
    assert {"demo_request", "stripe", "app"} <= set(project.endpoints)
    assert project.endpoints["stripe"].signature.preset == "stripe"
    assert (tmp_path / "co" / "models" / "marts" / "time_to_buy.sql").is_file()
    env = (tmp_path / "co" / ".env").read_text()
    assert "STRIPE_WEBHOOK_SECRET=whsec_" in env and "APP_WEBHOOK_SECRET=whsec_" in env


def test_a_port_out_of_range_is_named_with_file_and_line(project_dir: Path) -> None:
    (project_dir / "opsloop.yml").write_text("name: x\nserver:\n  port: -5\n")
    result = run_cli("validate", "--project", str(project_dir))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "opsloop.yml:3: server.port: Input should be greater than or equal to 1" in result.stderr
    (project_dir / "opsloop.yml").write_text("name: x\n")
    from opsloop.errors import OpsloopError
    from opsloop.settings import resolve_settings

    for bad in ("70000", "http"):
        with pytest.raises(OpsloopError, match=r"OPSLOOP_PORT=.* is not a TCP port"):
            resolve_settings(load_project(project_dir, environ={"OPSLOOP_PORT": bad}))
