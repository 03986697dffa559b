"""Deterministic train / validation / test splits, and the hash that identifies one.

- "tutorial": per class, files sorted by their numeric id; the first 2,048 train and the last
  512 validate, as the tutorial does (it used glob order, which is not deterministic; sorting
  by id is what it meant). An optional test split takes the photos right after the training
  ones, which the tutorial left unused, so validation stays exactly the tutorial's.
- "stratified": per class, files ordered by a hash of (seed, path), so the assignment of a file
  never depends on which other files exist; validation and test are taken first, training gets
  the rest (or a fixed number). Class-balanced: each split takes the same count per class.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from cnnlab.data.labels import natural_key
from cnnlab.data.photo_file import path_bytes
from cnnlab.errors import UserError

SPLIT_NAMES = ("train", "val", "test")
SPLIT_KINDS = ("tutorial", "stratified")


@dataclass(frozen=True)
class SplitOptions:
    kind: str = "tutorial"
    # tutorial: counts per class. stratified: totals over all classes (None = all remaining).
    train: int | None = None
    val: int | None = None
    test: int | None = None
    seed: int = 0

    def resolved(self) -> "SplitOptions":
        """Fill in each kind's defaults so that the stored options say exactly what was done."""
        if self.kind not in SPLIT_KINDS:
            raise UserError(f"unknown split {self.kind!r}; choose one of {', '.join(SPLIT_KINDS)}")
        for name in SPLIT_NAMES:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"--{name} must be >= 0, got {value}")
        if self.kind == "tutorial":
            return SplitOptions(
                "tutorial",
                2048 if self.train is None else self.train,
                512 if self.val is None else self.val,
                0 if self.test is None else self.test,
                self.seed,
            )
        return SplitOptions(
            "stratified", self.train, 500 if self.val is None else self.val, 500 if self.test is None else self.test, self.seed
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _seeded_order(path: str, seed: int) -> str:
    # The bytes of the name: UTF-8 for every valid name, so existing splits never change, and
    # the name's own bytes for one that is not UTF-8 (str.encode() would raise on its surrogates).
    return hashlib.sha256(f"{seed}:".encode() + path_bytes(path)).hexdigest()


def _per_class(total: int | None, number_of_classes: int, name: str) -> int | None:
    if total is None:
        return None
    if total % number_of_classes:
        raise UserError(
            f"--{name} {total} is not divisible by the {number_of_classes} classes; "
            f"class-balanced splits need a multiple of {number_of_classes}"
        )
    return total // number_of_classes


def assign_splits(paths: list[str], labels: list[str], options: SplitOptions) -> list[str | None]:
    """Return, for each file, 'train', 'val', 'test' or None (not used).

    Raises ValueError when a class has too few files for the requested counts.
    """
    options = options.resolved()
    by_class: dict[str, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    assignment: list[str | None] = [None] * len(paths)
    classes = sorted(by_class)
    for label in classes:
        members = by_class[label]
        if options.kind == "tutorial":
            members = sorted(members, key=lambda i: natural_key(paths[i]))
            train_count, val_count, test_count = options.train, options.val, options.test
            needed = train_count + val_count + test_count
            if len(members) < needed:
                raise UserError(
                    f"class {label!r} has {len(members)} photos; the tutorial split needs "
                    f"{needed} per class (--train {train_count} --val {val_count} --test {test_count}); lower them"
                )
            # First N train and the last M validate, as the tutorial; a test split, if asked
            # for, comes from the photos in between that the tutorial never used.
            chosen = {
                "train": members[:train_count],
                "test": members[train_count:train_count + test_count],
                "val": members[len(members) - val_count:] if val_count else [],
            }
        else:
            members = sorted(members, key=lambda i: _seeded_order(paths[i], options.seed))
            val_count = _per_class(options.val, len(classes), "val")
            test_count = _per_class(options.test, len(classes), "test")
            train_count = _per_class(options.train, len(classes), "train")
            fixed = val_count + test_count + (train_count or 0)
            if len(members) < fixed or (train_count is None and len(members) == fixed):
                raise UserError(
                    f"class {label!r} has {len(members)} photos, too few for "
                    f"{val_count} val + {test_count} test + {train_count or 'some'} train per class; lower the counts"
                )
            chosen = {
                "val": members[:val_count],
                "test": members[val_count:val_count + test_count],
            }
            rest = members[val_count + test_count:]
            chosen["train"] = rest if train_count is None else rest[:train_count]
        for split_name, positions in chosen.items():
            for position in positions:
                assignment[position] = split_name
    return assignment


def split_manifest_hash(entries: list[tuple[str, str, str]]) -> str:
    """SHA-256 of the sorted (path, label, split) triples: two caches with the same hash were
    built from the same files, labelled and split the same way. (JSON writes a non-UTF-8 name's
    surrogate escapes as \\udcNN, so every name hashes, and valid names as they always have.)"""
    canonical = json.dumps(sorted(entries), separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()
