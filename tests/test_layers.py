"""The speed layers compute what Keras' own layers compute, and precision is settled and stored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.models import build_model
from cnnlab.models.layers import ChannelsLastMemory, FastBatchNormalization
from cnnlab.backend import keras
from cnnlab.backend import resolve_precision
from training_helpers import quiet_train


def numpy(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def pair(momentum: float = 0.9):
    """Keras' BatchNormalization and ours, built alike with identical, non-trivial weights."""
    axis = 1 if keras.config.image_data_format() == "channels_first" else -1
    reference = keras.layers.BatchNormalization(axis=axis, momentum=momentum)
    fast = FastBatchNormalization(axis=axis, momentum=momentum)
    shape = (8, 5, 6, 7) if axis == 1 else (8, 6, 7, 5)
    reference.build(shape)
    fast.build(shape)
    generator = np.random.default_rng(0)
    weights = [generator.normal(1, 0.2, 5), generator.normal(0, 0.2, 5), generator.normal(0, 0.2, 5), generator.uniform(0.5, 2, 5)]
    weights = [w.astype("float32") for w in weights]
    reference.set_weights(weights)
    fast.set_weights(weights)
    return reference, fast, generator.normal(0.3, 1.5, shape).astype("float32")


def test_fast_batch_norm_matches_keras_in_training_and_inference():
    reference, fast, images = pair()
    np.testing.assert_allclose(numpy(fast(images, training=False)), numpy(reference(images, training=False)), atol=1e-5)
    np.testing.assert_allclose(numpy(fast(images, training=True)), numpy(reference(images, training=True)), atol=1e-4)
    # One training call moved the statistics the same way (torch's unbiased variance differs
    # by n / (n - 1) = 336 / 335 in the batch term: within 1e-3 here).
    np.testing.assert_allclose(numpy(fast.moving_mean), numpy(reference.moving_mean), atol=1e-6)
    np.testing.assert_allclose(numpy(fast.moving_variance), numpy(reference.moving_variance), rtol=1e-3)
    assert not np.allclose(numpy(fast.moving_mean), pair()[1].get_weights()[2])  # they did move


def test_frozen_fast_batch_norm_uses_its_moving_statistics():
    reference, fast, images = pair()
    fast.trainable = reference.trainable = False
    before = numpy(fast.moving_mean).copy()
    np.testing.assert_allclose(numpy(fast(images, training=True)), numpy(reference(images, training=True)), atol=1e-5)
    np.testing.assert_array_equal(numpy(fast.moving_mean), before)


def test_fast_batch_norm_saves_like_keras_batch_norm(tmp_path):
    reference, fast, images = pair()
    model = keras.Sequential([keras.Input(images.shape[1:]), fast])
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.layers[0]) is FastBatchNormalization
    np.testing.assert_allclose(numpy(loaded(images, training=False)), numpy(reference(images, training=False)), atol=1e-5)


def test_channels_last_memory_is_the_identity():
    images = np.random.default_rng(1).normal(size=(2, 3, 5, 4)).astype("float32")
    out = ChannelsLastMemory()(images)
    np.testing.assert_array_equal(numpy(out), images)
    if keras.backend.backend() == "torch" and keras.config.image_data_format() == "channels_first":
        import torch

        assert out.is_contiguous(memory_format=torch.channels_last)


def test_precision_is_resolved_and_mixed_models_keep_a_float32_output():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto") in ("float32", "mixed_bfloat16")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("float16")
    model = build_model("resnet9-tiny", None, 2, precision="mixed_bfloat16")
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("stem_conv").variable_dtype == "float32"
    assert model.get_layer("output").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    images = np.random.default_rng(2).uniform(0, 1, (2, *model.input_shape[1:])).astype("float32")
    assert numpy(model(images)).dtype == np.float32


def test_a_run_records_its_precision_and_evaluation_rebuilds_it(cache, tiny_cache, tmp_path):
    from cnnlab.runs import TrainConfig
    from training_helpers import load_trained_model

    config = TrainConfig("resnet9-tiny", str(tiny_cache), str(tmp_path / "run"), epochs=1, batch_size=8, any_input_size=True,
                         precision="mixed_bfloat16")
    quiet_train(config)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "mixed_bfloat16"
    model, _ = load_trained_model(tmp_path / "run")
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
