"""Headless Debian Chromium driven by Playwright (never Playwright's own browser downloads)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
        "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def launch() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, base_url: str, token: str, target: str) -> None:
    page.goto(base_url + target)
    assert "/login" in page.url
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + target)


def wait_js(page: Any, predicate: str, timeout_ms: float = 30_000, interval: float = 0.05) -> None:
    """Wait until ``predicate`` (a JS expression, or an arrow function with no arguments) is truthy in the page.

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page, which the
    pages' Content-Security-Policy (no ``unsafe-eval``) forbids; ``page.evaluate`` goes through the
    DevTools protocol instead, as a debugger does, and is not subject to it."""
    call = f"({predicate})()" if predicate.lstrip().startswith("()") else f"({predicate})"
    check = f"(() => {{ try {{ return !!{call}; }} catch (e) {{ return false; }} }})()"
    wait_for(lambda: page.evaluate(check), timeout_ms / 1000, interval=interval, what=f"the page to show {predicate}")


def csp_violations(page: Any) -> list[str]:
    """Collects the Content-Security-Policy violations the page reports (none: the CSP breaks nothing)."""
    found: list[str] = []
    page.on("console", lambda m: found.append(m.text) if "Content Security Policy" in m.text else None)
    return found
