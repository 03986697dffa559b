"""`cnnlab prepare`: decode every photo once into a compact, memory-mapped cache.

A cache is a folder holding
- `images-<token>.npy`: uint8 pixels, shape (N, height, width, 3), written by streaming, so
  the memory of `prepare` does not grow with N (only the manifest does);
- `manifest.json`: options, class list, one record per image (source path, size, mtime, md5,
  label, split) and the skipped files with their reasons. It names the pixel file it belongs to,
  and it is written last, by an atomic rename: an interrupted prepare leaves either the old
  cache or none, never a manifest that points at half-written pixels.

The manifest is a pure function of the inputs (no timestamps), so an unchanged folder gives a
byte-identical manifest. Records keep each photo's relative path exactly (a name that is not
UTF-8 is stored with its surrogate escapes, which JSON keeps and Python reads back); skipped
entries, written for people, carry printable paths (photo_file.printable_path).

Re-running reuses the pixels of unchanged files (same path, size and mtime, same decode
options) and decodes only new or changed ones. A photo that does not decode is skipped and
reported; in a stratified split the next photo in its class's seeded order takes its place, so
the requested counts hold (cache_plan.py). `prepare` writes only into a folder that is cnnlab's
(cache_folder.py), never re-splits a cache unless split options are given, and stops with exit
status 1 when not one selected photo can be used.

`prepare_selection` also writes each shard of a sharded cache (cnnlab.data.shards): a shard is
an ordinary cache of a subset of the photos whose manifest carries a "shard" entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.data.cache_folder import (FORMAT_VERSION, MANIFEST_NAME, PIXEL_FILE, REPORT_NAME, check_out_folder,
                                     check_split_kept, is_cnnlab_manifest, load_manifest, remove_stale_temporaries)
from cnnlab.data.cache_io import NPY_HEADER_BYTES, RowReader, finish_npy, reorder_rows, replace_atomically
from cnnlab.data.cache_plan import CachePlan
from cnnlab.data.parallel import decode_in_parallel
from cnnlab.data.photo_file import printable_path
from cnnlab.data.selection import PrepareOptions, Selection, select_photos  # select_photos: part of this module's API
from cnnlab.data.splits import SPLIT_NAMES, split_manifest_hash
from cnnlab.progress import Progress
from cnnlab.errors import EXIT_SOME_INPUTS_FAILED, UserError
from cnnlab.outputs import output_folder

# How many skipped photos the error for "not one photo could be used" names (all are in the report).
REASONS_SHOWN = 3


@dataclass
class PrepareResult:
    cache_dir: Path
    manifest: dict
    decoded: int = 0
    reused: int = 0
    seconds: float = 0.0
    up_to_date: bool = False
    skipped: list = field(default_factory=list)
    unusable: list = field(default_factory=list, repr=False)  # positions in the selection of photos that failed

    def summary(self) -> str:
        counts = self.manifest["counts"]
        per_split = "; ".join(
            f"{split} {sum(per_class.values())} ({', '.join(f'{k} {v}' for k, v in per_class.items())})"
            for split, per_class in counts.items()
            if sum(per_class.values())
        )
        state = "up to date" if self.up_to_date else f"decoded {self.decoded}, reused {self.reused}"
        shape = "x".join(str(n) for n in self.manifest["shape"][1:])
        return (
            f"cache {self.cache_dir}: {self.manifest['shape'][0]} images of {shape} (HxWxC) - {per_split}; "
            f"{state}; skipped {len(self.skipped)}; classes {self.manifest['class_to_index']} "
            f"in {self.seconds:.1f} s"
        )


def read_manifest(cache_dir: str | os.PathLike) -> dict | None:
    """The manifest of a complete cache, or None if there is none or it is not usable."""
    cache_dir = Path(cache_dir)
    try:
        manifest = json.loads((cache_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not is_cnnlab_manifest(manifest) or manifest.get("format_version") != FORMAT_VERSION or "shards" in manifest:
        return None  # a sharded cache's top-level manifest has no pixels of its own (see shards.py)
    try:
        pixels = cache_dir / manifest["image_file"]
        rows, height, width, channels = manifest["shape"]
        expected = NPY_HEADER_BYTES + rows * height * width * channels
    except (KeyError, TypeError, ValueError):
        return None
    if not pixels.is_file() or pixels.stat().st_size != expected:
        return None
    return manifest


def reusable_rows(old: dict | None, root: Path, decode_key: dict) -> tuple[dict, dict]:
    """Old records and old skips keyed by path, when the old cache's pixels can be reused."""
    if not old or old["decode"] != decode_key or old["source"]["root"] != str(root):
        return {}, {}
    records = {record["path"]: (row, record) for row, record in enumerate(old["records"])}
    skips = {skip["path"]: skip for skip in old["skipped"] if "bytes" in skip}  # printable paths
    return records, skips


