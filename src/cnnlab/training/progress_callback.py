"""Training progress: a live bar with the loss and the epoch's ETA on a terminal or in a notebook
(cnnlab.progress), replaced at each epoch's end by one line; only those lines otherwise."""

from __future__ import annotations

import sys
import time

from cnnlab.backend import keras
from cnnlab.progress import Progress, format_duration, is_live


class ProgressCallback(keras.callbacks.Callback):
    def __init__(self, name: str, epochs: int, steps: int, live: bool | None = None, stream=None):
        super().__init__()
        self.name = name
        self.epochs = epochs
        self.steps = steps
        self.stream = stream or sys.stderr
        self.live = is_live(self.stream) if live is None else live
        self.epoch_seconds: list[float] = []
        self.bar: Progress | None = None
        self.started = 0.0
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.started = time.perf_counter()
        if self.live:
            # leave=False: the epoch's line takes the bar's place, so a finished run reads as
            # one line per epoch on a terminal too.
            self.bar = Progress(self.steps, f"{self.name} epoch {epoch + 1}/{self.epochs}", unit="step",
                                stream=self.stream, live=True, leave=False)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar and logs and "loss" in logs:
            self.bar.update(1, postfix=f"loss {float(logs['loss']):.4f}")

    def run_eta(self, epoch: int) -> float:
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        return mean * (self.epochs - epoch - 1)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.epoch_seconds.append(time.perf_counter() - self.started)
        shown = " ".join(
            f"{key.replace('binary_accuracy', 'acc').replace('categorical_accuracy', 'acc')} {float(value):.4f}"
            for key, value in logs.items() if key != "learning_rate"
        )
        line = (f"{self.name} epoch {epoch + 1}/{self.epochs}: {shown} "
                f"({self.epoch_seconds[-1]:.1f} s, ETA {format_duration(self.run_eta(epoch))})")
        if self.bar:
            self.bar.close()
            self.bar = None
        self.stream.write(line + "\n")
        self.stream.flush()

    def on_train_end(self, logs=None):
        if self.bar:  # training stopped inside an epoch
            self.bar.close()
            self.bar = None
        if self.model.stop_training and self.epoch + 1 < self.epochs:
            self.stream.write(f"{self.name}: stopped early after epoch {self.epoch + 1} (no validation improvement)\n")
