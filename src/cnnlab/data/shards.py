"""Sharded caches: `cnnlab prepare DATA --out CACHE --shards N`.

A sharded cache is a folder of N independent caches plus one top-level manifest:

    CACHE/manifest.json              sharding options, totals, the split hash, the shard list
    CACHE/shard-000-of-004/          a complete ordinary cache (manifest.json + images-*.npy)
    ...

- A photo's shard is a hash of its relative path (SHARD_ASSIGNMENT): deterministic, stable when
  other photos come or go, and independent of the split. The split, the class order and the
  row order are computed from the whole folder, so they are exactly an unsharded prepare's:
  the same split hash, and each shard's rows are the unsharded rows restricted to its photos.
- Each shard can be prepared on its own (`--shard-index I --shards N`, one per machine);
  running `--shards N` without an index prepares whatever is missing or stale (shards that
  are up to date cost nothing) and then writes the top-level manifest, last.
- A photo that does not decode moves the whole folder's stratified split (its replacement is the
  next photo in the seeded order, possibly in another shard): the split passes over the bad photos
  every existing shard knows, and after preparing, over those just found, preparing again the
  shards whose part moved (their pixels reused). A shard prepared alone cannot know the bad photos
  of shards not yet prepared; the completing run moves those.
- `open_cache(CACHE)` presents all shards as one cache in the unsharded row order (the
  top-level manifest's `row_shards` says which shard each row comes from); `open_cache(CACHE,
  shard=i)` opens one shard, for a worker that reads only its part.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cnnlab.data.cache import (FORMAT_VERSION, MANIFEST_NAME, REASONS_SHOWN, REPORT_NAME, PrepareOptions, PrepareResult,
                               prepare_selection, read_manifest, reusable_rows, select_photos, sharded_count)
from cnnlab.data.cache_folder import check_out_folder, check_split_kept, is_cnnlab_manifest, remove_stale_temporaries
from cnnlab.data.cache_io import replace_atomically
from cnnlab.data.cache_plan import known_unusable
from cnnlab.data.photo_file import path_bytes, printable_path
from cnnlab.data.splits import SPLIT_NAMES, split_manifest_hash
from cnnlab.errors import EXIT_SOME_INPUTS_FAILED, UserError

SHARD_ASSIGNMENT = "int(sha256(relative path, UTF-8).hexdigest()[:16], 16) % count"  # a non-UTF-8 name: its own bytes
ROW_ORDER = "as an unsharded cache: train, val, test, each in natural file order; row_shards[row] = shard"
MAX_SHARDS = 1000


def shard_of(relative_path: str, count: int) -> int:
    """The shard of a photo: a function of its relative path only (see SHARD_ASSIGNMENT)."""
    # The name's own bytes: UTF-8 for every valid name (so shards never move), and no
    # UnicodeEncodeError for a name that is not UTF-8.
    return int(hashlib.sha256(path_bytes(relative_path)).hexdigest()[:16], 16) % count


def shard_folder(index: int, count: int) -> str:
    return f"shard-{index:03d}-of-{count:03d}"


def read_sharded_manifest(cache_dir: str | os.PathLike) -> dict | None:
    """The top-level manifest of a completed sharded cache, or None."""
    try:
        manifest = json.loads((Path(cache_dir) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not is_cnnlab_manifest(manifest) or manifest.get("format_version") != FORMAT_VERSION or "shards" not in manifest:
        return None
    return manifest


@dataclass
class ShardedPrepareResult:
    cache_dir: Path
    count: int
    shards: dict[int, PrepareResult]  # the shards prepared by this run
    manifest: dict | None  # top-level manifest; None when only one shard was prepared
    seconds: float = 0.0

    @property
    def skipped(self) -> list:
        return sorted((item for result in self.shards.values() for item in result.skipped), key=lambda item: item["path"])

    def summary(self) -> str:
        lines = [f"shard {index}: {result.summary()}" for index, result in sorted(self.shards.items())]
        if self.manifest is None:
            lines.append(f"cache {self.cache_dir}: {len(self.shards)} of {self.count} shards prepared by this run; once all "
                         f"{self.count} are in {self.cache_dir}, run `cnnlab prepare DATA --out {self.cache_dir} "
                         f"--shards {self.count}` to complete the top-level manifest")
        else:
            counts = self.manifest["counts"]
            per_split = ", ".join(f"{name} {sum(counts[name].values())}" for name in SPLIT_NAMES)
            lines.append(f"cache {self.cache_dir}: {self.manifest['shape'][0]} images in {self.count} shards ({per_split}); "
                         f"decoded {sum(r.decoded for r in self.shards.values())}, reused "
                         f"{sum(r.reused for r in self.shards.values())}; split hash {self.manifest['split_hash'][:16]} "
                         f"in {self.seconds:.1f} s")
        return "\n".join(lines)


def _check_folder(cache_dir: Path, count: int) -> None:
    """Refuse a folder that is not cnnlab's, or that mixes layouts or shard counts (stale shards would linger)."""
    check_out_folder(cache_dir)
    existing = sharded_count(cache_dir)
    if existing is not None and existing != count:
        raise UserError(f"{cache_dir} holds a cache of {existing} shards, not {count}; pass --shards {existing} "
                         "or choose another --out")
    if read_manifest(cache_dir) is not None:
        raise UserError(f"{cache_dir} holds an unsharded cache; choose another --out for a sharded one")
    others = sorted(path.name for path in cache_dir.glob("shard-*-of-*")
                    if path.is_dir() and not path.name.endswith(f"-of-{count:03d}"))
    if others:
        raise UserError(f"{cache_dir} holds shards of another count ({others[0]}); choose another --out")


