"""The report in a real browser: headless Chromium from the system packages (Debian's
`chromium`), driven by Playwright with that executable (never `playwright install`). Opens the
page from a file:// address with no network and checks that nothing logged an error, nothing
was fetched from anywhere but the file itself, and every figure decoded and takes up room.

Skips, saying why, where /usr/bin/chromium or the playwright package is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser_helpers import browser_page, require_browser

require_browser()  # skips this module where Chromium or Playwright is absent


@pytest.fixture(scope="module")
def report_file(tiny_cache, tmp_path_factory) -> Path:
    from cnnlab.data.survey import survey
    from cnnlab.report import ReportConfig, build_report
    from training_helpers import make_config, quiet_train

    root = tmp_path_factory.mktemp("browser-report")
    quiet_train(make_config(tiny_cache, root / "conv1", epochs=1))
    survey_file = root / "survey.json"
    survey_file.write_text(json.dumps(survey(tiny_cache.parent / "photos")))
    out = root / "report.html"
    build_report(ReportConfig((str(root / "conv1"),), str(out), survey=str(survey_file)))
    return out


def open_in_chromium(path: Path, profile: Path) -> dict:
    """What a browser made of the page: problems logged, requests beyond the file, every image."""
    with browser_page(profile, 1400, 1000, allowed=("file:", "data:")) as (page, problems, foreign_requests):
        page.goto(path.resolve().as_uri(), wait_until="load")
        images = page.evaluate("""() => Array.from(document.images, image => {
            const box = image.getBoundingClientRect();
            return {alt: image.alt, complete: image.complete, naturalWidth: image.naturalWidth,
                    naturalHeight: image.naturalHeight, width: box.width, height: box.height};
        })""")
        return {"problems": problems, "foreign_requests": foreign_requests, "images": images,
                "title": page.title(),
                "sections": page.evaluate("() => Array.from(document.querySelectorAll('section'), s => s.id)")}


def rendered(image: dict) -> bool:
    return (image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0
            and image["width"] > 0 and image["height"] > 0)


def test_report_renders_in_chromium_without_errors(report_file, tmp_path):
    seen = open_in_chromium(report_file, tmp_path / "profile")
    assert seen["problems"] == []
    assert seen["foreign_requests"] == []
    assert seen["title"] == "cnnlab report"
    assert {"data", "results", "curves", "roc", "cost", "confusion", "wrong", "filters"} <= set(seen["sections"])
    assert len(seen["images"]) >= 10
    for image in seen["images"]:
        assert rendered(image), image


def test_the_browser_check_sees_a_broken_figure_and_a_fetch(tmp_path):
    """The same check on a page that is wrong in the ways it guards against (loopback only)."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
                    "<title>broken</title></head><body>"
                    '<img alt="truncated" src="data:image/png;base64,iVBORw0KGgo=">'
                    '<img alt="fetched" src="http://127.0.0.1:9/figure.png"></body></html>')
    seen = open_in_chromium(page, tmp_path / "profile")
    assert [image["alt"] for image in seen["images"] if not rendered(image)] == ["truncated", "fetched"]
    assert seen["foreign_requests"] == ["http://127.0.0.1:9/figure.png"]
    assert any("127.0.0.1:9" in problem for problem in seen["problems"])
