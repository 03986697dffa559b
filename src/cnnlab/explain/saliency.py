"""Grad-CAM (Selvaraju et al., 2017): which parts of a photo drove a conv model's prediction.

For one photo: run the model once, keeping a spatial layer's output A (channels x h x w, by
default the last convolution's) and the output layer's logits; take the gradient of the
predicted class's score with respect to A; weight each channel of A by the spatial mean of its
gradient; keep the positive part of the weighted sum; scale it to [0, 1] and upsample it to the
photo's size.

The score is a logit, not a probability: the tutorial's models, fed raw 0-255 pixels, saturate
the sigmoid (outputs of exactly 0.0 or 1.0), whose gradient is then zero. With one sigmoid unit
the score is the logit z of class 1 when class 1 is predicted (z >= 0, P >= 0.5), else -z, the
logit of class 0; with a softmax it is the predicted class's logit.

The gradient itself is the only backend-specific code here (`score_gradient`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnlab.backend import keras
from cnnlab.errors import UserError

# Layers whose weights are spatial kernels and whose outputs are feature maps.
CONV_LAYERS = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D,
               keras.layers.Conv2DTranspose)
GRADIENT_BACKENDS = ("torch", "tensorflow")


def conv_layers(model) -> list:
    """The model's 2-D convolution layers, input to output."""
    return [layer for layer in model.layers if isinstance(layer, CONV_LAYERS)]


def spatial_layers(model) -> list:
    """Layers with a (batch, ..., ..., ...) output: the ones Grad-CAM can be computed on."""
    return [layer for layer in model.layers[1:] if len(getattr(layer.output, "shape", ())) == 4]


def find_spatial_layer(model, name: str):
    """The layer called `name`, which must output feature maps; ValueError listing the choices."""
    choices = [layer.name for layer in spatial_layers(model)]
    known = ", ".join(choices) if choices else f"none ({model.name} has no convolutional layers)"
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise UserError(f"--layer {name}: {model.name} has no layer of that name; "
                         f"layers with feature maps: {known}") from None
    if layer.name not in choices:
        raise UserError(f"--layer {name}: its output is not a set of feature maps "
                         f"(shape {tuple(layer.output.shape)}); layers with feature maps: {known}")
    return layer


def channel_axis(layer) -> int:
    """Where the channels are in a layer's 4-D output: the layer's own data format, else Keras'."""
    data_format = getattr(layer, "data_format", None) or keras.config.image_data_format()
    return 1 if data_format == "channels_first" else 3


def output_head(model):
    """The output layer, whose input and weights give the logits."""
    head = model.layers[-1]
    if isinstance(head, keras.layers.Dense) or isinstance(head, keras.layers.Activation):
        return head
    raise UserError(f"{model.name}: the output layer {head.name} ({type(head).__name__}) is not a Dense or "
                     "Activation layer, so its logits cannot be found for Grad-CAM")


def head_logits(head, head_input):
    """The output layer's pre-activation: inputs @ kernel + bias for a Dense head."""
    if isinstance(head, keras.layers.Activation):
        return head_input
    logits = keras.ops.matmul(head_input, head.kernel)
    return logits + head.bias if head.use_bias else logits


def predicted_class_score(logits):
    """The score Grad-CAM explains, per example: see the module docstring."""
    if logits.shape[-1] == 1:
        z = logits[:, 0]
        return keras.ops.where(z >= 0, z, -z)  # the logit of whichever class the sigmoid predicts
    chosen = keras.ops.one_hot(keras.ops.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)
    return keras.ops.sum(logits * chosen, axis=-1)


def check_gradient_backend() -> str:
    """The Keras backend's name, if score_gradient supports it; else a ValueError saying what to do."""
    backend = keras.backend.backend()
    if backend not in GRADIENT_BACKENDS:
        raise UserError(f"Grad-CAM needs gradients, which cnnlab computes on the {' and '.join(GRADIENT_BACKENDS)} "
                         f"backends, not {backend!r}; run with KERAS_BACKEND=torch")
    return backend


def score_gradient(probe, inputs: np.ndarray, score, wrt: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Run `probe` (a model with several outputs) once on `inputs`; return its outputs and the
    gradient of sum(score(outputs)) with respect to outputs[wrt], all as NumPy arrays.

    score: a function of the list of output tensors giving one score per example (keras.ops).
    The input itself is watched too, so a target layer that merely passes its input on (and
    models with frozen weights) still has a gradient. A score that does not depend on the
    target gives zeros.
    """
    backend = check_gradient_backend()
    if backend == "torch":
        import torch

        with torch.enable_grad():
            tensor = keras.ops.convert_to_tensor(inputs).detach().requires_grad_(True)
            outputs = _as_list(probe(tensor, training=False))
            total = keras.ops.sum(score(outputs))
            (gradient,) = torch.autograd.grad(total, outputs[wrt], allow_unused=True)
        outputs = [output.detach() for output in outputs]
    elif backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            outputs = _as_list(probe(tensor, training=False))
            total = tf.reduce_sum(score(outputs))
        gradient = tape.gradient(total, outputs[wrt])
    arrays = [np.asarray(keras.ops.convert_to_numpy(output)) for output in outputs]
    if gradient is None:
        return arrays, np.zeros_like(arrays[wrt])
    return arrays, np.asarray(keras.ops.convert_to_numpy(gradient))


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def grad_cam(features: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """ReLU(sum over channels k of mean(gradients[k]) * features[k]) for one photo's (C, h, w) maps."""
    if features.ndim != 3 or features.shape != gradients.shape:
        raise UserError(f"expected (channels, height, width) features and gradients of one shape, "
                         f"got {features.shape} and {gradients.shape}")
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.tensordot(weights, features, axes=1), 0.0)


def heatmap(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """A Grad-CAM map scaled so its peak is 1 (all zeros when nothing was positive), bilinearly
    upsampled to height x width, in [0, 1]."""
    peak = float(cam.max()) if cam.size else 0.0
    scaled = (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)
    resized = np.asarray(Image.fromarray(scaled).resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(resized, 0.0, 1.0)
