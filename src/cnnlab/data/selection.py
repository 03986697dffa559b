"""What a cache holds, decided before any decoding: the options of `prepare` and the photos it selects."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import PIL

from cnnlab.data.decode import DecodeOptions
from cnnlab.data.labels import class_order, find_labelled_files
from cnnlab.data.splits import SPLIT_NAMES, SplitOptions, assign_splits


@dataclass(frozen=True)
class PrepareOptions:
    decode: DecodeOptions = DecodeOptions()
    split: SplitOptions = SplitOptions()
    layout: str = "auto"
    classes: tuple[str, ...] | None = None  # explicit class order; default sorted (tutorial: dog, cat)
    workers: int = 0  # 0 = one per CPU core

    def decode_key(self) -> dict:
        """What the pixels depend on: reuse across runs only when all of it matches."""
        return {**asdict(self.decode), "pillow": PIL.__version__}


@dataclass
class Selection:
    """The photos a cache holds, in cache order, with labels and splits: everything but pixels.

    Computed once from the whole folder, so that every shard of a sharded cache shares the
    split, the class order and the row order an unsharded cache would have.
    """

    root: Path
    layout: str
    paths: list[str]  # every photo found, relative to root
    labels: list[str]
    ignored: list[dict]  # found but not photos (wrong extension)
    split: SplitOptions  # resolved
    classes: list[str]
    assignment: list[str | None]  # split of each photo, None = unused
    selected: list[int]  # positions of the photos to cache, in cache row order
    shard: dict | None = None  # {"index", "count"} when this selection is one shard


def select_photos(data_dir: str | os.PathLike, options: PrepareOptions) -> Selection:
    """List, label and split the photos of `data_dir` (no decoding). Raises ValueError on bad input."""
    root = Path(data_dir).resolve()
    found = find_labelled_files(root, options.layout)
    split = options.split.resolved()
    classes = class_order(found.labels, list(options.classes) if options.classes else None,
                          tutorial=split.kind == "tutorial")
    assignment = assign_splits(found.paths, found.labels, split)
    order = {name: position for position, name in enumerate(SPLIT_NAMES)}
    selected = sorted(
        (position for position, split_name in enumerate(assignment) if split_name),
        key=lambda position: order[assignment[position]],  # stable: keeps natural file order
    )
    return Selection(root, found.layout, found.paths, found.labels, found.ignored, split, classes, assignment, selected)
