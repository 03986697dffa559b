"""The only ways a request names a file: a run by its folder name directly under --runs, a photo
by its place in --data's catalogue (the relative paths cnnlab's own walk of --data found).

Nothing a request sends is joined onto a path and then checked; it is looked up. A run name is
one path component of plain characters (no separator, no `..`), and the folder it names must
resolve inside --runs (a symbolic link out of it is refused). A photo name must be one of the
catalogue's entries, so `../../etc/passwd`, an absolute path or a link's target outside --data
is simply not found. Photos are only ever read (through cnnlab.data.photo_file's checks).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from cnnlab.errors import UserError
from cnnlab.runs import Run

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class NotFound(UserError):
    """A run or photo the request named that is not there (HTTP 404)."""


def check_run_name(name: str) -> str:
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"run name {str(name)[:40]!r}: use letters, digits, '.', '_' and '-' "
                        "(at most 100, starting with a letter or digit)")
    return name


class Folders:
    def __init__(self, runs: str | Path, data: str | Path | None):
        self.runs = Path(runs)
        self.data = Path(data) if data is not None else None
        self._catalogue: dict[str, str] | None = None  # relative path -> class name
        self._lock = threading.Lock()

    # ---- runs ----------------------------------------------------------------------------

    def run_path(self, name: str) -> Path:
        """Where the run called `name` is (or will be); UserError for a name that is not one."""
        path = self.runs / check_run_name(name)
        if path.is_symlink() or (path.exists() and not path.resolve().is_relative_to(self.runs.resolve())):
            raise UserError(f"run {name!r} is a link out of the runs folder; the studio only reads inside it")
        return path

    def run(self, name: str) -> Run:
        path = self.run_path(name)
        if not Run.is_run(path):
            raise NotFound(f"no run {name!r} in {self.runs}")
        return Run.open(path)

    def run_names(self) -> list[str]:
        """The run folders under --runs, newest first."""
        if not self.runs.is_dir():
            return []
        found = [entry for entry in self.runs.iterdir()
                 if RUN_NAME.fullmatch(entry.name) and not entry.is_symlink() and Run.is_run(entry)]
        return [entry.name for entry in sorted(found, key=lambda entry: entry.stat().st_mtime, reverse=True)]

    # ---- photos --------------------------------------------------------------------------

    def require_data(self) -> Path:
        if self.data is None:
            raise NotFound("the studio was started without --data: there are no photos to show "
                           "(restart it with --data PHOTOS)")
        return self.data

    def catalogue(self, refresh: bool = False) -> dict[str, str]:
        """Every photo under --data (relative path -> class), as cnnlab's survey and prepare find them."""
        from cnnlab.data.labels import find_labelled_files

        root = self.require_data()
        with self._lock:
            if self._catalogue is None or refresh:
                found = find_labelled_files(root)
                self._catalogue = dict(zip(found.paths, found.labels))
            return self._catalogue

    def photo_path(self, relative: str) -> Path:
        """The photo `relative` names, if it is one of --data's; NotFound otherwise."""
        if not isinstance(relative, str) or relative not in self.catalogue():
            raise NotFound(f"no photo {str(relative)[:80]!r} in --data")
        return self.require_data() / relative
