"""Open a prepared cache for training and evaluation: pixels stay on disk, memory-mapped."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.cache import MANIFEST_NAME, read_manifest
from cnnlab.data.shards import read_sharded_manifest
from cnnlab.errors import UserError


@dataclass
class Cache:
    root: Path
    manifest: dict
    images: np.ndarray  # read-only memmap, (N, height, width, 3) uint8
    labels: np.ndarray  # (N,) int64 class indices
    splits: np.ndarray  # (N,) str: 'train' | 'val' | 'test'

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def split_hash(self) -> str:
        return self.manifest["split_hash"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every cached image."""
        return tuple(self.manifest["shape"][1:])

    def indices(self, split: str) -> np.ndarray:
        """Row numbers of one split, in cache order (training shuffles them itself)."""
        return np.flatnonzero(self.splits == split)

    def paths(self, rows) -> list[str]:
        records = self.manifest["records"]
        return [str(Path(self.manifest["source"]["root"]) / records[row]["path"]) for row in rows]


def open_cache(cache_dir: str | os.PathLike, shard: int | None = None) -> Cache:
    """Open a cache written by `prepare`. Raises ValueError naming the fix when it is missing.

    A sharded cache opens as one Cache in the unsharded row order; `shard=i` opens only shard i
    (a worker's disjoint part, with its own row numbers).
    """
    cache_dir = Path(cache_dir)
    top = read_sharded_manifest(cache_dir)
    if top is not None:
        return _open_one_shard(cache_dir, top, shard) if shard is not None else _open_all_shards(cache_dir, top)
    if shard is not None:
        raise UserError(f"{cache_dir}: not a sharded cache (or not completed); open it without a shard, or run "
                         f"`cnnlab prepare DATA --out {cache_dir} --shards N`")
    return _open_single(cache_dir)


def _open_single(cache_dir: Path) -> Cache:
    manifest = read_manifest(cache_dir)
    if manifest is None:
        reason = "no manifest" if not (cache_dir / MANIFEST_NAME).exists() else "incomplete or from another version"
        raise UserError(f"{cache_dir}: not a usable cache ({reason}); run `cnnlab prepare DATA --out {cache_dir}`")
    images = np.load(cache_dir / manifest["image_file"], mmap_mode="r")
    records = manifest["records"]
    labels = np.fromiter((record["label"] for record in records), dtype=np.int64, count=len(records))
    splits = np.array([record["split"] for record in records], dtype="<U5")
    return Cache(cache_dir, manifest, images, labels, splits)


def _open_one_shard(cache_dir: Path, top: dict, index: int) -> Cache:
    count = len(top["shards"])
    if not 0 <= index < count:
        raise UserError(f"{cache_dir}: shard {index} does not exist; this cache has shards 0 to {count - 1}")
    entry = top["shards"][index]
    cache = _open_single(cache_dir / entry["folder"])
    if cache.manifest["image_file"] != entry["image_file"]:
        raise UserError(f"{cache_dir}: shard {index} changed after the cache was completed; run "
                         f"`cnnlab prepare DATA --out {cache_dir} --shards {count}`")
    return cache


def _open_all_shards(cache_dir: Path, top: dict) -> Cache:
    parts = [_open_one_shard(cache_dir, top, index) for index in range(len(top["shards"]))]
    row_shards = np.asarray(top["row_shards"], dtype=np.int64)
    if len(row_shards) != top["shape"][0] or any(np.sum(row_shards == i) != len(p.labels) for i, p in enumerate(parts)):
        raise UserError(f"{cache_dir}: the top-level manifest does not match its shards; prepare it again with --shards")
    # Each shard holds the unsharded rows restricted to its photos, in the same order, so the
    # k-th row taken from shard s is that shard's row k.
    local_rows = np.empty(len(row_shards), dtype=np.int64)
    labels = np.empty(len(row_shards), dtype=np.int64)
    splits = np.empty(len(row_shards), dtype="<U5")
    for index, part in enumerate(parts):
        mask = row_shards == index
        local_rows[mask] = np.arange(len(part.labels))
        labels[mask], splits[mask] = part.labels, part.splits
    records = [parts[s].manifest["records"][row] for s, row in zip(row_shards.tolist(), local_rows.tolist())]
    identity = hashlib.sha256(json.dumps(top, sort_keys=True).encode()).hexdigest()[:16]
    manifest = {**top, "records": records, "image_file": f"shards-{identity}"}
    return Cache(cache_dir, manifest, ShardedImages([part.images for part in parts], row_shards, local_rows),
                 labels, splits)


class ShardedImages:
    """The shards' memory-mapped pixels seen as one read-only (N, height, width, 3) array.

    Supports what readers of Cache.images do: len, shape, dtype, an integer, a slice, an
    integer array or a boolean mask as the first index (then any further indices), np.asarray.
    """

    def __init__(self, parts: list[np.ndarray], row_shards: np.ndarray, local_rows: np.ndarray):
        self.parts, self.row_shards, self.local_rows = parts, row_shards, local_rows
        self.shape = (len(row_shards), *parts[0].shape[1:])
        self.dtype = np.dtype(np.uint8)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            head = self[key[0]]
            return head[key[1:]] if np.ndim(key[0]) == 0 and not isinstance(key[0], slice) else head[(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            row = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"row {key} is out of range for {len(self)} images")
            return self.parts[self.row_shards[row]][self.local_rows[row]]
        rows = np.arange(len(self))[key]
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        shards = self.row_shards[rows]
        for index in np.unique(shards):
            mask = shards == index
            out[mask] = self.parts[index][self.local_rows[rows[mask]]]
        return out

    def __array__(self, dtype=None, copy=None):
        pixels = self[:]
        return pixels if dtype is None else pixels.astype(dtype)
