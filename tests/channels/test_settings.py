"""Where each channel setting comes from: opsloop.yml's channels: first, then the environment variables the
senders read before channels existed, then defaults; values that cannot work are named by variable or line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsloop import load_project
from opsloop.channels import ChannelConfigError, channels_of
from opsloop.errors import ConfigError
from opsloop.project.scaffold import init_project

from ..conftest import run_cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "project.md"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    init_project(folder)
    return folder


def add_yaml(root: Path, text: str) -> None:
    with (root / "opsloop.yml").open("a", encoding="utf-8") as f:
        f.write("\n" + text)


def test_defaults_are_the_sandbox(root: Path) -> None:
    ch = channels_of(load_project(root, environ={}))
    assert ch.smtp.sandbox and ch.slack.sandbox
    assert (ch.smtp.port, ch.smtp.security, ch.smtp.sender) == (587, "starttls", "opsloop@localhost")
    assert ch.slack.api_url == "https://slack.com/api/" and ch.slack.token_env == "SLACK_BOT_TOKEN"
    assert (ch.http.timeout, ch.http.retries, ch.http.max_retry_delay, ch.http.ca_file) == (30.0, 2, 30.0, None)


def test_the_old_environment_variables_still_work(root: Path) -> None:
    env = {"SMTP_HOST": "mail.example.com", "SMTP_TLS": "ssl", "SMTP_USERNAME": "bot", "SMTP_PASSWORD": "pw",
           "SMTP_FROM": "hi@example.com", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_API_URL": "http://127.0.0.1:9/api",
           "SLACK_PACE": "0"}
    ch = channels_of(load_project(root, environ=env))
    assert (ch.smtp.host, ch.smtp.port, ch.smtp.security, ch.smtp.username, ch.smtp.password) == (
        "mail.example.com", 465, "tls", "bot", "pw")
    assert ch.smtp.sender == "hi@example.com"
    assert (ch.slack.token, ch.slack.api_url, ch.slack.pace) == ("xoxb-1", "http://127.0.0.1:9/api/", 0.0)
    # the metric alerts' older plain-SMTP variables, when SMTP_HOST is unset
    legacy = channels_of(load_project(root, environ={"OPSLOOP_SMTP_HOST": "relay", "OPSLOOP_SMTP_PORT": "2525",
                                                     "OPSLOOP_SMTP_FROM": "alerts@example.com"}))
    assert (legacy.smtp.host, legacy.smtp.port, legacy.smtp.security, legacy.smtp.sender) == (
        "relay", 2525, "none", "alerts@example.com")


def test_opsloop_yml_wins_over_the_environment_and_names_the_secret_variables(root: Path) -> None:
    add_yaml(root, "channels:\n  smtp: {host: smtp.internal, port: 2587, username_env: MAIL_USER, "
                   "password_env: MAIL_PASS, from: ops@example.com}\n  slack: {token_env: OPS_SLACK}\n"
                   "  http: {timeout: 5, retries: 0}\n")
    env = {"SMTP_HOST": "ignored.example.com", "SMTP_USERNAME": "not-this", "MAIL_USER": "bot", "MAIL_PASS": "pw",
           "SLACK_BOT_TOKEN": "xoxb-not-this", "OPS_SLACK": "xoxb-this", "OPSLOOP_HTTP_TIMEOUT": "99"}
    ch = channels_of(load_project(root, environ=env))
    assert (ch.smtp.host, ch.smtp.port, ch.smtp.username, ch.smtp.password) == ("smtp.internal", 2587, "bot", "pw")
    assert ch.slack.token == "xoxb-this" and (ch.http.timeout, ch.http.retries) == (5.0, 0)
    assert "pw" not in repr(ch) and "xoxb-this" not in repr(ch)  # secrets stay out of logs


def test_values_that_cannot_work_are_named(root: Path) -> None:
    with pytest.raises(ChannelConfigError, match=r"SMTP_PORT='abc' is not a TCP port"):
        channels_of(load_project(root, environ={"SMTP_PORT": "abc"}))
    with pytest.raises(ChannelConfigError, match="SMTP_TLS='maybe' is not one of starttls, tls"):
        channels_of(load_project(root, environ={"SMTP_TLS": "maybe"}))
    add_yaml(root, "channels:\n  http:\n    ca_file: certs/missing.pem\n")
    with pytest.raises(ChannelConfigError, match=r"the CA file certs/missing\.pem does not exist"):
        channels_of(load_project(root, environ={}))
    result = run_cli("validate", cwd=root)
    assert result.returncode == 1
    assert re.search(r"opsloop.yml:\d+: channels.http: the CA file certs/missing.pem does not exist",
                     result.stdout + result.stderr), result.stdout + result.stderr


def test_a_misspelt_key_is_an_error_with_its_line(root: Path) -> None:
    add_yaml(root, "channels:\n  smtp:\n    hots: smtp.example.com\n")
    with pytest.raises(ConfigError) as info:
        load_project(root, environ={})
    assert "unknown key 'channels.smtp.hots'" in str(info.value) and "opsloop.yml:" in str(info.value)


def test_the_docs_channels_example_loads(root: Path) -> None:
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S) if b.startswith("channels:")]
    add_yaml(root, block)
    ch = channels_of(load_project(root, environ={}))
    assert (ch.smtp.host, ch.smtp.port, ch.smtp.security) == ("smtp.example.com", 587, "starttls")
    assert ch.http.retries == 2 and ch.slack.pace == 1.0
