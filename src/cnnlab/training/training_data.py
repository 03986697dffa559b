"""The photos one training process reads: all of a cache, its part of every global batch, or
its own shard of a sharded cache (cnnlab.training.distributed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cnnlab.data.reader import Cache, open_cache
from cnnlab.data.shards import read_sharded_manifest
from cnnlab.training import distributed
from cnnlab.training.batches import CacheBatches, check_batch_splits


@dataclasses.dataclass
class TrainingData:
    cache: Cache  # the rows this process reads from (one shard's, with its own row numbers, when sharded)
    split_hash: str  # of the whole data set, as an unsharded prepare would record it
    manifest: dict  # the whole cache's manifest, for the run's data.json
    workers: distributed.Workers
    sharded: bool  # each worker reads its own cache shard

    def batches(self, train_rows: np.ndarray, val_rows: np.ndarray, recipe, seed: int, epoch: int,
                validation_batch: int = 128):
        """Training batches (shuffled, augmented) and validation batches (as the photos are)."""
        workers, cache = self.workers, self.cache
        common = dict(images=cache.images, labels=cache.labels, num_classes=len(cache.classes),
                      pixel_scale=recipe.pixel_scale)
        if not self.sharded:
            # TensorFlow workers all read every global batch: the strategy splits it among them.
            rank, world_size = (workers.rank, workers.world_size) if workers.on_torch else (0, 1)
            train = CacheBatches(rows=train_rows, batch_size=recipe.batch_size, shuffle=True, seed=seed, epoch=epoch,
                                 augment=recipe.augment, rank=rank, world_size=world_size, **common)
            val = CacheBatches(rows=distributed.validation_part(val_rows, workers), batch_size=validation_batch,
                               shuffle=False, **common)
            return train, val
        check_batch_splits(recipe.batch_size, workers.world_size)
        local_batch = recipe.batch_size // workers.world_size
        # Shards differ in size by a few photos: every worker takes as many steps as the smallest.
        steps = distributed.reduce_int(-(-len(train_rows) // local_batch), workers, "min")
        train = CacheBatches(rows=train_rows, batch_size=local_batch, shuffle=True, seed=seed, epoch=epoch,
                             augment=recipe.augment, stream=workers.rank, steps=steps, **common)
        val = CacheBatches(rows=val_rows, batch_size=validation_batch, shuffle=False, **common)
        return train, val

    def description(self, train_rows: np.ndarray, val_rows: np.ndarray) -> dict:
        """data.json: what the run was trained on, over all workers."""
        workers = self.workers
        counts = {"test_images": int(sum(self.manifest["counts"]["test"].values()))} if self.sharded else \
            {"test_images": int(len(self.cache.indices("test")))}
        if self.sharded:
            train_images = distributed.reduce_int(len(train_rows), workers, "sum")
            val_images = distributed.reduce_int(len(val_rows), workers, "sum")
        else:
            train_images, val_images = len(train_rows), len(val_rows)
        return {"split_hash": self.split_hash, "image_file": self.manifest.get("image_file", "shards"),
                "decode": self.manifest["decode"], "split": self.manifest["split"], "train_images": int(train_images),
                "val_images": int(val_images), **counts,
                "workers": workers.world_size, "worker_data": "own cache shard" if self.sharded else
                "an equal part of every global batch" if workers.on_torch or not workers.distributed else
                "every global batch, split by TensorFlow's strategy"}


def open_training_data(cache_dir: str | Path, workers: distributed.Workers) -> TrainingData:
    """A cache prepared with `--shards N` for N workers gives each worker its shard; otherwise
    every worker opens the whole cache (memory-mapped: each reads only the rows it trains on)."""
    top = read_sharded_manifest(cache_dir) if workers.on_torch else None
    if top is not None and len(top["shards"]) == workers.world_size:
        cache = open_cache(cache_dir, shard=workers.rank)
        return TrainingData(cache, top["split_hash"], top, workers, sharded=True)
    cache = open_cache(cache_dir)
    return TrainingData(cache, cache.split_hash, cache.manifest, workers, sharded=False)


def photos_per_epoch(batches: CacheBatches) -> int:
    """The photos this process trains on in one epoch (the weight of its epoch metrics)."""
    return int(sum(len(batches.batch_rows(index)) for index in range(len(batches))))
