"""Open a prepared cache for training and evaluation: pixels stay on disk, memory-mapped."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.cache import MANIFEST_NAME, read_manifest


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


def open_cache(cache_dir: str | os.PathLike) -> Cache:
    """Open a cache written by `prepare`. Raises ValueError naming the fix when it is missing."""
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    if manifest is None:
        reason = "no manifest" if not (cache_dir / MANIFEST_NAME).exists() else "incomplete or from another version"
        raise ValueError(f"{cache_dir}: not a usable cache ({reason}); run `cnnlab prepare DATA --out {cache_dir}`")
    images = np.load(cache_dir / manifest["image_file"], mmap_mode="r")
    records = manifest["records"]
    labels = np.fromiter((record["label"] for record in records), dtype=np.int64, count=len(records))
    splits = np.array([record["split"] for record in records], dtype="<U5")
    return Cache(cache_dir, manifest, images, labels, splits)
