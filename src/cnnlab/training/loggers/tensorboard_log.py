"""RUN/logs/tensorboard/: TensorBoard event files written with torch's SummaryWriter.

Laid out as Keras' own TensorBoard callback lays out its logs (which needs TensorFlow, so it
is not used): train/ and validation/ hold the per-epoch scalars under the same tags
(epoch_loss, epoch_accuracy, epoch_mse), so TensorBoard draws training and validation in one
chart; train/ also holds epoch_learning_rate and epoch_seconds. The folder itself holds the
hyperparameters (as text, and as an HParams session so that `tensorboard --logdir runs/`
compares runs) and the final evaluation's figures (evaluation/<split>/<metric>).
"""

from __future__ import annotations

import math

from cnnlab.training.loggers import EpochLog, hyperparameters

TRAIN, VALIDATION = "train", "validation"


def scalar_name(key: str) -> tuple[str, str]:
    """(folder, tag) of a metrics.jsonl field: train_loss -> (train, epoch_loss)."""
    if key.startswith("val_"):
        return VALIDATION, "epoch_" + key.removeprefix("val_")
    return TRAIN, "epoch_" + key.removeprefix("train_")


def logged_epochs(folder) -> set[int]:
    """The epochs whose every scalar the event files under `folder` hold (read with TensorBoard's
    own reader, which also drops what an earlier purge discarded)."""
    from tensorboard.backend.event_processing import event_accumulator

    steps = []
    for name in (TRAIN, VALIDATION):
        if (folder / name).is_dir():
            reader = event_accumulator.EventAccumulator(str(folder / name),
                                                        size_guidance={event_accumulator.SCALARS: 0})
            reader.Reload()
            steps += [{event.step for event in reader.Scalars(tag)} for tag in reader.Tags()["scalars"]]
    return set.intersection(*steps) if steps else set()


class TensorBoardLog(EpochLog):
    kind = "tensorboard"

    def __init__(self, run):
        super().__init__(run)
        self.writers = {}
        self.purge_step = None

    def _writer(self, name: str):
        if name not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            folder = self.run.log_path("tensorboard") / name if name else self.run.log_path("tensorboard")
            # Epochs are steps: purge_step makes TensorBoard drop what earlier files hold from
            # this epoch on (a run killed while its event files took an epoch half written).
            self.writers[name] = SummaryWriter(str(folder), purge_step=self.purge_step if name else None)
        return self.writers[name]

    def open(self) -> set[int]:
        folder = self.run.log_path("tensorboard")
        if not folder.exists():
            self.purge_step = None
            self._write_hyperparameters()
            return set()
        logged = logged_epochs(folder)
        self.purge_step = max(logged, default=0) + 1
        return logged

    def _write_hyperparameters(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = hyperparameters(self.run)
        root = self._writer("")
        table = "\n".join(["| hyperparameter | value |", "|---|---|",
                           *(f"| {name} | {value} |" for name, value in values.items())])
        root.add_text("hyperparameters", table, 0)
        # The session alone, no experiment summary: TensorBoard's HParams dashboard then builds
        # the experiment from every run it finds, with their train/ and validation/ scalars.
        _, session_start, _ = hparams(values, {})
        root.file_writer.add_summary(session_start)
        root.flush()

    def write_epochs(self, entries: list[dict]) -> None:
        for entry in entries:
            step = entry["epoch"]
            for key, value in entry.items():
                if key == "epoch":
                    continue
                folder, tag = scalar_name(key)
                # A diverged epoch (null in metrics.jsonl) is drawn as NaN, as TensorBoard shows it.
                self._writer(folder).add_scalar(tag, math.nan if value is None else float(value), step)
        for writer in self.writers.values():
            writer.flush()

    def write_evaluation(self, scalars: dict[str, float], step: int) -> None:
        root = self._writer("")
        for tag, value in scalars.items():
            root.add_scalar(tag, value, step)
        root.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
