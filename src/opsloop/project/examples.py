"""The full example company (``opsloop init DIR --example saas``), shipped as files in ``example_saas/``."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

EXAMPLE_SECRETS: dict[str, Callable[[], str]] = {
    "STRIPE_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_hex(16),
    "APP_WEBHOOK_SECRET": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    "SLACK_SIGNING_SECRET": lambda: secrets.token_hex(16),
    # Placeholders for the pulls in sources/ (no schedule until you replace them with real credentials).
    "HUBSPOT_TOKEN": lambda: "replace-me-hubspot-private-app-token",
    "ZENDESK_EMAIL": lambda: "agent@example.com",
    "ZENDESK_API_TOKEN": lambda: "replace-me-zendesk-api-token",
    "STRIPE_SECRET_KEY": lambda: "rk_test_replace_me",
}


def _copy(node: Traversable, target: Path, written: list[Path]) -> None:
    for child in node.iterdir():
        if child.name in ("__pycache__",) or child.name.endswith(".pyc"):
            continue
        destination = target / child.name
        if child.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            _copy(child, destination, written)
        else:
            destination.write_bytes(child.read_bytes())
            written.append(destination)


def example_files() -> list[str]:
    """The paths (relative to the project) that ``write_saas_example`` writes."""
    out: list[str] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.name == "__pycache__" or child.name.endswith(".pyc"):
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                out.append(prefix + child.name)

    walk(resources.files("opsloop.project").joinpath("example_saas"), "")
    return sorted(out)


def write_saas_example(target: Path) -> list[Path]:
    """Copy the example company over the starter project and add its secrets to ``.env``."""
    written: list[Path] = []
    _copy(resources.files("opsloop.project").joinpath("example_saas"), target, written)
    for keep in target.glob("*/.gitkeep"):
        if len(list(keep.parent.iterdir())) > 1:
            keep.unlink()
    env_path = target / ".env"
    existing = env_path.read_text() if env_path.exists() else ""
    extra = "".join(f"{k}={make()}\n" for k, make in EXAMPLE_SECRETS.items() if f"{k}=" not in existing)
    if extra:
        with env_path.open("a") as fh:
            fh.write(extra)
    return written
