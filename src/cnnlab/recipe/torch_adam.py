"""Keras' Adam and AdamW on the PyTorch backend, with an update that makes fewer passes over memory.

Keras' own PyTorch update (keras/src/backend/torch/optimizers/torch_adam.py, Keras 3.15) runs
ten foreach passes over every weight per step and allocates five temporaries the size of the
model (g * g, m * alpha, sqrt(v), sqrt(v) + epsilon, the quotient). For the tutorial's models,
whose dense layers hold 8 to 42 million weights, that is memory traffic, not arithmetic. This
update computes the same formula,

    m <- beta_1 m + (1 - beta_1) g
    v <- beta_2 v + (1 - beta_2) g^2
    w <- w - alpha m / (sqrt(v) + epsilon),   alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t),

in place, with one temporary (the denominator): the same values to float rounding, the same
variables, so checkpoints and resumed runs are unchanged. AMSGrad keeps Keras' own update.

Only the PyTorch backend has this class (Keras picks its backend's optimizer class when one
asks for keras.optimizers.Adam, and a subclass must name the PyTorch one itself); `adam()` and
`adam_w()` return Keras' own optimizers on other backends.
"""

from __future__ import annotations

import functools

from cnnlab.backend import keras


def adam(**arguments):
    """keras.optimizers.Adam(**arguments), with the leaner update on the PyTorch backend."""
    if keras.backend.backend() != "torch":
        return keras.optimizers.Adam(**arguments)
    return _torch_classes()[0](**arguments)


def adam_w(**arguments):
    """keras.optimizers.AdamW(**arguments), with the leaner update on the PyTorch backend."""
    if keras.backend.backend() != "torch":
        return keras.optimizers.AdamW(**arguments)
    return _torch_classes()[1](**arguments)


@functools.cache
def _torch_classes():
    """(LeanAdam, LeanAdamW), defined once on first use: their Keras parents exist only on PyTorch."""
    import torch
    from keras.src.backend.torch.optimizers import torch_adam, torch_adamw  # Keras 3.15 (pinned)

    class LeanUpdate:
        def _parallel_update_step(self, grads, variables, learning_rate):
            if self.amsgrad:
                return super()._parallel_update_step(grads, variables, learning_rate)
            moments = [self._momentums[self._get_variable_index(variable)].value for variable in variables]
            velocities = [self._velocities[self._get_variable_index(variable)].value for variable in variables]
            weights = [variable.value for variable in variables]

            # alpha stays a tensor (the learning rate may be a schedule's): no device sync per step.
            dtype = weights[0].dtype
            step = keras.ops.cast(self.iterations + 1, dtype)
            beta_1_power = keras.ops.power(keras.ops.cast(self.beta_1, dtype), step)
            beta_2_power = keras.ops.power(keras.ops.cast(self.beta_2, dtype), step)
            alpha = keras.ops.cast(learning_rate, dtype) * keras.ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)

            torch._foreach_mul_(moments, self.beta_1)
            torch._foreach_add_(moments, grads, alpha=1 - self.beta_1)
            torch._foreach_mul_(velocities, self.beta_2)
            torch._foreach_addcmul_(velocities, grads, grads, value=1 - self.beta_2)
            denominators = torch._foreach_sqrt(velocities)
            torch._foreach_add_(denominators, self.epsilon)
            torch._foreach_div_(denominators, alpha)  # (sqrt(v) + epsilon) / alpha
            torch._foreach_addcdiv_(weights, moments, denominators, value=-1.0)

    @keras.saving.register_keras_serializable(package="cnnlab")
    class LeanAdam(LeanUpdate, torch_adam.Adam):
        """keras.optimizers.Adam with fewer passes over memory per step (cnnlab.recipe.torch_adam)."""

    @keras.saving.register_keras_serializable(package="cnnlab")
    class LeanAdamW(LeanUpdate, torch_adamw.AdamW):
        """keras.optimizers.AdamW with fewer passes over memory per step (cnnlab.recipe.torch_adam)."""

    return LeanAdam, LeanAdamW
