"""The five models of Strika's 2019 tutorial, layer for layer as in the author's Keras code.

Every one takes a 125 x 94 RGB photo of raw 0-255 pixels; convolutions are 3x3 'valid' with
ReLU, pooling is 2x2 max pooling, dense layers use ReLU, and the output is a single sigmoid
unit (P(cat), cat = 1). Their recipes are the tutorial's, flaws included (unscaled pixels,
Adam at lr 1e-6): this is "tutorial mode", not cnnlab's default way to train.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cnnlab.models.registry import ModelSpec, Recipe, classification_head, register
from cnnlab.published import published

if TYPE_CHECKING:
    import keras

# Keras is imported by the builders (when a model is built), never by registering: see registry.


def _chain(name: str, input_shape: Sequence[int], layers: list[keras.layers.Layer]) -> keras.Model:
    """A functional model of layers applied in order (functional, so each layer's shapes are
    known, which forward_flops reads)."""
    from cnnlab.backend import keras

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name=name)


# FusedConv2D and FusedDense are Keras' Conv2D and Dense (same variables, same results) whose
# bias rides inside PyTorch's convolution and matrix product: cnnlab.models.layers.


def _conv(index: int, filters: int) -> list[keras.layers.Layer]:
    from cnnlab.backend import keras
    from cnnlab.models.layers import FusedConv2D

    return [
        FusedConv2D(filters, (3, 3), padding="valid", activation="relu", name=f"conv{index}"),
        keras.layers.MaxPooling2D(pool_size=(2, 2), name=f"pool{index}"),
    ]


def _dense(index: int, units: int) -> keras.layers.Dense:
    from cnnlab.models.layers import FusedDense

    return FusedDense(units, activation="relu", name=f"dense{index}")


def build_convnet(
    name: str, input_shape: Sequence[int], num_classes: int, conv_filters: Sequence[int], dense_units: Sequence[int]
) -> keras.Model:
    """[Conv 3x3 + ReLU, MaxPool 2x2] per conv_filters, Flatten, Dense + ReLU per dense_units, head."""
    from cnnlab.backend import keras

    layers: list[keras.layers.Layer] = []
    for index, filters in enumerate(conv_filters, start=1):
        layers += _conv(index, filters)
    layers.append(keras.layers.Flatten(name="flatten"))
    layers += [_dense(index, units) for index, units in enumerate(dense_units, start=1)]
    layers.append(classification_head(num_classes))
    return _chain(name, input_shape, layers)


def _builder(name: str, conv_filters: tuple[int, ...], dense_units: tuple[int, ...]):
    def build(input_shape: Sequence[int], num_classes: int) -> keras.Model:
        return build_convnet(name, input_shape, num_classes, conv_filters, dense_units)

    build.__name__ = f"build_{name.replace('-', '_')}"
    return build


# The tutorial trains every convolutional model with binary cross-entropy and Adam at lr 1e-6.
def _tutorial_recipe(batch_size: int, epochs: int, loss: str = "bce", learning_rate: float = 1e-6) -> Recipe:
    return Recipe(loss=loss, optimizer="adam", learning_rate=learning_rate, batch_size=batch_size,
                  epochs=epochs, pixel_scale="raw", input_width=94, input_height=125, fit="stretch")


# parameters / forward_flops: the model built at its recipe's size with two classes, so that
# `cnnlab models` builds nothing; tests/test_models.py checks them against the build.
register(ModelSpec(
    name="mlp",
    description="Tutorial MLP: Flatten, Dense 512 ReLU, Dense 1 sigmoid; MSE loss, Adam lr 1e-3.",
    build=_builder("mlp", (), (512,)),
    recipe=_tutorial_recipe(batch_size=32, epochs=10, loss="mse", learning_rate=1e-3),
    tutorial=published("mlp"),
    parameters=18_049_025, forward_flops=36_097_024,
))
register(ModelSpec(
    name="conv1",
    description="Tutorial CNN: Conv 24, MaxPool, Dense 128 x2, sigmoid; BCE, Adam lr 1e-6.",
    build=_builder("conv1", (24,), (128, 128)),
    recipe=_tutorial_recipe(batch_size=32, epochs=5),
    tutorial=published("conv1"),
    parameters=8_637_473, forward_flops=31_938_624,
))
register(ModelSpec(
    name="conv2",
    description="Tutorial CNN: (Conv 48, MaxPool) x2, Dense 256 x2, sigmoid; BCE, Adam lr 1e-6.",
    build=_builder("conv2", (48, 48), (256, 256)),
    recipe=_tutorial_recipe(batch_size=64, epochs=15),
    tutorial=published("conv2"),
    parameters=7_928_177, forward_flops=152_803_456,
))
register(ModelSpec(
    name="conv2-wide",
    description="Tutorial CNN: (Conv 128, MaxPool) x2, Dense 256 x2, sigmoid; BCE, Adam lr 1e-6.",
    build=_builder("conv2-wide", (128, 128), (256, 256)),
    recipe=_tutorial_recipe(batch_size=64, epochs=11),
    tutorial=published("conv2-wide"),
    parameters=21_123_457, forward_flops=885_751_296,
))
register(ModelSpec(
    name="conv2-fc512",
    description="Tutorial's best CNN: Conv 64, MaxPool, Conv 128, MaxPool, Dense 512 x2 (~42M params "
    "in the first dense layer), sigmoid; BCE, Adam lr 1e-6.",
    build=_builder("conv2-fc512", (64, 128), (512, 512)),
    recipe=_tutorial_recipe(batch_size=64, epochs=10),
    tutorial=published("conv2-fc512"),
    parameters=42_151_297, forward_flops=506_053_120,
))
