"""Batches streamed from the memory-mapped cache, never the whole data set as floats.

Each batch gathers its rows from the uint8 memmap (sorted row numbers read faster), converts
them to float32 in the model's layout (channels_first by default) and scales them as the
recipe says. The order is reshuffled every epoch from a generator seeded with (seed, epoch),
so a resumed run sees exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import numpy as np

from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.recipe.pixels import to_model_input


def encode_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """0/1 column for two classes (one sigmoid unit), one-hot rows for more."""
    if num_classes == 2:
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[labels]


def check_batch_splits(batch_size: int, world_size: int) -> None:
    """A global batch must split into equal parts, one per worker."""
    if batch_size % world_size:
        raise UserError(f"batch size {batch_size} does not split evenly over {world_size} workers; "
                         "choose a --batch-size that is a multiple of the number of workers")


class CacheBatches(keras.utils.PyDataset):
    """A keras PyDataset over some rows of a cache.

    augment: None, or a callable(pixels, generator, *, rows, epoch, seed) -> pixels applied to
    each uint8 (n, height, width, 3) batch before scaling (cnnlab.recipe.augment.Augment).

    Distributed training (cnnlab.training.distributed) reads one of two ways:
    - rank/world_size: `batch_size` is the global batch; every worker shuffles all `rows` the
      same way and takes its equal part of each global batch, so the workers together see
      exactly the batches one process would (less at most world_size - 1 photos per epoch,
      dropped so that the parts stay equal);
    - stream/steps: a worker's own shard of rows, shuffled with its own stream, cut to `steps`
      batches so that every worker takes the same number of steps.
    """

    def __init__(self, images, labels, rows, num_classes: int, batch_size: int, pixel_scale: str,
                 shuffle: bool, seed: int = 0, epoch: int = 0, augment=None, rank: int = 0, world_size: int = 1,
                 stream: int | None = None, steps: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if len(rows) == 0:
            raise UserError("no images in this split; check the cache's split counts (cnnlab prepare)")
        self.images = images
        self.labels = np.asarray(labels)
        self.rows = np.asarray(rows)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.pixel_scale = pixel_scale
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        check_batch_splits(batch_size, world_size)
        self.rank, self.world_size = rank, world_size
        # Extra entropy for the shuffle and augmentation: a worker's rank, so that workers
        # reading their own shards or augmenting their parts do not draw the same numbers.
        self.stream = stream if stream is not None else (rank if world_size > 1 else None)
        self.steps = steps
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Fix the order for `epoch` (0-based); called by the trainer before every epoch."""
        self.epoch = epoch
        if self.shuffle:
            # Workers splitting global batches (world_size > 1) must all shuffle alike; a worker
            # reading its own shard shuffles with its own stream; one process keeps its old seeds.
            seeds = [self.seed, epoch] if self.stream is None or self.world_size > 1 else [self.seed, epoch, self.stream]
            generator = np.random.default_rng(seeds)
            self.order = self.rows[generator.permutation(len(self.rows))]
        else:
            self.order = self.rows
        self.order = self.order[:len(self.order) - len(self.order) % self.world_size]

    def __len__(self) -> int:
        batches = -(-len(self.order) // self.batch_size)
        return batches if self.steps is None else min(batches, self.steps)

    def batch_rows(self, index: int) -> np.ndarray:
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        part = len(rows) // self.world_size
        return rows[self.rank * part:(self.rank + 1) * part]

    def __getitem__(self, index: int):
        rows = self.batch_rows(index)
        ordering = np.argsort(rows, kind="stable")
        pixels = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        pixels[ordering] = self.images[rows[ordering]]  # sequential reads, original batch order
        labels = self.labels[rows]
        if self.augment is not None:
            # The generator makes each batch's augmentation reproducible (and identical after a
            # resume); rows and epoch identify the images for per-image schedules such as
            # cnnlab.recipe.augment's alternating flip.
            seeds = [self.seed, self.epoch, index] + ([] if self.stream is None else [self.stream])
            pixels = self.augment(pixels, np.random.default_rng(seeds),
                                  rows=rows, epoch=self.epoch, seed=self.seed)
        return to_model_input(pixels, self.pixel_scale), encode_labels(labels, self.num_classes)

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)
