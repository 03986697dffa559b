"""Headless Chromium from the system packages (Debian's `chromium`) driven by Playwright with
that executable (never `playwright install`), for the tests that open a page in a real browser."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CNNLAB_CHROMIUM", "/usr/bin/chromium"))
# As the machine's notes prescribe for a sandboxed root user with no network: no background
# requests (they would fail and log errors), no first-run or sync, no GPU.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


def require_browser():
    """Playwright's sync API, or skip the calling test module saying what is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CNNLAB_CHROMIUM)",
                    allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                               "(pip install playwright; its own browser download is not needed)")


@contextlib.contextmanager
def browser_page(profile: Path, width: int, height: int, allowed: tuple[str, ...]):
    """A page in a fresh headless Chromium, with what went wrong recorded: yields (page,
    problems, foreign_requests). problems collects console errors and warnings, page errors and
    failed requests; foreign_requests every request whose URL starts with none of `allowed`."""
    problems, foreign_requests = [], []
    with require_browser().sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
                    if message.type in ("error", "warning") else None)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url[:80]}"))
            page.on("request", lambda request: foreign_requests.append(request.url[:80])
                    if not request.url.startswith(allowed) else None)
            yield page, problems, foreign_requests
        finally:
            context.close()
