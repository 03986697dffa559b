"""What to predict on: PATH arguments -> photo files in a stable order, before any model loads.

A PATH is taken literally when it exists (so a file named `a[1].jpg` is never read as a
pattern); a folder contributes its photos recursively (image extensions only, hidden files and
folders skipped, natural order: `cat.2.jpg` before `cat.10.jpg`, a folder's own files before its
subfolders'); anything else with `*`, `?` or `[` is expanded as a glob by cnnlab itself (`**`
recursive), for shells that pass patterns through unexpanded. A PATH that is none of these is
kept, so that it gets its own row with an error instead of vanishing.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.labels import IMAGE_EXTENSIONS, walk_images, natural_key

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Source:
    """One row to come: a file to decode, or a PATH that named nothing (problem says why)."""

    path: str
    problem: str | None = None


def folder_photos(folder: str | os.PathLike) -> list[str]:
    """Image files below `folder`, recursively, hidden folders and files skipped, natural order."""
    return [str(path) for path in walk_images(Path(folder)) if path.suffix.lower() in IMAGE_EXTENSIONS]


def expand_paths(arguments) -> list[Source]:
    """The files named by `arguments`, in the order given; a file named twice gets one row."""
    sources, seen = [], set()

    def add(path: str, problem: str | None = None) -> None:
        key = os.path.realpath(path) if problem is None else ("missing", path)
        if key not in seen:
            seen.add(key)
            sources.append(Source(path, problem))

    for argument in arguments:
        argument = os.fspath(argument)
        if os.path.isdir(argument):
            for path in folder_photos(argument):
                add(path)
        elif os.path.lexists(argument):
            add(argument)  # any existing file, whatever its extension: it was asked for by name
        elif GLOB_CHARACTERS & set(argument):
            matches = sorted(glob.glob(argument, recursive=True), key=natural_key)
            if not matches:
                add(argument, "no file matches this pattern")
            for match in matches:
                if os.path.isdir(match):
                    for path in folder_photos(match):
                        add(path)
                else:
                    add(match)
        else:
            add(argument, "no such file or folder")
    return sources
