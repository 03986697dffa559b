"""`cnnlab evaluate`: score a run's best weights on the validation and test splits.

The threshold is chosen on validation and applied unchanged to test (the honest figure); the
tutorial's "best accuracy over thresholds 0.1..0.9", picked on the very set it scores, is
reported beside it and labelled as such.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cnnlab.data.reader import open_cache
from cnnlab.metrics import choose_threshold, classification_report, to_jsonable
from cnnlab.models import build_model, count_parameters
from cnnlab.training import run_folder as folder
from cnnlab.training.batches import CacheBatches
from cnnlab.backend import keras
from cnnlab.recipe.pixels import width_axis
from cnnlab.training.config import TrainConfig
from cnnlab.training.stored_predictions import write_predictions
from cnnlab.errors import UserError


def load_trained_model(run: str | Path, weights: str = "best"):
    """Rebuild the run's registered architecture and load its weights (weights only: loading
    never runs code from the file). Returns (model, config dict)."""
    run = Path(run)
    try:
        config = folder.read_json(run / "config.json")
    except (OSError, ValueError):
        raise UserError(f"{run}: not a run folder (no config.json); train one with `cnnlab train`") from None
    weights_file = run / f"{weights}.weights.h5"
    if not weights_file.exists():
        raise UserError(f"{run}: no {weights_file.name}; the run has not finished an epoch (cnnlab train --resume)")
    classes = folder.read_json(run / "classes.json")
    # Runs from before the precision field were all float32.
    model = build_model(config["train"]["model"], tuple(config["input_shape"]), len(classes),
                        precision=config.get("precision", "float32"))
    model.load_weights(weights_file)
    return model, config


def predict_probabilities(model, cache, rows, pixel_scale: str, batch_size: int = 256,
                          tta_flip: bool = False) -> tuple[np.ndarray, float]:
    """P(class 1) per row for two classes, (n, N) probabilities otherwise; and images/s.

    tta_flip: test-time augmentation, the mean of the probabilities for each image and its
    left-right mirror image (images/s then counts both passes' time).
    """
    batches = CacheBatches(cache.images, cache.labels, rows, len(cache.classes), batch_size, pixel_scale, shuffle=False)
    outputs = []
    started = time.perf_counter()
    for index in range(len(batches)):
        inputs, _ = batches[index]
        probabilities = np.asarray(keras.ops.convert_to_numpy(model(inputs, training=False)))
        if tta_flip:
            mirrored = np.ascontiguousarray(np.flip(inputs, axis=width_axis()))
            mirrored_probabilities = np.asarray(keras.ops.convert_to_numpy(model(mirrored, training=False)))
            probabilities = (probabilities + mirrored_probabilities) / 2
        outputs.append(probabilities)
    seconds = time.perf_counter() - started
    probabilities = np.concatenate(outputs).astype(np.float64)
    if probabilities.shape[1] == 1:
        probabilities = probabilities[:, 0]
    return np.clip(probabilities, 0.0, 1.0), len(rows) / seconds if seconds > 0 else float("nan")


def split_rows(cache, split: str, train_config: TrainConfig) -> np.ndarray:
    """The cache rows a run is scored on: the whole split, or for validation the same seeded
    subset that training validated on when the run was trained with --val-limit."""
    rows = cache.indices(split)
    if split == "val" and train_config.val_limit:
        from cnnlab.training.trainer import subset

        rows = subset(rows, cache.labels, train_config.val_limit, train_config.seed)
    return rows


def evaluate_run(run: str | Path, cache_dir: str | None = None, splits=("val", "test"), write: bool = True) -> dict:
    """Metrics of a run's best weights per split, plus size, time and speed. Writes evaluation.json
    and, per split, predictions-<split>.npz (the probabilities behind the metrics)."""
    run = Path(run)
    model, config = load_trained_model(run)
    train_config = TrainConfig.from_dict(config["train"])
    data = folder.read_json(run / "data.json")
    # data.json holds the cache's resolved path; the config's may be relative to another directory.
    cache = open_cache(cache_dir or data.get("cache") or train_config.cache)
    if cache.split_hash != data["split_hash"]:
        raise UserError(f"{cache.root} is not the split {run} was trained on (split hash differs); pass its --data cache")
    state = folder.read_state(run) or {}
    pixel_scale = config["recipe"]["pixel_scale"]
    tta_flip = bool(config["recipe"].get("tta_flip", False))  # absent in runs from before the option
    result = {
        "model": train_config.model, "run": str(run), "classes": cache.classes,
        "parameters": count_parameters(model),
        "model_file_megabytes": round((run / "best.weights.h5").stat().st_size / 1e6, 3),
        "training_seconds": state.get("training_seconds"), "epochs_done": state.get("epochs_done"),
        "best_epoch": state.get("best_epoch"), "test_time_flip": tta_flip, "splits": {},
    }
    threshold = None
    # Two classes: the threshold always comes from validation, also when only test is asked
    # for (a test-only evaluation must not silently fall back to 0.5).
    needs_threshold = len(cache.classes) == 2 and "val" not in splits and len(split_rows(cache, "val", train_config))
    for split in (("val",) if needs_threshold else ()) + tuple(splits):
        rows = split_rows(cache, split, train_config)
        if len(rows) == 0:
            continue
        probabilities, images_per_second = predict_probabilities(model, cache, rows, pixel_scale, tta_flip=tta_flip)
        labels = cache.labels[rows]
        if write:  # beside evaluation.json, for pictures of the run (see stored_predictions)
            write_predictions(run, split, rows, labels, probabilities, cache.split_hash)
        if split == "val" and len(cache.classes) == 2:
            threshold = choose_threshold(labels, probabilities)
        report = classification_report(labels, probabilities, cache.classes,
                                       threshold=threshold if len(cache.classes) == 2 else None)
        report["inference_images_per_second"] = round(images_per_second, 1)
        result["splits"][split] = report
    result["validation_threshold"] = threshold
    if write:
        _keep_other_splits(run, result)
    result = to_jsonable(result)
    if write:
        folder.write_json(run / "evaluation.json", result)
    return result


def _keep_other_splits(run: Path, result: dict) -> None:
    """Splits evaluated earlier from the same weights stay in evaluation.json when this call
    evaluates others (`cnnlab evaluate RUN --split test` must not erase validation)."""
    try:
        earlier = folder.read_json(run / "evaluation.json")
    except (OSError, ValueError):
        return
    if (earlier.get("best_epoch"), earlier.get("epochs_done")) != (result["best_epoch"], result["epochs_done"]):
        return
    for split, report in earlier.get("splits", {}).items():
        result["splits"].setdefault(split, report)


def format_evaluation(result: dict) -> str:
    lines = [f"{result['model']} ({result['parameters']:,} parameters, {result['model_file_megabytes']} MB, "
             f"trained {result['training_seconds']} s, best epoch {result['best_epoch']}/{result['epochs_done']})"]
    header = f"{'split':6} {'n':>5} {'MSE':>6} {'logloss':>7} {'Pearson':>7} {'AUC':>6} {'acc@0.5':>7} {'bal@0.5':>7} {'tut.best':>8} {'acc@val-thr':>11}"
    lines.append(header)
    for split, report in result["splits"].items():
        def number(key, digits=3):
            value = report.get(key)
            return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"
        lines.append(
            f"{split:6} {report.get('num_examples', '-'):>5} {number('mean_squared_error'):>6} {number('log_loss'):>7} "
            f"{number('pearson_correlation'):>7} {number('roc_auc'):>6} {number('accuracy_at_0.5'):>7} "
            f"{number('balanced_accuracy_at_0.5'):>7} {number('tutorial_best_accuracy'):>8} "
            f"{number('accuracy_at_validation_threshold'):>11}"
        )
    if result.get("validation_threshold") is not None:
        lines.append(f"threshold chosen on validation: {result['validation_threshold']:.3f}; "
                     "'tut.best' is the tutorial's best of thresholds 0.1..0.9 picked on the same split (optimistic)")
    return "\n".join(lines)