def sharded_count(cache_dir: str | os.PathLike) -> int | None:
    """The number of shards when `cache_dir` holds a sharded cache's top-level manifest."""
    manifest = load_manifest(Path(cache_dir))
    try:
        return int(manifest["sharding"]["count"]) if manifest and "shards" in manifest else None
    except (KeyError, TypeError, ValueError):
        return None


def prepare(data_dir: str | os.PathLike, cache_dir: str | os.PathLike, options: PrepareOptions = PrepareOptions(),
            show_progress: bool = True) -> PrepareResult:
    """Build or update the cache for `data_dir` in `cache_dir`. Raises ValueError on bad input."""
    count = sharded_count(cache_dir)
    if count is not None:
        raise UserError(f"{cache_dir} holds a cache of {count} shards; pass --shards {count} or choose another --out")
    check_out_folder(cache_dir)
    check_split_kept(cache_dir, options.split)
    return prepare_selection(select_photos(data_dir, options), cache_dir, options, show_progress, refuse_empty=True,
                             refine=True)


def prepare_selection(selection: Selection, cache_dir: str | os.PathLike, options: PrepareOptions,
                      show_progress: bool = True, refuse_empty: bool = False, refine: bool = False) -> PrepareResult:
    """Decode (or reuse) the pixels of `selection` into the cache folder `cache_dir`.

    With `refine` (an unsharded cache), a stratified split passes over every photo that does not
    decode, those the old cache knows and those found on the way, and takes the next photos in
    its order instead (cache_plan.py): the cache is then what the next prepare finds up to date.
    A shard's split is the whole folder's: shards.py refines it over all shards, not here.
    With `refuse_empty`, a selection none of whose photos can be used raises a UserError (exit
    status 1) after writing the report, and leaves the folder's cache as it was.
    """
    started = time.perf_counter()
    root, cache_dir = selection.root, Path(cache_dir)
    remove_stale_temporaries(cache_dir)
    decode_key = options.decode_key()
    old = read_manifest(cache_dir)
    old_records, old_skips = reusable_rows(old, root, decode_key)
    plan = CachePlan(selection, old_records, old_skips, refine)

    def finish(rows: list[tuple[int, dict]], skipped: list[dict]) -> tuple[dict, list[int]]:
        records, order = plan.finish(rows)
        return _build_manifest(root, selection.layout, options, decode_key, plan.final.split_record,
                               selection.classes, records, selection.ignored + skipped, selection.shard), order

    up_to_date = False
    if old is not None and not plan.to_decode():
        # Nothing new to decode: if the manifest would come out the same, there is no work.
        entries = list(plan.entries(_nothing_to_decode))
        manifest, _ = finish([(position, entry) for entry, pixels, position in entries if pixels is not None],
                             [entry for entry, pixels, _ in entries if pixels is None])
        up_to_date = manifest == old
    if not up_to_date:
        plan.reset()
        output_folder(cache_dir)
        shard = f" shard {selection.shard['index']}/{selection.shard['count']}" if selection.shard else ""
        progress = Progress(plan.to_decode(), f"prepare {root.name}{shard}", live=None if show_progress else False,
                            stream=None if show_progress else open(os.devnull, "w"))

        def decode(paths):
            progress.total = max(progress.total, plan.decoded)  # a later round adds the replacements
            return decode_in_parallel(paths, options.decode, options.workers, progress)

        try:
            manifest, committed = _write_cache(cache_dir, plan.entries(decode), old if old_records else None,
                                               (options.decode.height, options.decode.width, 3), finish,
                                               commit_empty=not (refuse_empty and plan.first_round))
        except UserError as error:
            _refuse_split(cache_dir, plan, time.perf_counter() - started, error)
        finally:
            progress.close()
        if not committed:
            _refuse_unusable(cache_dir, root, plan.planned, manifest["skipped"], time.perf_counter() - started)
    skipped = manifest["skipped"]
    result = PrepareResult(cache_dir, manifest, decoded=plan.decoded, reused=plan.reused,
                           seconds=time.perf_counter() - started, up_to_date=up_to_date, skipped=skipped,
                           unusable=sorted(plan.unusable))
    report = {"summary": result.summary(), "decoded": result.decoded, "reused": result.reused,
              "seconds": round(result.seconds, 2), "skipped": skipped}
    replace_atomically(cache_dir / REPORT_NAME, json.dumps(report, indent=1).encode())
    return result


def _nothing_to_decode(paths):
    if paths:
        raise RuntimeError(f"{len(paths)} photos to decode in an up-to-date check")
    return iter(())


