"""Cross-entropy losses that behave the same on every Keras backend.

Keras' sigmoid and softmax activations attach their input logits to the output tensor
(`_keras_logits`). On TensorFlow, the tutorial's engine, the cross-entropy losses find them and
compute the loss from the logits, which is exact and keeps a gradient when the sigmoid
saturates. The PyTorch backend ignores them: it clips the probability to [1e-7, 1 - 1e-7] and
the clip's gradient is zero. The tutorial feeds raw 0-255 pixels, which saturates the sigmoid
of a freshly initialised conv1 or conv2 at once (measured here: outputs of exactly 0.0 or 1.0,
loss 8.06 = -ln(1e-7) / 2, and not one weight changed by a training step on PyTorch). These
losses use the logits whenever the backend kept them, as TensorFlow does, so a tutorial model
trains the same way on both backends.
"""

from __future__ import annotations

import keras


def _logits(y_pred):
    return getattr(y_pred, "_keras_logits", None)


@keras.saving.register_keras_serializable(package="cnnlab")
class LogitAwareBinaryCrossentropy(keras.losses.BinaryCrossentropy):
    """BinaryCrossentropy that uses the sigmoid's logits when the prediction carries them."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        logits = _logits(y_pred) if not self.from_logits else None
        if logits is None:
            return super().__call__(y_true, y_pred, sample_weight)
        from_logits = keras.losses.BinaryCrossentropy(
            from_logits=True, label_smoothing=self.label_smoothing, axis=self.axis,
            reduction=self.reduction, name=self.name, dtype=self.dtype,
        )
        return from_logits(y_true, logits, sample_weight)


@keras.saving.register_keras_serializable(package="cnnlab")
class LogitAwareCategoricalCrossentropy(keras.losses.CategoricalCrossentropy):
    """CategoricalCrossentropy that uses the softmax's logits when the prediction carries them."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        logits = _logits(y_pred) if not self.from_logits else None
        if logits is None:
            return super().__call__(y_true, y_pred, sample_weight)
        from_logits = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=self.label_smoothing, axis=self.axis,
            reduction=self.reduction, name=self.name, dtype=self.dtype,
        )
        return from_logits(y_true, logits, sample_weight)
