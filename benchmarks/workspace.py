"""Where a benchmark keeps its caches and runs while it measures."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def work_folder(given: str | None, prefix: str):
    """--work DIR, kept afterwards (a cut benchmark reuses what it finished there); without it a
    temporary folder, removed when the benchmark ends: the caches and runs of a full `make bench`
    take gigabytes, and they used to stay in /tmp after every run."""
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
