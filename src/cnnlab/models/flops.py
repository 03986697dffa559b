"""Analytic forward-pass FLOPs of a built Keras model, layer by layer.

forward_flops counts 2 FLOPs per multiply-add in the layers that do matrix products (Conv*,
Dense, depthwise/separable/transposed convolutions): the convention of timm, fvcore and the
papers (FLOPs = 2 x MACs). Bias adds, activations, pooling comparisons and normalisation are
element-wise, together < 1% for these models, and are not counted. A layer with a kernel
that no counter knows raises rather than being silently counted as free; add a counter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from cnnlab.backend import keras


def _elements(shape: Sequence[int | None]) -> int:
    return math.prod(int(size) for size in shape[1:])  # drop the batch axis


def _dense_macs(layer: keras.layers.Layer) -> int:
    return _elements(layer.output.shape) * int(layer.kernel.shape[0])


def _conv_macs(layer: keras.layers.Layer) -> int:
    # kernel is (*spatial, in_channels / groups, filters) in every data format.
    return _elements(layer.output.shape) * math.prod(layer.kernel.shape[:-1])


def _conv_transpose_macs(layer: keras.layers.Layer) -> int:
    # kernel is (*spatial, filters, in_channels): every input element meets every kernel tap.
    return _elements(layer.input.shape) * math.prod(layer.kernel.shape[:-1])


def _depthwise_macs(layer: keras.layers.Layer) -> int:
    # kernel is (*spatial, in_channels, multiplier); each output element uses one spatial window.
    return _elements(layer.output.shape) * math.prod(layer.kernel.shape[:-2])


def _separable_macs(layer: keras.layers.Layer) -> int:
    depthwise = layer.depthwise_kernel.shape
    intermediate_channels = depthwise[-2] * depthwise[-1]
    positions = _elements(layer.output.shape) // layer.filters
    return positions * intermediate_channels * (math.prod(depthwise[:-2]) + layer.filters)


FLOP_COUNTERS: dict[type, Callable[[keras.layers.Layer], int]] = {
    keras.layers.Dense: _dense_macs,
    keras.layers.Conv1D: _conv_macs,
    keras.layers.Conv2D: _conv_macs,
    keras.layers.Conv3D: _conv_macs,
    keras.layers.Conv2DTranspose: _conv_transpose_macs,
    keras.layers.DepthwiseConv2D: _depthwise_macs,
    keras.layers.SeparableConv2D: _separable_macs,
}


def layer_flops(model: keras.Model) -> list[tuple[str, int]]:
    """(layer name, forward FLOPs per image) for every counted layer, nested models included."""
    counted: list[tuple[str, int]] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            counted.extend((f"{layer.name}/{name}", flops) for name, flops in layer_flops(layer))
            continue
        counter = next((count for kind, count in FLOP_COUNTERS.items() if isinstance(layer, kind)), None)
        if counter is not None:
            counted.append((layer.name, 2 * counter(layer)))
        elif getattr(layer, "kernel", None) is not None:
            raise ValueError(
                f"forward_flops cannot count layer {layer.name!r} ({type(layer).__name__}); "
                "add a counter for it to cnnlab.models.flops.FLOP_COUNTERS"
            )
    return counted


def forward_flops(model: keras.Model) -> int:
    """Analytic forward-pass FLOPs for one image: 2 x multiply-adds of Conv and Dense layers."""
    return sum(flops for _, flops in layer_flops(model))
