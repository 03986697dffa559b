"""CacheBatches: seeded per-epoch permutations, labels kept with their images, float32
channels_first batches scaled as the recipe says, and training that reads a batch at a time."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.training.batches import CacheBatches, encode_labels
from cnnlab.data.reader import open_cache
from cnnlab.training import training_data
from training_helpers import HEIGHT, WIDTH, make_config, quiet_train


def test_cache_batches_each_epoch_is_a_seeded_permutation(cache):
    rows = np.flatnonzero(cache.splits != "test")  # 16 rows, not contiguous
    def make(seed, epoch):
        return CacheBatches(cache.images, cache.labels, rows, 2, 5, "raw", shuffle=True, seed=seed, epoch=epoch)

    batches = make(seed=7, epoch=0)
    orders = []
    for epoch in range(4):
        assert batches.epoch == epoch
        assert len(batches) == 4  # 16 rows in batches of 5: 5, 5, 5, 1
        order = np.concatenate([batches.batch_rows(index) for index in range(len(batches))])
        assert sorted(order.tolist()) == rows.tolist()  # a permutation: every row once
        assert order.tolist() == make(seed=7, epoch=epoch).order.tolist()  # same (seed, epoch), same order
        orders.append(order.tolist())
        batches.on_epoch_end()  # what Keras calls between epochs
    assert len({tuple(order) for order in orders}) == 4  # differs across epochs
    assert make(seed=8, epoch=0).order.tolist() != orders[0]  # and across seeds
    unshuffled = CacheBatches(cache.images, cache.labels, rows, 2, 5, "raw", shuffle=False)
    unshuffled.on_epoch_end()
    assert unshuffled.order.tolist() == rows.tolist()


def test_cache_batches_keep_labels_with_their_images(cache):
    rows = np.arange(len(cache.images))  # all 24 photos, 12 per class
    batches = CacheBatches(cache.images, cache.labels, rows, 2, 5, "raw", shuffle=True, seed=3)
    # Every photo is distinct: find each batch image's cache row by its pixels.
    by_pixels = {cache.images[row].tobytes(): row for row in rows}
    assert len(by_pixels) == len(rows)
    for epoch in range(4):
        batches.set_epoch(epoch)
        seen = []
        for index in range(len(batches)):
            inputs, targets = batches[index]
            assert targets.shape == (len(inputs), 1) and targets.dtype == np.float32
            for image, target in zip(inputs, targets):
                row = by_pixels[image.transpose(1, 2, 0).astype(np.uint8).tobytes()]
                assert target[0] == cache.labels[row]
                seen.append(row)
            assert seen[-len(inputs):] == batches.batch_rows(index).tolist()  # in shuffled order
        assert sorted(seen) == rows.tolist()


def test_labels_are_one_hot_for_more_than_two_classes():
    labels = np.array([2, 0, 1])
    np.testing.assert_array_equal(encode_labels(labels, 3), np.eye(3, dtype=np.float32)[[2, 0, 1]])
    assert encode_labels(np.array([1, 0, 1]), 2).tolist() == [[1.0], [0.0], [1.0]]


# ---- 5. streaming ------------------------------------------------------------------------------

@pytest.mark.parametrize("pixel_scale, divisor", [("raw", 1.0), ("unit", 255.0)])
def test_batches_are_float32_channels_first_and_scaled(cache, pixel_scale, divisor):
    rows = cache.indices("val")
    batches = CacheBatches(cache.images, cache.labels, rows, 2, 5, pixel_scale, shuffle=True, seed=0)
    inputs, targets = batches[0]
    assert inputs.dtype == np.float32 and inputs.flags.c_contiguous
    assert inputs.shape == (5, 3, HEIGHT, WIDTH)
    expected = cache.images[batches.batch_rows(0)].astype(np.float32).transpose(0, 3, 1, 2) / divisor
    np.testing.assert_allclose(inputs, expected, rtol=1e-6)
    assert inputs.max() > (100 if pixel_scale == "raw" else 0.3) and inputs.max() <= 255.0 / divisor
    assert batches[1][0].shape == (3, 3, HEIGHT, WIDTH)  # the short last batch
    assert isinstance(cache.images, np.memmap) and cache.images.dtype == np.uint8
    assert isinstance(batches.images, np.memmap)


class ReadRecorder:
    """Stands in for the cache's memmap and records how many rows each read touches."""

    def __init__(self, images):
        self.images = images
        self.shape = images.shape
        self.dtype = images.dtype
        self.reads: list[int] = []

    def __getitem__(self, index):
        block = self.images[index]
        self.reads.append(1 if block.ndim == 3 else len(block))
        return block

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole cache was converted to an array")

    def __len__(self):
        return len(self.images)


def test_training_reads_the_cache_a_batch_at_a_time(tiny_cache, tmp_path, monkeypatch):
    recorders = []

    def recording_open_cache(path):
        opened = open_cache(path)
        assert isinstance(opened.images, np.memmap)
        opened.images = ReadRecorder(opened.images)
        recorders.append(opened.images)
        return opened

    monkeypatch.setattr(training_data, "open_cache", recording_open_cache)
    state, _ = quiet_train(make_config(tiny_cache, tmp_path / "run", epochs=2))
    assert state["epochs_done"] == 2
    reads = recorders[0].reads
    # Batches of 4 training rows (2 per epoch, plus the one Keras peeks at before training)
    # and one batch of the 8 validation rows per epoch; never the whole cache (24 rows).
    assert set(reads) == {4, 8} and reads.count(4) >= 4 and reads.count(8) == 2
