"""`cnnlab studio` in a real browser (headless Chromium from the system packages, driven by
Playwright, as tests/test_serve_browser.py): data -> train a tiny model -> the live curve grows
-> inspect a wrong photo (its Grad-CAM opens) -> predict an uploaded photo -> export, with no
console error and no request leaving the machine.

A screenshot of each view is written to $CNNLAB_STUDIO_SCREENS when it is set (the README's
picture and the screenshots in reports/studio-screens come from here), else to the test's
temporary folder. Skips, saying why, where /usr/bin/chromium or the playwright package is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import browser_page, require_browser
from studio_helpers import StudioServer, tiny_photos

from cnnlab.studio.config import StudioConfig

require_browser()  # skips this module where Chromium or Playwright is absent

PER_CLASS = 20
# Enough epochs that training outlasts several of the page's 0.5 s event intervals even on a quiet
# machine (3 epochs once finished within one, and the page saw the curve at 0 and 3 points only).
EPOCHS = 20
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def studio(shared_photos, tmp_path_factory):
    from cnnlab.studio.jobs import JobQueue
    from cnnlab.studio.server import build_app

    root = tmp_path_factory.mktemp("studio-browser")
    photos = tiny_photos(shared_photos, root / "photos", PER_CLASS)
    config = StudioConfig(data=str(photos), runs=str(root / "runs"), caches=str(root / "caches"), port=0)
    app, state = build_app(config, JobQueue(root / "jobs"))
    with StudioServer(app, config) as server:
        server.photos = photos
        yield server
        state.jobs.close()


def test_data_train_inspect_predict_export_in_a_browser(studio, shared_photos, tmp_path):
    screens = Path(os.environ.get("CNNLAB_STUDIO_SCREENS") or tmp_path / "screens")
    screens.mkdir(parents=True, exist_ok=True)
    address = studio.address
    photo = sorted(shared_photos.glob("dog.*.jpg"))[-1]

    with browser_page(tmp_path / "profile", 1280, 900, allowed=(address, "data:", "blob:")) as (page, problems, foreign):
        page.goto(address + "/", wait_until="load")
        page.wait_for_selector("body[data-ready='yes']", timeout=60_000)

        # Data: the survey, a sample strip per class whose thumbnails really load, the split.
        assert "40 photos in 2 classes" in page.text_content("#data-summary")
        for label in ("cat", "dog"):
            strip = page.locator(f".samples[data-class='{label}'] img")
            assert strip.count() == 12
        page.wait_for_function("() => [...document.querySelectorAll('.samples img')].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=60_000)
        page.fill("#split-val", "8")
        page.fill("#split-test", "4")
        page.click("#split-show")
        page.wait_for_function("() => document.querySelector('#data-split').textContent.includes('--val 8 --test 4')")
        page.screenshot(path=str(screens / "data.png"), full_page=True)

        # Train: conv1 at 24x24 for EPOCHS epochs; the curve must grow epoch by epoch, live.
        page.click("#tabs button[data-tab='train']")
        page.select_option("#train-model", "conv1")
        page.fill("#train-run", "browser")
        for field, value in (("#train-epochs", EPOCHS), ("#train-batch", 4), ("#train-width", 24), ("#train-height", 24)):
            page.fill(field, str(value))
        page.click("#train-start")
        page.wait_for_function(f"() => Number(document.getElementById('curve-loss').dataset.points) >= {EPOCHS}",
                               timeout=TIMEOUT_MS)
        seen = [int(count) for count in page.get_attribute("#curve-loss", "data-seen").split(",")]
        assert seen == sorted(seen) and len([count for count in seen if 0 < count]) >= 2, seen
        page.wait_for_function("() => document.getElementById('jobs').dataset.job1 === 'done'", timeout=TIMEOUT_MS)
        assert page.locator("#curve-loss polyline").count() == 2
        page.screenshot(path=str(screens / "train.png"), full_page=True)

        # Compare: the run's row and its curve.
        page.click("#tabs button[data-tab='compare']")
        page.click("#compare-show")
        page.wait_for_selector("#compare-table table tr:nth-child(2)")
        assert "browser" in page.text_content("#compare-table")
        page.screenshot(path=str(screens / "compare.png"), full_page=True)

        # Inspect: confusion matrix, a wrong photo opening its Grad-CAM and feature maps, the
        # threshold slider, the convolution explorer.
        page.click("#tabs button[data-tab='inspect']")
        page.wait_for_selector("#confusion table")
        page.wait_for_selector("#wrong figure", timeout=60_000)
        page.locator("#wrong figure").first.click()
        page.wait_for_selector("#cam img:nth-of-type(1)", timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('#cam img').length === 2 && "
                               "[...document.querySelectorAll('#cam img')].every(i => i.complete && i.naturalWidth > 0)")
        assert "Grad-CAM" in page.text_content("#cam")
        page.wait_for_selector("#features img")
        page.eval_on_selector("#threshold", "slider => { slider.value = '0.05'; slider.dispatchEvent(new Event('input')); }")
        page.wait_for_function("() => document.getElementById('threshold-values').dataset.threshold === '0.05'")
        page.click("#explore-apply")
        page.wait_for_function("() => document.querySelectorAll('#explore img').length === 2")
        page.screenshot(path=str(screens / "inspect.png"), full_page=True)

        # Use: predict an uploaded photo, then export ONNX as a download.
        page.click("#tabs button[data-tab='use']")
        page.set_input_files("#picker", str(photo))
        card = page.locator(f".card[data-file='{photo.name}']")
        card.locator("xpath=self::*[@data-state='predicted']").wait_for(timeout=60_000)
        assert card.locator(".label").text_content() in ("cat", "dog")
        page.screenshot(path=str(screens / "use.png"), full_page=True)
        with page.expect_download(timeout=120_000) as download:
            page.click("#export-onnx")
        exported = tmp_path / "browser.onnx"
        download.value.save_as(exported)
        assert download.value.suggested_filename == "browser.onnx"

        # The README's picture: the Train tab down to its live curves, narrower.
        page.click("#tabs button[data-tab='train']")
        page.set_viewport_size({"width": 1040, "height": 720})
        bottom = page.eval_on_selector("#curve-loss", "chart => chart.closest('.panel').getBoundingClientRect().bottom")
        page.screenshot(path=str(screens / "readme.png"), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1040, "height": bottom + 12})
        assert problems == []
        assert foreign == []

    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert list(session.get_inputs()[0].shape[1:]) == [3, 24, 24]
