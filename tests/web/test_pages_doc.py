"""docs/pages.md shows a screenshot of every page scripts/screenshots makes, and only those that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_screenshot_is_shown_and_exists() -> None:
    doc = (ROOT / "docs" / "pages.md").read_text()
    shown = set(re.findall(r"\]\((images/[\w.-]+\.png)\)", doc))
    made = {f"images/{p.name}" for p in (ROOT / "docs" / "images").glob("*.png")}
    assert shown and shown <= made, f"missing images: {sorted(shown - made)} (run bash scripts/screenshots)"
    script = (ROOT / "scripts" / "screenshots.py").read_text()
    names = set(re.findall(r'"([\w-]+)": (?:f?"/)', script))
    assert {f"images/page-{n}.png" for n in names} <= shown
