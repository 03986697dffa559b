"""Learning-rate schedules: linear warm-up, then cosine or linear decay to a floor.

The shape every fast small-CNN recipe uses (Goyal et al. 2017 for the warm-up; Loshchilov &
Hutter 2017 for the cosine): a short ramp lets batch statistics and Adam's moment estimates
settle before full-size steps, and the decay anneals the weights at the end of a short budget.
Written with keras.ops only, so it runs on every Keras backend, and serialisable (get_config)
so an optimizer that holds it can be saved and rebuilt.
"""

from __future__ import annotations

import math

from cnnlab.backend import keras
from cnnlab.errors import UserError

DECAYS = ("cosine", "linear", "constant")


@keras.saving.register_keras_serializable(package="cnnlab")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) for the optimizer's update number `step` (0 for the first update).

    Warm-up, steps 0 .. warmup_steps - 1: peak x (step + 1) / (warmup_steps + 1), a straight
    line from about 0 that reaches the peak at step warmup_steps; the first update is never
    wasted at lr 0. Then, from step warmup_steps to total_steps, 'cosine' follows half a cosine
    from peak to floor, 'linear' a straight line, 'constant' stays at the peak. From
    total_steps on: the floor (the peak for 'constant').
    """

    def __init__(self, peak_learning_rate: float, warmup_steps: int, total_steps: int,
                 decay: str = "cosine", floor: float = 0.0, name: str = "warmup_decay"):
        super().__init__()
        if decay not in DECAYS:
            raise UserError(f"unknown decay {decay!r}; choose one of {', '.join(DECAYS)}")
        if not peak_learning_rate > 0:
            raise UserError(f"peak_learning_rate must be positive, got {peak_learning_rate}")
        if not 0 <= floor <= peak_learning_rate:
            raise UserError(f"floor must be in [0, peak_learning_rate], got {floor}")
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise UserError(f"warmup_steps must be a whole number >= 0, got {warmup_steps}")
        if int(total_steps) != total_steps or total_steps < 1:
            raise UserError(f"total_steps must be a whole number >= 1, got {total_steps}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = decay
        self.floor = float(floor)
        self.name = name

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        peak, floor = self.peak_learning_rate, self.floor
        warmup = float(self.warmup_steps)
        warming = peak * (step + 1.0) / (warmup + 1.0)
        # Fraction of the decay phase done, 0 at the end of warm-up, 1 at total_steps and after.
        # max(.., 1) keeps a schedule whose warm-up fills every step free of a division by zero.
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        done = ops.clip((step - warmup) / decay_steps, 0.0, 1.0)
        if self.decay == "cosine":
            decayed = floor + (peak - floor) * 0.5 * (1.0 + ops.cos(math.pi * done))
        elif self.decay == "linear":
            decayed = peak - (peak - floor) * done
        else:
            decayed = peak + 0.0 * done
        return ops.where(step < warmup, warming, decayed)

    def get_config(self) -> dict:
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay, "floor": self.floor, "name": self.name}
