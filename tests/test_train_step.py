"""Micro-batches: a batch run through the model in chunks gives the whole batch's update (less
activation memory), and the automatic choice leaves batch-norm models and small batches alone."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cnnlab import models
from cnnlab.backend import keras
from cnnlab.runs import TrainConfig
from cnnlab.training.train_step import automatic_micro_batch_size
from cnnlab.training.trainer import train
from synthetic import stripes_cache


class Recorder(keras.callbacks.Callback):
    """Records the batch sizes the first layer sees in training and the final weights."""

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []
        self.in_training_step = False

    def on_train_batch_begin(self, batch, logs=None):
        self.in_training_step = True

    def on_train_batch_end(self, batch, logs=None):
        self.in_training_step = False

    def on_train_begin(self, logs=None):
        layer = next(layer for layer in self.model.layers if not isinstance(layer, keras.layers.InputLayer))
        original = layer.call

        def recording(inputs, *arguments, **keywords):
            if self.in_training_step:  # not validation
                self.sizes.append(int(inputs.shape[0]))
            return original(inputs, *arguments, **keywords)

        layer.call = recording

    def on_train_end(self, logs=None):
        self.weights = [keras.ops.convert_to_numpy(variable.value) for variable in self.model.weights]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return stripes_cache(tmp_path_factory.mktemp("micro"), per_class=40, size=32, val=16, test=16)


def _train(cache, out, micro_batch_size):
    recorder = Recorder()
    config = TrainConfig(model="conv2", cache=str(cache), out=str(out), epochs=3, batch_size=16, learning_rate=1e-3, any_input_size=True,
                         pixel_scale="unit", micro_batch_size=micro_batch_size)
    state = train(config, stream=io.StringIO(), show_progress=False, callbacks=[recorder])
    return state, recorder


def test_micro_batches_give_the_whole_batch_update(cache, tmp_path):
    whole, whole_recorder = _train(cache, tmp_path / "whole", 0)
    chunked, chunked_recorder = _train(cache, tmp_path / "chunked", 6)
    # 48 training photos in batches of 16: whole batches of 16, or chunks of 6, 6 and 4.
    assert set(whole_recorder.sizes) == {16}
    assert sorted(set(chunked_recorder.sizes)) == [4, 6]
    for together, in_chunks in zip(whole["history"], chunked["history"]):
        for key in ("train_loss", "train_mse", "train_accuracy", "val_loss"):
            assert in_chunks[key] == pytest.approx(together[key], rel=1e-4, abs=1e-6), key
    assert whole["history"][-1]["train_loss"] < whole["history"][0]["train_loss"]
    for together, in_chunks in zip(whole_recorder.weights, chunked_recorder.weights):
        np.testing.assert_allclose(in_chunks, together, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, batch, expected", [
    ("conv2-wide", 64, 16),  # 9.4 MB of layer outputs per photo: 4 chunks of 16
    ("conv2", 64, 32),
    ("conv2", 16, None),  # the whole batch fits
    ("conv1", 32, None),
    ("resnet9", 512, None),  # batch norm: chunks would change its statistics
])
def test_automatic_micro_batches(name, batch, expected):
    assert automatic_micro_batch_size(models.build_model(name), batch) == expected


def test_a_negative_micro_batch_is_refused(cache, tmp_path):
    with pytest.raises(ValueError, match="--micro-batch-size must be >= 0"):
        train(TrainConfig(model="conv1", cache=str(cache), out=str(tmp_path / "run"), micro_batch_size=-1, any_input_size=True))


def test_training_feeds_channels_first_images_in_channels_last_memory(cache, tmp_path):
    """Same values and shape, NHWC memory: oneDNN's fast convolutions (train_step's docstring)."""
    import torch

    layouts = []

    class LayoutRecorder(Recorder):
        def on_train_begin(self, logs=None):
            layer = next(layer for layer in self.model.layers if not isinstance(layer, keras.layers.InputLayer))
            original = layer.call

            def recording(inputs, *arguments, **keywords):
                if self.in_training_step:
                    layouts.append((tuple(inputs.shape[1:]), inputs.is_contiguous(memory_format=torch.channels_last)))
                return original(inputs, *arguments, **keywords)

            layer.call = recording

    config = TrainConfig(model="conv1", cache=str(cache), out=str(tmp_path / "run"), epochs=1, batch_size=16,
                         any_input_size=True, pixel_scale="unit")
    train(config, stream=io.StringIO(), show_progress=False, callbacks=[LayoutRecorder()])
    if keras.config.image_data_format() != "channels_first":
        pytest.skip("channels_last image format: nothing to re-lay out")
    assert layouts and all(layout == ((3, 32, 32), True) for layout in layouts)
