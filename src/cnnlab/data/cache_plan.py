"""Which photos one `prepare` reads, and the order their rows take in the cache.

A photo's pixels come from the old cache when it is unchanged (same path, size and mtime, same
decode options), else from a fresh decode; a photo the old cache knows not to decode is not
decoded again. A stratified split passes over the photos that do not decode (splits.py), so
with `refine` the plan goes in rounds: the photos the split selects, then, when some of them
turn out not to decode, the photos that replace them (`Selection.refined`), until none fail.
Rows are written as they come and put in the final split's order at the end (`finish`): the
train, val, test row order of a cache never depends on which photos failed on the way.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.photo_file import printable_path
from cnnlab.data.selection import Selection


def signature(path: Path) -> tuple[int, int]:
    """(bytes, mtime_ns) of a file, (0, 0) when it cannot be read: what says it is unchanged."""
    try:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return 0, 0


def known_unusable(selection: Selection, skips: dict) -> set[int]:
    """Positions of the photos an earlier prepare could not decode and that have not changed since
    (`skips`: the old skipped entries by printable path, as cache.reusable_rows gives them)."""
    known = set()
    for position, relative in enumerate(selection.paths):
        skip = skips.get(printable_path(relative)) if skips else None
        if skip is not None and (skip["bytes"], skip["mtime_ns"]) == signature(selection.root / relative):
            known.add(position)
    return known


class CachePlan:
    """The photos of `selection` to read, each reused from the old cache or decoded anew."""

    def __init__(self, selection: Selection, old_records: dict, old_skips: dict, refine: bool):
        if refine:
            selection = selection.refined(known_unusable(selection, old_skips))
        self.selection = selection  # the split the plan starts from
        self.final = selection  # the split once every round is done
        self.old_records, self.old_skips, self.refine = old_records, old_skips, refine
        self.first_round = selection.selected + selection.passed_over
        self._signatures: dict[int, tuple[int, int]] = {}
        self.reset()

    def reset(self) -> None:
        self.decoded, self.reused, self.planned = 0, 0, 0
        self.unusable: list[int] = []  # positions of the photos that did not decode
        self.skipped: list[dict] = []

    def items(self, positions: list[int]) -> list[tuple]:
        """(position, (bytes, mtime_ns), reuse: (old row, old record) | old skip | None) per photo."""
        items = []
        for position in positions:
            relative = self.selection.paths[position]
            if position not in self._signatures:
                self._signatures[position] = signature(self.selection.root / relative)
            found = self._signatures[position]
            record, skip = self.old_records.get(relative), self.old_skips.get(printable_path(relative))
            if record is not None and (record[1]["bytes"], record[1]["mtime_ns"]) == found:
                reuse = record
            elif skip is not None and (skip["bytes"], skip["mtime_ns"]) == found:
                reuse = skip
            else:
                reuse = None
            items.append((position, found, reuse))
        return items

    def to_decode(self) -> int:
        """How many photos of the first round need decoding (0: maybe up to date)."""
        return sum(1 for _, _, reuse in self.items(self.first_round) if reuse is None)

    def entries(self, decode):
        """Yield (record or skip, pixels: new array | old row | None, position), round by round.

        `decode(paths)` gives (pixels, md5, reason) per path. Raises UserError when photos that do
        not decode leave a class too small for the split.
        """
        selection = self.selection
        current, done, positions = selection, set(), self.first_round
        while positions:
            items = self.items(positions)
            self.planned += len(items)
            paths = [str(selection.root / selection.paths[position]) for position, _, reuse in items if reuse is None]
            self.decoded += len(paths)
            decoded = decode(paths)
            newly_unusable = []
            for position, (size, mtime_ns), reuse in items:
                base = {"path": selection.paths[position], "bytes": size, "mtime_ns": mtime_ns}
                if reuse is None:
                    pixels, md5, reason = next(decoded)
                elif "reason" in reuse:  # known bad and unchanged: not decoded again
                    pixels, md5, reason = None, reuse.get("md5", ""), reuse["reason"]
                else:
                    pixels, md5, reason = reuse[0], reuse[1]["md5"], None
                    self.reused += 1
                if reason is not None:
                    self.unusable.append(position)
                    if position not in current.unusable:
                        newly_unusable.append(position)
                    skip = {**base, "path": printable_path(base["path"]), "md5": md5, "reason": reason}
                    self.skipped.append(skip)
                    yield skip, None, position
                else:
                    label = selection.labels[position]
                    yield {**base, "md5": md5, "class": label, "label": selection.classes.index(label),
                           "split": current.assignment[position]}, pixels, position
            done.update(positions)
            if not self.refine or not newly_unusable or len(self.unusable) == len(done):
                break  # nothing moved, or not one photo usable yet: nothing to split
            current = current.refined(newly_unusable)
            positions = [position for position in current.selected + current.passed_over if position not in done]
        self.final = current

    def finish(self, rows: list[tuple[int, dict]]) -> tuple[list[dict], list[int]]:
        """The records of the rows written, (position, record) in writing order, in the final
        split's row order with its labels, and where each comes from: records[i] is rows[order[i]]."""
        final = self.final
        row_of = {position: row for row, (position, _) in enumerate(rows)}
        order = [row_of[position] for position in final.selected if position in row_of]
        return [{**rows[row][1], "split": final.assignment[rows[row][0]]} for row in order], order
