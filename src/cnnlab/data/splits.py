"""Deterministic train / validation / test splits, and the hash that identifies one.

- "stratified" (the default): per class, files ordered by a hash of (seed, path), so the
  assignment of a file never depends on which other files exist; validation and test are taken
  first, training gets the rest (or a fixed number). --val, --test and --train each take
    - a fraction in (0, 1): that share of each class's photos, rounded half up, at least 1
      (--val 0.1 of a class of 25 is 3, of a class of 4 is 1);
    - a whole number: a total over all classes, shared equally, the first classes in sorted
      order taking one more when it does not divide (--val 500 over 3 classes is 167, 167, 166).
  Defaults: val 0.1, test 0.1, train all the rest, seed 0. Each class's counts are computed from
  the photos found in it before any decoding; photos that then fail to decode are passed over
  (the next ones in the seeded order take their place), so the counts hold exactly.
- "tutorial": per class, files sorted by their numeric id; the first 2,048 train and the last
  512 validate, as the tutorial does (it used glob order, which is not deterministic; sorting
  by id is what it meant). An optional test split takes the photos right after the training
  ones, which the tutorial left unused, so validation stays exactly the tutorial's. Counts are
  per class; a photo that fails to decode is skipped and not replaced, as the tutorial is exact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from cnnlab.data.labels import natural_key
from cnnlab.data.photo_file import path_bytes
from cnnlab.data.split_options import (  # noqa: F401 (SplitOptions and the defaults: part of this module's API)
    DEFAULT_KIND, DEFAULT_SEED, SPLIT_KINDS, SPLIT_NAMES, STRATIFIED_DEFAULTS, TUTORIAL_DEFAULTS, ClassCounts,
    SplitOptions, parse_split_value, stratified_counts)
from cnnlab.errors import EXIT_SOME_INPUTS_FAILED, UserError


@dataclass
class SplitPlan:
    assignment: list[str | None]  # for each file: 'train', 'val', 'test' or None (not used)
    passed_over: list[int]  # files known not to decode that the split passed over (stratified)
    counts: dict[str, ClassCounts] | None  # stratified: each class's counts

    def record(self, options: SplitOptions) -> dict:
        """The manifest's "split" entry: the resolved options and, for stratified, each class's counts."""
        if self.counts is None:
            return options.to_dict()
        return {**options.to_dict(), "per_class": {label: asdict(counts) for label, counts in self.counts.items()}}


def _seeded_order(path: str, seed: int) -> str:
    # The bytes of the name: UTF-8 for every valid name, so existing splits never change, and
    # the name's own bytes for one that is not UTF-8 (str.encode() would raise on its surrogates).
    return hashlib.sha256(f"{seed}:".encode() + path_bytes(path)).hexdigest()


def assign_splits(paths: list[str], labels: list[str], options: SplitOptions) -> list[str | None]:
    """Return, for each file, 'train', 'val', 'test' or None (not used). Raises UserError when a
    class has too few files for the requested counts."""
    return plan_splits(paths, labels, options).assignment


def plan_splits(paths: list[str], labels: list[str], options: SplitOptions,
                unusable: frozenset[int] = frozenset()) -> SplitPlan:
    """The split of every file, passing over the positions in `unusable` (files known not to
    decode) in a stratified split, so that its counts hold."""
    options = options.resolved()
    by_class: dict[str, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    assignment: list[str | None] = [None] * len(paths)
    passed_over: list[int] = []
    counts = None if options.kind == "tutorial" else stratified_counts(options, {k: len(v) for k, v in by_class.items()})
    for label in sorted(by_class):
        members = by_class[label]
        if counts is None:
            chosen = _tutorial_class(label, sorted(members, key=lambda i: natural_key(paths[i])), options)
        else:
            members = sorted(members, key=lambda i: _seeded_order(paths[i], options.seed))
            chosen, skipped = _stratified_class(label, members, counts[label], options, unusable)
            passed_over.extend(skipped)
        for split_name, positions in chosen.items():
            for position in positions:
                assignment[position] = split_name
    return SplitPlan(assignment, sorted(passed_over), counts)


def _tutorial_class(label: str, members: list[int], options: SplitOptions) -> dict[str, list[int]]:
    train_count, val_count, test_count = options.train, options.val, options.test
    needed = train_count + val_count + test_count
    if len(members) < needed:
        raise UserError(
            f"class {label!r} has {len(members)} photos; the tutorial split needs "
            f"{needed} per class (--train {train_count} --val {val_count} --test {test_count}); lower them"
        )
    # First N train and the last M validate, as the tutorial; a test split, if asked for, comes
    # from the photos in between that the tutorial never used.
    return {
        "train": members[:train_count],
        "test": members[train_count:train_count + test_count],
        "val": members[len(members) - val_count:] if val_count else [],
    }


def _stratified_class(label: str, members: list[int], counts: ClassCounts, options: SplitOptions,
                      unusable: frozenset[int]) -> tuple[dict[str, list[int]], list[int]]:
    """(the class's files per split, the unusable ones passed over); `members` in seeded order."""
    if len(members) < counts.needed():
        raise UserError(f"class {label!r} has {len(members)} photos; {_needs(counts, options, len(members))}")
    usable = [position for position in members if position not in unusable]
    if len(usable) < counts.needed():
        raise UserError(f"class {label!r} has {len(usable)} usable photos ({len(members) - len(usable)} of its "
                        f"{len(members)} could not be decoded); {_needs(counts, options, len(usable), 'replace them')}",
                        exit_code=EXIT_SOME_INPUTS_FAILED)
    val_end = counts.val + counts.test
    end = len(usable) if counts.train is None else val_end + counts.train
    chosen = {"val": usable[:counts.val], "test": usable[counts.val:val_end], "train": usable[val_end:end]}
    # The unusable files the split reached: all of the class's when training takes the rest.
    reached = len(members) if counts.train is None else members.index(usable[end - 1]) + 1 if end else 0
    return chosen, [position for position in members[:reached] if position in unusable]


def _needs(counts: ClassCounts, options: SplitOptions, available: int, first_fix: str = "add photos") -> str:
    train = "1" if counts.train is None else str(counts.train)
    if counts.test and available >= counts.needed() - counts.test:
        fix = "pass --test 0"
    elif counts.train and available >= counts.needed() - counts.train + 1:
        fix = "lower --train"
    else:
        fix = "lower --val/--test"
    return (f"the stratified split ({options.flags()}) needs at least {counts.needed()} of them "
            f"({train} train, {counts.val} validation, {counts.test} test) - {first_fix} or {fix}")


def split_manifest_hash(entries: list[tuple[str, str, str]]) -> str:
    """SHA-256 of the sorted (path, label, split) triples: two caches with the same hash were
    built from the same files, labelled and split the same way. (JSON writes a non-UTF-8 name's
    surrogate escapes as \\udcNN, so every name hashes, and valid names as they always have.)"""
    canonical = json.dumps(sorted(entries), separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()
