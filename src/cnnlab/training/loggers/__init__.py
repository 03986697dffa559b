"""Experiment logs for the tools people use: TensorBoard, CSV and MLflow, inside the run folder.

Each log is a Keras callback that mirrors the run's committed epochs (metrics.jsonl, read
through cnnlab.runs.Run) into its own format, exactly once per epoch: at the start of training
and after every epoch it writes whatever committed epoch the log does not hold yet. It runs
after the trainer's commit, so a log never holds an epoch the run does not; a resumed run (or
one killed between its commit and its log) fills in what is missing, and never repeats an epoch.

    trainer: TrainConfig(log=("tensorboard", "csv", "mlflow")) or `cnnlab train --log ...`
    anyone:  train(config, callbacks=[TensorBoardLog(run_folder)]) or model.fit(...) beside it

The heavy libraries (torch's SummaryWriter with tensorboard, mlflow) are imported only when a
log is opened; `check_available` names the extra to install before any training starts.
"""

from __future__ import annotations

import importlib.util
import math
import os

from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.runs import Run

# The modules each log needs; the extra of the same name installs them.
REQUIREMENTS = {"csv": (), "tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}


def check_available(kinds) -> None:
    """A one-line UserError naming the extra to install when a log's library is missing."""
    for kind in kinds:
        missing = [module for module in REQUIREMENTS.get(kind, ()) if importlib.util.find_spec(module) is None]
        if missing:
            raise UserError(f"--log {kind} needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}: "
                            f"pip install 'cnnlab[{kind}]'")


class EpochLog(keras.callbacks.Callback):
    """One experiment log of a run folder. Subclasses open the log (returning the epochs it
    already holds), write entries (metrics.jsonl's dicts) and evaluations, and close it."""

    kind = ""

    def __init__(self, run):
        super().__init__()
        self.run = run if isinstance(run, Run) else Run(run)
        self.logged: set[int] | None = None

    # ---- what a log implements ----------------------------------------------------------

    def open(self) -> set[int]:
        raise NotImplementedError

    def write_epochs(self, entries: list[dict]) -> None:
        raise NotImplementedError

    def write_evaluation(self, scalars: dict[str, float], step: int) -> None:
        """The final evaluation's figures ('evaluation/<split>/<metric>'), at the last epoch's step."""

    def close(self) -> None:
        pass

    # ---- the Keras callback --------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.sync()

    def on_epoch_end(self, epoch, logs=None):
        self.sync()

    def on_train_end(self, logs=None):
        self.finish_training()

    def sync(self) -> None:
        """Write every committed epoch the log does not hold yet."""
        if self.logged is None:
            self.logged = set(self.open())
        missing = [entry for entry in self.run.history if entry.get("epoch") not in self.logged]
        if missing:
            self.write_epochs(missing)
            self.logged.update(entry["epoch"] for entry in missing)

    def finish(self) -> None:
        """Write what is missing and close the log (it opens again when used again)."""
        self.sync()
        self.close()
        self.logged = None

    def finish_training(self) -> None:
        """Training ended (all epochs, or stopped early)."""
        self.finish()


def make_logs(run, kinds) -> list[EpochLog]:
    """The callbacks that write these kinds of log into the run folder."""
    check_available(kinds)
    logs = []
    for kind in kinds:
        if kind == "csv":
            from cnnlab.training.loggers.csv_log import CsvLog as log_class
        elif kind == "tensorboard":
            from cnnlab.training.loggers.tensorboard_log import TensorBoardLog as log_class
        elif kind == "mlflow":
            from cnnlab.training.loggers.mlflow_log import MlflowLog as log_class
        else:
            raise UserError(f"--log {kind!r} is not a log cnnlab writes; choose from csv, tensorboard, mlflow")
        logs.append(log_class(run))
    return logs


def log_evaluation(run, evaluation: dict) -> None:
    """Add an evaluation (evaluate_run's result) to the run's TensorBoard and MLflow logs."""
    run = run if isinstance(run, Run) else Run(run)
    kinds = [kind for kind in run.log_kinds if kind != "csv"]  # the CSV log holds epochs only
    if not kinds:
        return
    scalars = evaluation_scalars(evaluation)
    step = int(evaluation.get("epochs_done") or 0)
    for log in make_logs(run, kinds):
        log.open()
        try:
            log.write_evaluation(scalars, step)
        finally:
            log.close()


def evaluation_scalars(evaluation: dict) -> dict[str, float]:
    """The numbers of each split's report, named 'evaluation/<split>/<metric>'."""
    scalars = {}
    for split, report in (evaluation.get("splits") or {}).items():
        for name, value in report.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                scalars[f"evaluation/{split}/{name}"] = float(value)
    threshold = evaluation.get("validation_threshold")
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        scalars["evaluation/validation_threshold"] = float(threshold)
    return scalars


def hyperparameters(run: Run) -> dict[str, str | int | float | bool]:
    """What the run was trained with: the model, its recipe with the user's overrides, the
    training options and the resolved precision, flattened to 'name' or 'group.name'."""
    config = run.config
    train = config["train"]
    values = {"model": train["model"], **_flatten(config["recipe"])}
    for name in ("seed", "patience", "train_limit", "val_limit", "init_weights", "micro_batch_size"):
        values[name] = train.get(name)
    for name in ("precision", "parameters", "workers", "backend"):
        if name in config:
            values[name] = config[name]
    return {name: value if isinstance(value, (str, int, float, bool)) else str(value) for name, value in values.items()}


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for name, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def run_name(run: Run) -> str:
    return os.path.basename(os.path.abspath(run.path))
