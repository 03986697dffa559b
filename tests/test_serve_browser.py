"""`cnnlab serve`'s page in a real browser: headless Chromium from the system packages, driven by
Playwright with that executable (as tests/test_report_browser.py does). A real photo from the
shared set is picked in the page's file input; the label the page shows must be the library's,
its probability bars must add up, its edge-filter and Grad-CAM pictures must render, and the
page must log no error and fetch nothing but its own server.

Skips, saying why, where /usr/bin/chromium or the playwright package is absent."""

from __future__ import annotations


import pytest
from browser_helpers import browser_page, require_browser

import cnnlab
from cnnlab.serve.config import ServeConfig
from serving_helpers import ServerThread, train_tiny_run

require_browser()  # skips this module where Chromium or Playwright is absent


@pytest.fixture(scope="module")
def served(tiny_cache, tmp_path_factory):
    from cnnlab.serve.server import build_app

    run = train_tiny_run(tiny_cache, tmp_path_factory.mktemp("browser-serve") / "conv1")
    config = ServeConfig(run=str(run), port=0)
    app, _ = build_app(config)
    with ServerThread(app, config) as server:
        yield run, f"http://127.0.0.1:{server.port}"


def test_the_page_shows_the_label_of_a_dropped_photo(served, shared_photos, tmp_path):
    run, address = served
    photo = shared_photos / "dog.1001.jpg"
    if not photo.is_file():
        photo = sorted(shared_photos.glob("dog.*.jpg"))[0]
    expected = cnnlab.load(run).predict(str(photo))[0]
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not a photo")

    with browser_page(tmp_path / "profile", 1200, 900, allowed=(address, "data:", "blob:")) as (page, problems, foreign):
        page.goto(address + "/", wait_until="load")
        page.wait_for_function("document.getElementById('run').textContent.startsWith('run ')")
        assert "cat, dog" in page.text_content("#run")

        page.set_input_files("#picker", str(photo))
        card = page.locator(f'.card[data-file="{photo.name}"]')
        card.locator("xpath=self::*[@data-views='done']").wait_for(timeout=60_000)
        assert card.get_attribute("data-state") == "predicted"
        assert card.locator(".label").text_content() == expected.label
        bars = card.locator(".bar")
        assert bars.count() == 2
        shown = {bars.nth(index).get_attribute("data-class"): float(bars.nth(index).locator("span").nth(1)
                                                                 .text_content().split()[0])
                 for index in range(2)}
        for name, probability in expected.probabilities.items():
            assert shown[name] == pytest.approx(100 * probability, abs=0.06)
        figures = card.locator("figure img")
        assert figures.count() == 7  # model input, Grad-CAM, grey and four edge filters
        sizes = figures.evaluate_all("images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert all(complete and width > 0 and height > 0 for complete, width, height in sizes), sizes
        page.screenshot(path=str(tmp_path / "page.png"))

        page.set_input_files("#picker", str(text_file))
        refused = page.locator('.card[data-file="notes.jpg"][data-state="error"]')
        refused.wait_for(timeout=30_000)
        assert "415" in refused.text_content() and "not an image" in refused.text_content()
    # A refused upload is shown in the page; the browser logs its 415 response, nothing else.
    assert [problem for problem in problems if "415" not in problem] == []
    assert foreign == []
