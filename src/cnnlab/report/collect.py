"""Gather what a report shows about each run: its files, its evaluation and its validation
predictions (stored by evaluate_run, else computed once here with the best weights).

Nothing here draws or writes; a run folder is only read.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError
from cnnlab.metrics import choose_threshold, classification_report, to_jsonable
from cnnlab.runs import Run

SPLIT = "val"  # the split the report's pictures describe (the split the tutorial reports on)
SPLIT_LABEL = "validation"


@dataclass
class RunData:
    """One run as the report sees it. `predictions` describe SPLIT; `cache` may be None."""

    name: str  # shown in the report: the model name, or "model (folder)" when two runs share one
    path: Path
    model: str
    classes: list[str]
    config: dict
    history: list[dict]
    evaluation: dict | None = None
    labels: np.ndarray | None = None  # (n,) class indices of the rows predicted
    probabilities: np.ndarray | None = None  # (n,) P(class 1) for two classes, (n, N) otherwise
    rows: np.ndarray | None = None  # cache rows of the predictions (for thumbnails)
    cache: object | None = None  # cnnlab.data.reader.Cache the run was trained on, when it is here
    notes: list[str] = field(default_factory=list)
    run: Run | None = None

    @property
    def binary_scores(self) -> np.ndarray | None:
        """P(class 1) for a two-class run (a two-column softmax counts), else None."""
        if self.probabilities is None or len(self.classes) != 2:
            return None
        if self.probabilities.ndim == 1:
            return self.probabilities
        return self.probabilities[:, 1] if self.probabilities.shape[1] == 2 else None

    def predicted(self) -> np.ndarray | None:
        """Predicted class per row: P >= 0.5 for one sigmoid output, argmax otherwise."""
        if self.probabilities is None:
            return None
        if self.probabilities.ndim == 1:
            return (self.probabilities >= 0.5).astype(np.int64)
        return np.argmax(self.probabilities, axis=1)

    def class_probabilities(self) -> np.ndarray | None:
        """(n, classes) probabilities, a sigmoid output expanded to [1 - p, p]."""
        if self.probabilities is None:
            return None
        if self.probabilities.ndim == 1:
            return np.stack([1.0 - self.probabilities, self.probabilities], axis=1)
        return self.probabilities


def open_cache_quietly(path, notes: list[str], whose: str):
    """The cache at `path`, or None with a note saying why (the report then skips its photos)."""
    from cnnlab.data.reader import open_cache

    if not path:
        return None
    try:
        return open_cache(path)
    except (ValueError, OSError) as error:
        notes.append(f"{whose}: cache unavailable ({error}); photos and fresh predictions skipped")
        return None


def load_run(run: str | Path, cache_dir: str | None = None, caches: dict | None = None) -> RunData:
    """Read a run folder and its validation predictions (stored or computed; never written)."""
    run = Run.open(run)
    config, classes, model = run.config, run.classes, run.model_name
    result = RunData(model, run.path, model, classes, config, run.history, run.evaluation, run=run)
    if not result.history:
        result.notes.append(f"{run.path}: no finished epoch in metrics.jsonl; learning curves skipped")

    caches = {} if caches is None else caches
    cache_path = cache_dir or run.cache_path
    if cache_path not in caches:
        caches[cache_path] = open_cache_quietly(cache_path, result.notes, str(run.path))
    cache = caches[cache_path]
    if cache is not None and run.split_hash and cache.split_hash != run.split_hash:
        result.notes.append(f"{run.path}: {cache.root} is not the split it was trained on; photos skipped (pass --cache)")
        cache = None
    result.cache = cache

    stored = run.stored_predictions(SPLIT)
    if stored is not None and (cache is None or np.array_equal(cache.labels[stored.rows], stored.labels)):
        result.rows, result.labels, result.probabilities = stored.rows, stored.labels, stored.probabilities
    elif cache is not None and run.has_weights():
        _predict(result, run, cache)
    else:
        result.notes.append(f"{run.path}: no stored predictions and no cache or best weights to compute them; "
                            "ROC, scatter, confusion and top losses skipped")
    if result.evaluation is None and result.labels is not None:
        result.evaluation = _evaluation_from_predictions(result, run)
        result.notes.append(f"{run.path}: no evaluation.json; validation metrics computed for this report "
                            "(run `cnnlab evaluate` for the test split)")
    return result


def _predict(result: RunData, run: Run, cache) -> None:
    from cnnlab.training.evaluation import predict_probabilities

    rows = run.split_rows(cache, SPLIT)
    if len(rows) == 0:
        result.notes.append(f"{result.path}: the cache has no {SPLIT} photos; prediction pictures skipped")
        return
    model = run.build_model()
    preprocessing = run.preprocessing()
    # Batches of 32, not evaluate_run's 256: a wide model's activations for 256 photos take gigabytes,
    # and a report is often made beside a training run.
    probabilities, _ = predict_probabilities(model, cache, rows, preprocessing.pixel_scale, batch_size=32,
                                             tta_flip=preprocessing.tta_flip)
    del model
    gc.collect()  # a report may load several large models one after another
    result.rows, result.labels, result.probabilities = rows, cache.labels[rows], probabilities


def _evaluation_from_predictions(result: RunData, run: Run) -> dict:
    """The evaluate_run fields the report uses, for the validation split only."""
    binary = result.probabilities.ndim == 1
    threshold = choose_threshold(result.labels, result.probabilities) if binary else None
    report = classification_report(result.labels, result.probabilities, result.classes, threshold=threshold)
    state = run.state or {}
    return to_jsonable({
        "model": result.model, "run": str(result.path), "classes": result.classes,
        "parameters": run.config.get("parameters"), "training_seconds": state.get("training_seconds"),
        "epochs_done": state.get("epochs_done"), "best_epoch": state.get("best_epoch"),
        "splits": {SPLIT: report}, "validation_threshold": threshold,
    })


def load_runs(runs, cache_dir: str | None = None) -> list[RunData]:
    """Every run, checked first (a bad folder fails before any model is loaded); display names
    made unique when two runs share a model."""
    paths = [Run.open(run).path for run in runs]
    if not paths:
        raise UserError("no run folders given; pass at least one folder written by `cnnlab train`")
    caches: dict = {}
    loaded = [load_run(path, cache_dir, caches) for path in paths]
    models = [run.model for run in loaded]
    for run in loaded:
        if models.count(run.model) > 1:
            run.name = f"{run.model} ({run.path.name})"
    return loaded


def read_survey(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    try:
        survey = json.loads(Path(path).read_text())
    except OSError as error:
        raise UserError(f"{path}: cannot read the survey ({error.strerror or error}); "
                         "write one with `cnnlab survey DATA --json > survey.json`") from None
    except ValueError:
        raise UserError(f"{path}: not JSON; write a survey with `cnnlab survey DATA --json > survey.json`") from None
    if not isinstance(survey, dict) or "top_shapes" not in survey or "per_class" not in survey:
        raise UserError(f"{path}: not a survey (no top_shapes / per_class); "
                         "write one with `cnnlab survey DATA --json > survey.json`")
    return survey
