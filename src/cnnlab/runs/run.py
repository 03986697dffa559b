"""`Run`: the one reader and writer of a run folder.

A run folder holds everything needed to understand, resume and reproduce a training run
(the layout is in cnnlab.runs.files). Training writes it through a Run; evaluation, prediction,
explanation, reports, comparisons, export and the server read it through one, so no other
module names a run file or parses one. Reading never runs code from the folder: weights are
loaded into a freshly built registered architecture.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from cnnlab.data.decode import DecodeOptions
from cnnlab.data.subset import subset
from cnnlab.errors import UserError
from cnnlab.runs import files
from cnnlab.runs.checkpoints import TrainingWrites
from cnnlab.runs.config import TrainConfig
from cnnlab.runs.predictions import StoredPredictions, read_predictions, write_predictions

WRITTEN_BY = "pass a folder written by `cnnlab train`"


@dataclass(frozen=True)
class Preprocessing:
    """What a photo goes through before the run's model sees it."""

    decode: DecodeOptions  # size, fit and JPEG draft, as the run's cache was decoded
    pixel_scale: str  # 'raw' (0-255) or 'unit' (0-1)
    tta_flip: bool  # predictions average each photo and its mirror image


class Run(TrainingWrites):
    """A run folder. `Run.open(path)` checks that it is one; `Run(path)` is for the trainer,
    which creates it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Run":
        """The run at `path`, or a one-line UserError naming it when it is not one. Cheap: reads
        nothing heavy and imports no Keras, so commands can check RUN before loading a model."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path} does not exist; {WRITTEN_BY}")
        for name in (files.CONFIG, files.CLASSES):
            if not (path / name).is_file():
                raise UserError(f"{path}: not a run folder (no {name}); {WRITTEN_BY}")
        return cls(path)

    @staticmethod
    def is_run(path: str | os.PathLike) -> bool:
        return (Path(path) / files.CONFIG).is_file()

    # ---- reading -------------------------------------------------------------------------

    def _read(self, name: str, default=None, required: bool = True):
        path = self.path / name
        try:
            return files.read_json(path)
        except FileNotFoundError:
            if required:
                raise UserError(f"{self.path}: not a run folder (no {name}); {WRITTEN_BY}") from None
            return default
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or "not valid JSON"
            raise UserError(f"{path}: {reason}; the run folder is damaged (train it again into a new --out)") from None

    @cached_property
    def config(self) -> dict:
        config = self._read(files.CONFIG)
        if not isinstance(config, dict) or not isinstance(config.get("train"), dict) \
                or not isinstance(config.get("recipe"), dict) or "model" not in config["train"]:
            raise UserError(f"{self.path / files.CONFIG}: not a run's configuration; the run folder is damaged")
        return config

    @cached_property
    def classes(self) -> list[str]:
        classes = self._read(files.CLASSES)
        if not isinstance(classes, list) or len(classes) < 2:
            raise UserError(f"{self.path / files.CLASSES}: not a list of two or more class names; "
                            "the run folder is damaged")
        return [str(name) for name in classes]

    @cached_property
    def data(self) -> dict:
        """data.json: the cache's resolved path, the split hash and counts, how photos were decoded."""
        data = self._read(files.DATA, default={}, required=False)
        return data if isinstance(data, dict) else {}

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config["train"])

    @property
    def model_name(self) -> str:
        return self.config["train"]["model"]

    @property
    def recipe(self) -> dict:
        return self.config["recipe"]

    @property
    def family(self) -> str:
        return self.config.get("model_family", "tutorial")

    @property
    def precision(self) -> str:
        return self.config.get("precision", "float32")  # runs from before the field were float32

    @property
    def cache_path(self) -> str | None:
        """Where the run's cache is: data.json's resolved path, else the configured one."""
        return self.data.get("cache") or self.config["train"].get("cache")

    @property
    def split_hash(self) -> str | None:
        return self.data.get("split_hash")

    @property
    def state(self) -> dict | None:
        """state.json, the commit point of training; None before the first finished epoch."""
        return files.read_state(self.path)

    @property
    def history(self) -> list[dict]:
        """One entry per finished epoch (metrics.jsonl)."""
        path = self.path / files.METRICS
        if not path.exists():
            return []
        history = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                history.append(json.loads(line))
            except ValueError:
                raise UserError(f"{path}: line {number} is not JSON; the run folder is damaged") from None
        return history

    @property
    def evaluation(self) -> dict | None:
        """evaluation.json as `cnnlab evaluate` wrote it, or None before it ran."""
        evaluation = self._read(files.EVALUATION, required=False)
        return evaluation if isinstance(evaluation, dict) else None

    @property
    def validation_threshold(self) -> float | None:
        """The two-class threshold chosen on validation; None when never evaluated or unusable
        (a damaged file must not label every photo one class: only a probability counts)."""
        try:
            value = (self.evaluation or {}).get("validation_threshold")
        except UserError:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0.0 <= value <= 1.0:
            return None
        return float(value)

    def preprocessing(self) -> Preprocessing:
        """How the run's photos were decoded (data.json) and scaled (the recipe)."""
        recipe = self.recipe
        decode = self.data.get("decode")
        if decode:
            options = DecodeOptions(int(decode["width"]), int(decode["height"]), decode.get("fit", "stretch"),
                                    bool(decode.get("draft", True)))
        else:  # a run folder without its data record: the recipe's size, which the model was built for
            options = DecodeOptions(int(recipe["input_width"]), int(recipe["input_height"]),
                                    recipe.get("fit", "stretch"))
        shape = self.config["input_shape"]
        channels_first = self.config.get("image_data_format", "channels_first") == "channels_first"
        height, width = shape[1:3] if channels_first else shape[0:2]
        if (options.width, options.height) != (width, height):
            raise UserError(f"{self.path}: {files.DATA} decodes photos to {options.width}x{options.height} but the "
                            f"model takes {width}x{height}; the run folder is inconsistent")
        # tta_flip is absent in runs from before the option.
        return Preprocessing(options, recipe["pixel_scale"], bool(recipe.get("tta_flip", False)))

    # ---- experiment logs (cnnlab.training.loggers writes them) ---------------------------

    @property
    def log_kinds(self) -> tuple[str, ...]:
        """The experiment logs the run was configured to write (config.json's train.log)."""
        return TrainConfig.from_dict(self.config["train"]).log

    def logs_folder(self) -> Path:
        """RUN/logs: where the experiment logs for other tools go (made by their writers)."""
        return self.path / files.LOGS

    def log_path(self, kind: str) -> Path:
        """A log's file or folder: tensorboard/, metrics.csv or mlflow.db inside logs_folder()."""
        if kind not in files.LOG_PATHS:
            raise UserError(f"no log {kind!r}; choose from {', '.join(files.LOG_PATHS)}")
        return self.logs_folder() / files.LOG_PATHS[kind]

    def mlflow_artifacts(self) -> Path:
        return self.logs_folder() / files.MLFLOW_ARTIFACTS

    @property
    def mlflow_run(self) -> dict | None:
        """{"run_id", "experiment_id"} of the MLflow run this run logs to; None before one exists."""
        record = self._read(f"{files.LOGS}/{files.MLFLOW_RUN}", required=False)
        return record if isinstance(record, dict) and isinstance(record.get("run_id"), str) else None

    def write_mlflow_run(self, record: dict) -> None:
        self.logs_folder().mkdir(parents=True, exist_ok=True)
        files.write_json(self.logs_folder() / files.MLFLOW_RUN, record)

    def weights_path(self, which: str = files.BEST) -> Path:
        """best, last, or a checkpoint as state.json names it (with or without its suffix)."""
        if which.startswith(f"{files.CHECKPOINTS}/"):
            return self.path / (which if which.endswith(files.WEIGHTS_SUFFIX) else which + files.WEIGHTS_SUFFIX)
        return self.path / files.weights_name(which)

    def has_weights(self, which: str = files.BEST) -> bool:
        return self.weights_path(which).exists()

    def weights_megabytes(self, which: str = files.BEST, digits: int = 3) -> float | None:
        path = self.weights_path(which)
        return round(path.stat().st_size / 1e6, digits) if path.exists() else None

    def build_model(self, weights: str = files.BEST, precision: str | None = None):
        """The run's registered architecture with its weights (weights only: no code from a file).
        precision: rebuild in another precision than the run's (export wants float32)."""
        from cnnlab.models import build_model

        weights_file = self.weights_path(weights)
        if not weights_file.exists():
            raise UserError(f"{self.path}: no {weights_file.name}; the run has not finished an epoch "
                            "(cnnlab train --resume)")
        model = build_model(self.model_name, tuple(self.config["input_shape"]), len(self.classes),
                            precision=precision or self.precision)
        try:
            model.load_weights(weights_file)
        except (OSError, ValueError) as error:
            # Keras' messages can quote whole tensors: keep the first line only.
            first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise UserError(f"{weights_file}: cannot load these weights into {self.model_name} ({first_line}); "
                            "the run folder is damaged") from None
        if not all_finite(model):
            # Ordinary divergence (a learning rate far too high): every prediction would be NaN.
            raise UserError(f"{weights_file}: the weights hold NaN or infinite values (training diverged); "
                            "train again with a lower --lr")
        return model

    # ---- the ONNX export of the best weights (made by cnnlab.inference, kept here) ----------

    def weights_signature(self, which: str = files.BEST) -> dict:
        """What identifies a weights file's version: its name, size and modification time in
        nanoseconds (as predictions-<split>.npz are keyed). Training publishes each new best as
        a new file, so both change whenever the weights do."""
        status = self.weights_path(which).stat()
        return {"weights": which, "bytes": status.st_size, "mtime_ns": status.st_mtime_ns}

    def onnx_export(self) -> tuple[Path, dict] | None:
        """(path, record) of the ONNX export made from the current best weights; None when there is
        none, its record is unreadable, or it was made from other weights (then it is made again)."""
        path, record_path = self.path / files.ONNX_EXPORT, self.path / files.ONNX_RECORD
        try:
            record = files.read_json(record_path)
            current = self.weights_signature()
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("weights_file") != current or not path.is_file():
            return None
        return path, record

    def store_onnx_export(self, make: Callable[[Path, dict], dict]) -> tuple[Path, dict]:
        """Make and keep the ONNX export of the best weights. `make(temporary, signature)` writes
        it (checked) at a temporary name in this folder and returns its metadata; it is renamed
        into place, then its record (the metadata and the weights' signature, taken before
        `make` ran) is written beside it. Weights that change meanwhile leave a record that no
        longer matches them, so the next reader makes the export again."""
        signature = self.weights_signature()
        temporary = self.path / f".{os.getpid()}.{files.ONNX_EXPORT}"
        try:
            metadata = make(temporary, signature)
            os.replace(temporary, self.path / files.ONNX_EXPORT)
        finally:
            temporary.unlink(missing_ok=True)
        record = {**metadata, "weights_file": signature}
        files.write_json(self.path / files.ONNX_RECORD, record)
        return self.path / files.ONNX_EXPORT, record

    def split_rows(self, cache, split: str) -> np.ndarray:
        """The cache rows the run is scored on: the whole split, or for validation the same
        seeded subset that training validated on when it was trained with --val-limit."""
        rows = cache.indices(split)
        train_config = self.train_config
        if split == "val" and train_config.val_limit:
            rows = subset(rows, cache.labels, train_config.val_limit, train_config.seed)
        return rows

    def stored_predictions(self, split: str, split_hash: str | None = None) -> StoredPredictions | None:
        """predictions-<split>.npz when it was made by the current best weights on this split."""
        split_hash = split_hash or self.split_hash
        return read_predictions(self.path, split, split_hash) if split_hash else None

    # ---- writing (training and evaluation) -----------------------------------------------

    def write_predictions(self, split: str, rows, labels, probabilities, split_hash: str) -> Path:
        return write_predictions(self.path, split, rows, labels, probabilities, split_hash)

    def write_evaluation(self, result: dict) -> None:
        files.write_json(self.path / files.EVALUATION, result)

    def create(self, config: dict, classes: list[str], data: dict, versions: dict) -> None:
        """The description written before the first epoch: config, classes, data, versions."""
        self.path.mkdir(parents=True, exist_ok=True)
        files.write_json(self.path / files.CONFIG, config)
        files.write_json(self.path / files.CLASSES, classes)
        files.write_json(self.path / files.DATA, data)
        files.write_json(self.path / files.VERSIONS, versions)
        self.__dict__.pop("config", None), self.__dict__.pop("classes", None), self.__dict__.pop("data", None)


def all_finite(model) -> bool:
    """True when every weight of the model is a finite number."""
    from cnnlab.backend import keras

    return all(bool(np.isfinite(keras.ops.convert_to_numpy(weight)).all()) for weight in model.weights)
