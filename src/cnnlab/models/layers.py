"""Layers that make cnnlab's models train faster on a CPU with the PyTorch backend.

Two make the modern models train ~2.5x faster:

Measured here on resnet9 (64x64, batch 64, 2 cores; /tmp profiles in the issue 4 note):
Keras' own BatchNormalization computes its moments with a dozen generic tensor operations per
call (mean, square, subtract, divide, cast...), which took three quarters of a training step;
PyTorch's fused `batch_norm` does the same work in one pass. And oneDNN's convolutions run
about twice as fast on NHWC ("channels_last") memory than on NCHW, while Keras on PyTorch
keeps its tensors NCHW. Neither layer changes what the model computes (and `stock_keras_model` swaps both for stock Keras
layers in exported files, which must load without cnnlab):
- `FastBatchNormalization` is Keras' BatchNormalization (same variables, same saved weights,
  same momentum and epsilon) whose forward pass calls torch's fused kernel when it can: PyTorch
  backend, channels-first 4-D input, outside Keras' stateless scopes. Elsewhere (TensorFlow,
  JAX, other ranks) it is exactly the parent layer. One difference: torch updates the moving
  variance with the unbiased batch variance (n / (n - 1) times Keras' biased one), where n is
  batch x height x width, at least 64 x 8 x 8 = 4,096 here: a 0.02% difference.
- `ChannelsLastMemory` is the identity on values. On PyTorch it re-lays a channels-first image
  batch out in NHWC memory order; every convolution, batch norm and pooling after it keeps that
  order, so the whole network runs on oneDNN's fast path. Elsewhere it returns its input.

Two more serve the tutorial's models, whose convolutions and dense layers all carry a bias.
Keras' Conv2D and Dense add their bias in an operation of its own, after the convolution or
the matrix product, and its gradient is one more sum over the batch; in a torch profile of
conv2 these took 2.7 s of a 15.8 s epoch, where PyTorch hands the bias to oneDNN's convolution
and to `addmm`, which apply it in the same pass:
- `FusedConv2D` is Keras' Conv2D (same variables, configuration and saved weights) whose forward
  pass is one `torch.nn.functional.conv2d` call with the bias, on the PyTorch backend.
- `FusedDense` is Keras' Dense whose forward pass is one `torch.nn.functional.linear` call.
Elsewhere (TensorFlow, symbolic calls, LoRA or quantized layers) both are their parent layer.
"""

from __future__ import annotations

from cnnlab.backend import keras


def _eager_torch() -> bool:
    """The PyTorch backend, outside Keras' stateless (symbolic) scopes: where torch calls may
    stand in for Keras operations."""
    if keras.backend.backend() != "torch":
        return False
    from keras.src.backend.common.stateless_scope import in_stateless_scope  # Keras 3.15 (pinned)

    return not in_stateless_scope()


def _torch_fast_path(inputs, axis) -> bool:
    return len(inputs.shape) == 4 and axis in (1, -3) and _eager_torch()


@keras.saving.register_keras_serializable(package="cnnlab")
class FastBatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization, with PyTorch's fused kernel on the PyTorch backend."""

    def call(self, inputs, training=None, mask=None):
        if mask is not None or not _torch_fast_path(inputs, self.axis):
            return super().call(inputs, training=training, mask=mask)
        import torch.nn.functional

        # Keras' rule: a frozen batch norm (trainable = False, e.g. a fine-tuned backbone)
        # runs in inference mode even while the rest of the model trains.
        training = bool(training) and self.trainable
        return torch.nn.functional.batch_norm(
            inputs, self.moving_mean.value, self.moving_variance.value,
            weight=self.gamma.value if self.scale else None, bias=self.beta.value if self.center else None,
            # Keras' momentum weighs the old statistic, torch's the new batch's.
            training=training, momentum=1.0 - self.momentum, eps=self.epsilon,
        )


def _fusable(layer) -> bool:
    """True where a fused forward pass applies: eager PyTorch, and a layer whose kernel is its
    plain variable (not LoRA's sum, not quantized)."""
    return not getattr(layer, "lora_enabled", False) and not layer.quantization_mode and _eager_torch()


@keras.saving.register_keras_serializable(package="cnnlab")
class FusedConv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D, with the bias applied inside torch's convolution on PyTorch."""

    def call(self, inputs):
        if (not _fusable(self) or self.data_format != "channels_first" or self.padding != "valid"
                or len(inputs.shape) != 4):
            return super().call(inputs)
        import torch.nn.functional

        # Keras stores the kernel as (height, width, in, out); torch wants (out, in, height, width).
        kernel = self.kernel.value.permute(3, 2, 0, 1)
        outputs = torch.nn.functional.conv2d(
            inputs, kernel, self.bias.value if self.use_bias else None,
            stride=self.strides, dilation=self.dilation_rate, groups=self.groups,
        )
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="cnnlab")
class FusedDense(keras.layers.Dense):
    """keras.layers.Dense, with the bias applied inside torch's matrix product on PyTorch."""

    def call(self, inputs, training=None):
        if not _fusable(self):
            return super().call(inputs, training=training)
        import torch.nn.functional

        # Keras' kernel is (in, out); linear takes (out, in) and, for 2-D inputs, runs
        # addmm(bias, inputs, kernel) on the transposed view without a copy.
        outputs = torch.nn.functional.linear(inputs, self.kernel.value.T, self.bias.value if self.use_bias else None)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="cnnlab")
class ChannelsLastMemory(keras.layers.Layer):
    """Identity on values; on PyTorch, NHWC memory order for a channels-first 4-D batch."""

    def call(self, inputs):
        if keras.backend.backend() != "torch" or len(inputs.shape) != 4 or keras.config.image_data_format() != "channels_first":
            return inputs
        import torch

        return inputs.contiguous(memory_format=torch.channels_last)

    def compute_output_shape(self, input_shape):
        return input_shape


def stock_keras_model(model):
    """A copy of `model` made of stock Keras layers only, with the same weights, for export.

    A .keras file names each layer's class; ours ("cnnlab>ChannelsLastMemory") load only where
    cnnlab is imported, while an exported file must load in plain Keras. None of our layers
    changes what the model computes at inference: ChannelsLastMemory becomes keras.layers.Identity
    (the memory order is a speed hint), and FastBatchNormalization, FusedConv2D and FusedDense
    their parent Keras layer with the same configuration and variables. The copy is not
    compiled, so no cnnlab loss or schedule is named in it either. Returns `model` itself when
    nothing is ours.
    """
    if not any(isinstance(layer, OURS) for layer in _all_layers(model)):
        return model

    def stock_layer(layer):
        if isinstance(layer, ChannelsLastMemory):
            return keras.layers.Identity(name=layer.name)
        for ours, stock in _STOCK_PARENTS.items():
            if isinstance(layer, ours):
                return stock.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    # recursive: the layers of nested models (a transfer backbone) go through stock_layer too.
    copy = keras.models.clone_model(model, clone_function=stock_layer, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


_STOCK_PARENTS = {
    FastBatchNormalization: keras.layers.BatchNormalization,
    FusedConv2D: keras.layers.Conv2D,
    FusedDense: keras.layers.Dense,
}
OURS = (ChannelsLastMemory, *_STOCK_PARENTS)  # every layer class of cnnlab's, for export checks


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
