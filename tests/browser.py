"""A page opened in a real headless browser (Debian's chromium, driven by playwright):
what a user would see of a report, and every console message and script error."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import sync_playwright


@dataclass(frozen=True)
class Rendered:
    text: str
    #: Console messages of type error or warning, and uncaught page errors.
    problems: list[str]
    #: naturalWidth of each <img> by id (0: the image did not decode).
    image_widths: dict[str, int]
    scripts: int
    #: Inline <svg> panels by id: how many of their lines (polyline) the browser laid out
    #: with a non-empty box (0: the panel drew nothing).
    svg_lines: dict[str, int] = field(default_factory=dict)


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "no chromium on PATH: run scripts/browser (scripts/test does)"
    return found


def render(page_file: Path) -> Rendered:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)  # fmt: skip
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"requestfailed: {r.url}"))
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            widths = page.evaluate(
                "Object.fromEntries([...document.images].map(i => [i.id, i.naturalWidth]))"
            )
            lines = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('svg[id]')].map(s => [s.id,"
                " [...s.querySelectorAll('polyline')].filter(l => {const b = l.getBBox();"
                " return b.width > 0 || b.height > 0;}).length]))"
            )
            return Rendered(
                text=page.inner_text("body"),
                problems=problems,
                image_widths={str(k): int(v) for k, v in widths.items()},
                scripts=int(page.evaluate("document.scripts.length")),
                svg_lines={str(k): int(v) for k, v in lines.items()},
            )
        finally:
            browser.close()
