"""The run folder's file names and the atomic writes behind them (cnnlab.runs.Run is the API).

    config.json        the resolved training configuration (model, recipe, data, seed)
    classes.json       class names in label order
    data.json          cache path, split-manifest hash, split counts, how photos were decoded
    versions.json      library versions
    state.json         the commit point: epochs finished, best epoch, history, checkpoint names
    metrics.jsonl      one line per finished epoch (rewritten from state.json, never appended)
    best.weights.h5    weights of the epoch with the lowest validation loss
    last.weights.h5    weights after the last finished epoch
    checkpoint/        versioned weights and optimizer state that state.json points to
    evaluation.json    `cnnlab evaluate`'s metrics per split and the validation threshold
    predictions-<split>.npz   the probabilities behind evaluation.json (a cache for pictures)
    logs/              experiment logs for other tools, when asked for (--log): tensorboard/
                       (event files), metrics.csv, mlflow.db (an MLflow SQLite store) and
                       mlflow-run.json (the MLflow run a resumed run continues)
    best.onnx          the best weights as ONNX, made by the first `cnnlab predict` (parity-checked)
    best.onnx.json     what best.onnx was made from (the best weights' size and mtime) and its metadata

Every file is replaced atomically, and state.json is written after the files it names, so a
process killed at any instant (even `kill -9`) leaves a folder that resumes from the last
finished epoch: no epoch is repeated or lost in metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from cnnlab.data.cache_io import replace_atomically
from cnnlab.errors import UserError

# The one place these names are spelled (tests/test_architecture.py checks that no other
# module of cnnlab does).
CONFIG = "config.json"
CLASSES = "classes.json"
DATA = "data.json"
VERSIONS = "versions.json"
STATE = "state.json"
METRICS = "metrics.jsonl"
EVALUATION = "evaluation.json"
CHECKPOINTS = "checkpoint"
BEST, LAST = "best", "last"
LOGS = "logs"
TENSORBOARD_LOG = "tensorboard"
CSV_LOG = "metrics.csv"
MLFLOW_DATABASE = "mlflow.db"
MLFLOW_ARTIFACTS = "mlflow-artifacts"
MLFLOW_RUN = "mlflow-run.json"
# Where each kind of log lives inside LOGS (cnnlab.runs.config.LOG_KINDS).
LOG_PATHS = {"tensorboard": TENSORBOARD_LOG, "csv": CSV_LOG, "mlflow": MLFLOW_DATABASE}
WEIGHTS_SUFFIX = ".weights.h5"
# The best weights as ONNX, for prediction without Keras, and the record of what it was made from.
ONNX_EXPORT = "best.onnx"
ONNX_RECORD = "best.onnx.json"


def weights_name(which: str) -> str:
    """best.weights.h5 or last.weights.h5."""
    if which not in (BEST, LAST):
        raise UserError(f"weights must be {BEST!r} or {LAST!r}, got {which!r}")
    return f"{which}{WEIGHTS_SUFFIX}"


def predictions_name(split: str) -> str:
    return f"predictions-{split}.npz"


def checkpoint_names(epoch: int) -> tuple[str, str]:
    """(weights, optimizer) of a finished epoch, relative to the run folder, as state.json names them."""
    number = f"{epoch:04d}"
    return f"{CHECKPOINTS}/epoch-{number}{WEIGHTS_SUFFIX}", f"{CHECKPOINTS}/optimizer-{number}.npz"


def write_json(path: Path, value) -> None:
    replace_atomically(path, (json.dumps(value, indent=1, allow_nan=False, default=_jsonable) + "\n").encode())


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_state(run: Path) -> dict | None:
    try:
        return read_json(Path(run) / STATE)
    except (OSError, ValueError):
        return None


def save_weights(model, path: Path) -> None:
    """The model's weights alone (no optimizer state), written beside and renamed into place.

    Keras' save_weights also stores a compiled model's optimizer moments, which triples the
    file (Adam keeps two per weight): 104 MB instead of 35 MB for conv1. The optimizer is
    checkpointed separately (save_optimizer), so it is detached while the weights are written.
    """
    path = Path(path)
    temporary = path.with_name(f".{os.getpid()}.{path.name}")  # keeps the .weights.h5 suffix Keras wants
    optimizer = getattr(model, "optimizer", None)
    try:
        model.optimizer = None
        model.save_weights(temporary)
    finally:
        model.optimizer = optimizer
    os.replace(temporary, path)


def save_optimizer(optimizer, path: Path) -> None:
    """The optimizer's variables (step count, moments) as a plain .npz: no pickles, no code."""
    from cnnlab.backend import keras  # convert_to_numpy copies GPU tensors too

    arrays = {f"{index:04d}": keras.ops.convert_to_numpy(variable) for index, variable in enumerate(optimizer.variables)}
    names = np.array([variable.path for variable in optimizer.variables])
    temporary = Path(path).with_name(f".{os.getpid()}.{Path(path).name}")
    with open(temporary, "wb") as handle:
        np.savez(handle, names=names, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_optimizer(optimizer, model, path: Path) -> None:
    """Restore what save_optimizer wrote into a freshly built optimizer of the same kind."""
    optimizer.build(model.trainable_variables)
    with np.load(path, allow_pickle=False) as stored:
        # Compare shapes, not the stored names: Keras numbers the names of optimizers and
        # unnamed layers per process ('adam' in a fresh process, 'adam_1' after a first run in
        # the same one), so the names would refuse a valid resume from a notebook or test.
        arrays = [stored[f"{index:04d}"] for index in range(len(stored["names"]))]
        if [array.shape for array in arrays] != [tuple(variable.shape) for variable in optimizer.variables]:
            raise UserError(f"{path}: optimizer state does not match this model; start a new run (--out)")
        for variable, array in zip(optimizer.variables, arrays):
            variable.assign(array)


def write_metrics_file(run: Path, history: list[dict]) -> None:
    lines = "".join(json.dumps(entry, allow_nan=False, default=_jsonable) + "\n" for entry in history)
    replace_atomically(Path(run) / METRICS, lines.encode())


def publish(run: Path, checkpoint_file: Path, public_name: str) -> None:
    """Give a versioned checkpoint its stable public name, atomically: a hard link (no copy of
    a 170 MB file every epoch) where the file system allows, else a copy."""
    target = Path(run) / public_name
    if target.exists() and os.path.samefile(checkpoint_file, target):
        # Already published (a resume republishes): and rename(2) of one hard link onto another
        # of the same file does nothing, which would leave the temporary link behind for good.
        return
    temporary = Path(run) / f".{os.getpid()}.{public_name}"
    temporary.unlink(missing_ok=True)
    try:
        os.link(checkpoint_file, temporary)
    except OSError:
        shutil.copyfile(checkpoint_file, temporary)
    os.replace(temporary, Path(run) / public_name)


def remove_unreferenced_checkpoints(run: Path, state: dict) -> None:
    keep = {state.get("last_weights"), state.get("best_weights"), state.get("last_optimizer")}
    for path in (Path(run) / CHECKPOINTS).glob("*"):
        if f"{CHECKPOINTS}/{path.name}" not in keep:
            path.unlink(missing_ok=True)