def _refuse_split(cache_dir: Path, plan: CachePlan, seconds: float, error: UserError) -> None:
    """Photos that do not decode left a class too small for the split: report them all, then stop."""
    if error.exit_code != EXIT_SOME_INPUTS_FAILED:
        raise error
    report = {"summary": f"no cache written: {error}", "decoded": plan.decoded, "reused": plan.reused,
              "seconds": round(seconds, 2), "skipped": sorted(plan.skipped, key=lambda item: item["path"])}
    replace_atomically(cache_dir / REPORT_NAME, json.dumps(report, indent=1).encode())
    raise UserError(f"{error}; every reason is in {cache_dir / REPORT_NAME}; the cache was not changed",
                    exit_code=EXIT_SOME_INPUTS_FAILED) from None


def _refuse_unusable(cache_dir: Path, root: Path, count: int, skipped: list[dict], seconds: float) -> None:
    """Not one selected photo could be used: report every reason, then stop with exit status 1.

    The error comes after prepare-report.json is written, so that no reason is lost, and
    instead of committing a cache: an empty cache trains nothing, and it would replace a usable
    cache already in the folder (as when the photos' drive is missing and every read fails).
    """
    report = {"summary": f"no cache written: none of the {count} photos selected in {printable_path(root)} could be used",
              "decoded": count, "reused": 0, "seconds": round(seconds, 2), "skipped": skipped}
    replace_atomically(cache_dir / REPORT_NAME, json.dumps(report, indent=1).encode())
    photos = [item for item in skipped if "bytes" in item] or skipped  # selected photos first, other files after
    first = "; ".join(f"{item['path']}: {item['reason']}" for item in photos[:REASONS_SHOWN])
    raise UserError(f"none of the {count} photos selected in {printable_path(root)} could be used, all {count} skipped "
                    f"(first: {first}); every reason is in {cache_dir / REPORT_NAME}; no cache was written",
                    exit_code=EXIT_SOME_INPUTS_FAILED)


def _write_cache(cache_dir: Path, entries, old: dict | None, row_shape, finish, commit_empty: bool = True):
    """Stream pixels to a partial file, put its rows in the manifest's order, then commit it and
    the manifest (manifest last).

    `entries` yields (record or skip, pixels: array | old row | None, position); `finish(rows,
    skipped)` gives the manifest and the written rows' order in it. Returns (manifest, committed):
    with no photo usable and not `commit_empty`, nothing is committed and the folder keeps what it held.
    """
    partial = cache_dir / f".images-{os.getpid()}.npy.partial"
    old_rows = RowReader(cache_dir / old["image_file"], row_shape) if old else None
    rows, skipped = [], []
    try:
        with open(partial, "wb") as output:
            output.write(b"\0" * NPY_HEADER_BYTES)
            for entry, pixels, position in entries:
                if pixels is None:
                    skipped.append(entry)
                    continue
                output.write(pixels.tobytes() if isinstance(pixels, np.ndarray) else old_rows.read(pixels))
                rows.append((position, entry))
            finish_npy(output, (len(rows), *row_shape))
        manifest, order = finish(rows, skipped)
        if not order and not commit_empty:
            return manifest, False
        if order != list(range(len(rows))):  # photos moved between splits: rows follow
            reorder_rows(partial, order, row_shape)
        os.replace(partial, cache_dir / manifest["image_file"])
        replace_atomically(cache_dir / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
        for stale in cache_dir.iterdir():  # pixel files of older caches: only names cnnlab writes
            if PIXEL_FILE.match(stale.name) and stale.name != manifest["image_file"]:
                stale.unlink()
        return manifest, True
    finally:
        if old_rows:
            old_rows.close()
        if partial.exists():
            partial.unlink()


def _build_manifest(root, layout, options, decode_key, split_record, classes, records, skipped, shard=None) -> dict:
    counts = {name: {cls: 0 for cls in classes} for name in SPLIT_NAMES}
    for record in records:
        counts[record["split"]][record["class"]] += 1
    split_hash = split_manifest_hash([(r["path"], r["class"], r["split"]) for r in records])
    manifest = {
        "format_version": FORMAT_VERSION,
        "source": {"root": str(root), "layout": layout},
        "decode": decode_key,
        "split": split_record,
        **({"shard": shard} if shard else {}),  # absent from unsharded caches, which stay byte-identical
        "classes": classes,
        "class_to_index": {name: index for index, name in enumerate(classes)},
        "shape": [len(records), options.decode.height, options.decode.width, 3],
        "dtype": "uint8",
        "layout_note": "pixels are (N, height, width, RGB) uint8; training transposes to channels_first per batch",
        "counts": counts,
        "split_hash": split_hash,
        "records": records,
        "skipped": sorted(skipped, key=lambda item: item["path"]),
    }
    content = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    manifest["image_file"] = f"images-{content}.npy"
    return manifest
