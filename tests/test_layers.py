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


def fused_pairs():
    """(stock Keras layer, cnnlab's fused twin, input batch) for a convolution and a dense layer."""
    from cnnlab.models.layers import FusedConv2D, FusedDense

    channels_first = keras.config.image_data_format() == "channels_first"
    image_shape = (4, 3, 11, 9) if channels_first else (4, 11, 9, 3)
    generator = np.random.default_rng(3)
    pairs = []
    for stock_class, fused_class, arguments, shape in (
        (keras.layers.Conv2D, FusedConv2D, {"filters": 5, "kernel_size": (3, 3), "strides": (2, 1)}, image_shape),
        (keras.layers.Dense, FusedDense, {"units": 6}, (4, 7)),
    ):
        for activation in ("relu", None):
            stock, fused = stock_class(activation=activation, **arguments), fused_class(activation=activation, **arguments)
            stock.build(shape)
            fused.build(shape)
            weights = [generator.normal(0, 0.5, w.shape).astype("float32") for w in stock.get_weights()]
            stock.set_weights(weights)
            fused.set_weights(weights)
            pairs.append((stock, fused, generator.normal(0, 1, shape).astype("float32")))
    return pairs


@pytest.mark.parametrize("index", range(4))
def test_fused_conv_and_dense_compute_keras_outputs_and_gradients(index):
    stock, fused, inputs = fused_pairs()[index]
    np.testing.assert_allclose(numpy(fused(inputs)), numpy(stock(inputs)), atol=1e-5)
    if keras.backend.backend() != "torch":
        return  # elsewhere the fused layers are their parents: the outputs above are the check
    import torch

    gradients = []
    for layer in (stock, fused):
        batch = torch.tensor(inputs, requires_grad=True)
        (layer(batch) ** 2).sum().backward()
        gradients.append([batch.grad.numpy()] + [w.value.grad.numpy().copy() for w in layer.trainable_weights])
        for w in layer.trainable_weights:
            w.value.grad = None
    for want, got in zip(*gradients):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if stock.get_config()["activation"] == "linear":
        # Without an activation the last operation tells which path ran: Keras' separate bias
        # add, or torch's one convolution / matrix product that applies the bias itself.
        assert stock(torch.tensor(inputs, requires_grad=True)).grad_fn.name() == "AddBackward0"
        assert fused(torch.tensor(inputs, requires_grad=True)).grad_fn.name() in ("ConvolutionBackward0", "AddmmBackward0")


def test_fused_layers_save_and_export_as_keras_layers(tmp_path):
    from cnnlab.models.layers import OURS, FusedConv2D, FusedDense, stock_keras_model

    model = build_model("conv1")
    assert {type(layer) for layer in model.layers} >= {FusedConv2D, FusedDense}
    images = np.random.default_rng(4).uniform(0, 255, (2, *model.input_shape[1:])).astype("float32")
    expected = numpy(model(images))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert type(loaded.get_layer("conv1")) is FusedConv2D
    np.testing.assert_allclose(numpy(loaded(images)), expected, rtol=1e-5)
    stock = stock_keras_model(model)
    assert not any(isinstance(layer, OURS) for layer in stock.layers)
    assert type(stock.get_layer("conv1")) is keras.layers.Conv2D and type(stock.get_layer("dense1")) is keras.layers.Dense
    np.testing.assert_allclose(numpy(stock(images)), expected, rtol=1e-5)