def prepare_sharded(data_dir: str | os.PathLike, cache_dir: str | os.PathLike, options: PrepareOptions,
                    count: int, only: int | None = None, show_progress: bool = True) -> ShardedPrepareResult:
    """Prepare all `count` shards (then the top-level manifest), or only shard `only`."""
    started = time.perf_counter()
    if not 1 <= count <= MAX_SHARDS:
        raise UserError(f"--shards must be between 1 and {MAX_SHARDS}, got {count}")
    if only is not None and not 0 <= only < count:
        raise UserError(f"--shard-index must be between 0 and {count - 1} for --shards {count}, got {only}")
    cache_dir = Path(cache_dir)
    _check_folder(cache_dir, count)
    check_split_kept(cache_dir, options.split)
    selection = select_photos(data_dir, options)  # once, from the whole folder: the split every shard shares
    shard_by_path = [shard_of(path, count) for path in selection.paths]
    indices = range(count) if only is None else [only]
    # Photos the shards already know not to decode: the split passes over them (see splits.py).
    selection = selection.refined(_known_unusable(cache_dir, count, selection, options))
    results, decoded = {}, {index: 0 for index in indices}
    while True:
        for index in indices:
            part = replace(
                selection,
                selected=[position for position in selection.selected if shard_by_path[position] == index],
                passed_over=[position for position in selection.passed_over if shard_by_path[position] == index],
                ignored=[item for item in selection.ignored if shard_of(item["path"], count) == index],
                shard={"index": index, "count": count},
            )
            results[index] = prepare_selection(part, cache_dir / shard_folder(index, count), options, show_progress)
            decoded[index] += results[index].decoded
        unusable = {position for result in results.values() for position in result.unusable}
        if unusable >= set(selection.selected):
            break  # not one photo usable: nothing to split (_refuse_if_unusable says so)
        # Photos found not to decode in some shard move the whole folder's split: shards whose
        # part changed are written again (their pixels reused), the others are up to date.
        refined = selection.refined(unusable)
        if refined is selection:
            break  # nothing new (or the tutorial split, which never moves)
        selection = refined
    for index in indices:
        results[index].decoded = decoded[index]
    manifest = None
    if only is None:
        _refuse_if_unusable(cache_dir, selection, results)
        remove_stale_temporaries(cache_dir)
        manifest = _top_manifest(selection, shard_by_path, count, results)
        replace_atomically(cache_dir / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    return ShardedPrepareResult(cache_dir, count, results, manifest, time.perf_counter() - started)


def _known_unusable(cache_dir: Path, count: int, selection, options: PrepareOptions) -> set[int]:
    """Positions of the photos that some existing shard could not decode, unchanged since."""
    skips = {}
    for index in range(count):
        old = read_manifest(cache_dir / shard_folder(index, count))
        skips.update(reusable_rows(old, selection.root, options.decode_key())[1])
    return known_unusable(selection, skips)


def _refuse_if_unusable(cache_dir: Path, selection, results: dict[int, PrepareResult]) -> None:
    """Not one selected photo usable in any shard: stop with exit status 1, before the top-level
    manifest is written (so the folder does not open as a cache). Each shard's report lists its reasons."""
    if not selection.selected or any(result.manifest["shape"][0] for result in results.values()):
        return
    skipped = sorted((item for result in results.values() for item in result.skipped if "bytes" in item),
                     key=lambda item: item["path"])
    first = "; ".join(f"{item['path']}: {item['reason']}" for item in skipped[:REASONS_SHOWN])
    count = len(selection.selected)
    raise UserError(f"none of the {count} photos selected in {printable_path(selection.root)} could be used, all {count} "
                    f"skipped (first: {first}); every reason is in each shard's {REPORT_NAME}; no cache was completed",
                    exit_code=EXIT_SOME_INPUTS_FAILED)


def _top_manifest(selection, shard_by_path: list[int], count: int, results: dict[int, PrepareResult]) -> dict:
    """Totals over all shards and the unsharded row order; a pure function of the shards."""
    shard_manifests = [results[index].manifest for index in range(count)]
    first = shard_manifests[0]
    kept = {record["path"] for manifest in shard_manifests for record in manifest["records"]}
    row_shards = [shard_by_path[position] for position in selection.selected if selection.paths[position] in kept]
    records = [record for manifest in shard_manifests for record in manifest["records"]]
    counts = {name: {cls: sum(m["counts"][name][cls] for m in shard_manifests) for cls in first["classes"]}
              for name in SPLIT_NAMES}
    return {
        "format_version": FORMAT_VERSION,
        "source": first["source"],
        "decode": first["decode"],
        "split": first["split"],
        "sharding": {"count": count, "assignment": SHARD_ASSIGNMENT, "row_order": ROW_ORDER},
        "classes": first["classes"],
        "class_to_index": first["class_to_index"],
        "shape": [len(row_shards), *first["shape"][1:]],
        "dtype": "uint8",
        "layout_note": first["layout_note"],
        "counts": counts,
        "split_hash": split_manifest_hash([(r["path"], r["class"], r["split"]) for r in records]),
        "shards": [{"folder": shard_folder(index, count), "image_file": manifest["image_file"],
                    "rows": manifest["shape"][0]} for index, manifest in enumerate(shard_manifests)],
        "row_shards": row_shards,
        "skipped": sorted((item for m in shard_manifests for item in m["skipped"]), key=lambda item: item["path"]),
    }
