"""What a cache holds, decided before any decoding: the options of `prepare` and the photos it selects."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import PIL

from cnnlab.data.decode import DecodeOptions
from cnnlab.data.labels import class_order, find_labelled_files
from cnnlab.data.splits import SPLIT_NAMES, SplitOptions, plan_splits


@dataclass(frozen=True)
class PrepareOptions:
    decode: DecodeOptions = DecodeOptions()
    split: SplitOptions = SplitOptions()  # stratified, val 0.1, test 0.1 (splits.py)
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
    split, the class order and the row order an unsharded cache would have. A stratified split
    passes over the photos known not to decode (`unusable`); `refined` adds newly found ones.
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
    split_record: dict = field(default_factory=dict)  # the manifest's "split": options and counts per class
    unusable: frozenset[int] = frozenset()  # positions known not to decode
    passed_over: list[int] = field(default_factory=list)  # unusable positions the split reached (reported as skipped)

    def refined(self, unusable: Iterable[int]) -> "Selection":
        """The same folder split again, passing over `unusable` too (tutorial splits never change)."""
        unusable = self.unusable | frozenset(unusable)
        if self.split.kind == "tutorial" or unusable == self.unusable:
            return self
        return _split(self, unusable)


def select_photos(data_dir: str | os.PathLike, options: PrepareOptions) -> Selection:
    """List, label and split the photos of `data_dir` (no decoding). Raises ValueError on bad input."""
    root = Path(data_dir).resolve()
    found = find_labelled_files(root, options.layout)
    split = options.split.resolved()
    classes = class_order(found.labels, list(options.classes) if options.classes else None,
                          tutorial=split.kind == "tutorial")
    return _split(Selection(root, found.layout, found.paths, found.labels, found.ignored, split, classes, [], []),
                  frozenset())


def _split(selection: Selection, unusable: frozenset[int]) -> Selection:
    plan = plan_splits(selection.paths, selection.labels, selection.split, unusable)
    order = {name: position for position, name in enumerate(SPLIT_NAMES)}
    selected = sorted(
        (position for position, split_name in enumerate(plan.assignment) if split_name),
        key=lambda position: order[plan.assignment[position]],  # stable: keeps natural file order
    )
    return replace(selection, assignment=plan.assignment, selected=selected, split_record=plan.record(selection.split),
                   unusable=unusable, passed_over=plan.passed_over)
