"""Headless Chromium from the system packages (Debian's `chromium`) driven by Playwright with
that executable (never `playwright install`), for the tests that open a page in a real browser."""

from __future__ import annotations

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
