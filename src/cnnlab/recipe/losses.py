"""Cross-entropy losses that behave the same on every Keras backend.

Keras' sigmoid and softmax activations attach their input logits to the output tensor
(`_keras_logits`). On TensorFlow, the tutorial's engine, the cross-entropy losses find them and
compute the loss from the logits, which is exact and keeps a gradient when the sigmoid
saturates. The PyTorch backend ignores them: it clips the probability to [1e-7, 1 - 1e-7] and
the clip's gradient is zero. The tutorial feeds raw 0-255 pixels, which saturates the sigmoid
of a freshly initialised conv1 or conv2 at once (outputs of exactly 0.0 or 1.0, loss 8.06 =
-ln(1e-7) / 2, and not one weight changed by a training step on PyTorch; tests/test_models.py,
test_conv1_learns_from_raw_pixels_although_its_sigmoid_starts_saturated, checks the cure). These
losses use the logits whenever the backend kept them, as TensorFlow does, so a tutorial model
trains the same way on both backends.
"""

from __future__ import annotations

from cnnlab.backend import keras


class _UsesLogits:
    """Mixin for a Keras cross-entropy: compute it from the activation's logits whenever the
    prediction carries them. The from-logits twin is built once, not at every training step."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        logits = None if self.from_logits else getattr(y_pred, "_keras_logits", None)
        if logits is None:
            return super().__call__(y_true, y_pred, sample_weight)
        twin = self.__dict__.get("_from_logits_twin")
        if twin is None:
            keras_loss = type(self).__mro__[2]  # the Keras class after this mixin
            twin = keras_loss(**{**self.get_config(), "from_logits": True})
            self.__dict__["_from_logits_twin"] = twin
        return twin(y_true, logits, sample_weight)


@keras.saving.register_keras_serializable(package="cnnlab")
class LogitAwareBinaryCrossentropy(_UsesLogits, keras.losses.BinaryCrossentropy):
    """BinaryCrossentropy that uses the sigmoid's logits when the prediction carries them."""


@keras.saving.register_keras_serializable(package="cnnlab")
class LogitAwareCategoricalCrossentropy(_UsesLogits, keras.losses.CategoricalCrossentropy):
    """CategoricalCrossentropy that uses the softmax's logits when the prediction carries them."""
