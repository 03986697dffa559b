"""`cnnlab evaluate`: score a run's best weights on the validation and test splits.

The threshold is chosen on validation and applied unchanged to test (the honest figure); the
tutorial's "best accuracy over thresholds 0.1..0.9", picked on the very set it scores, is
reported beside it and labelled as such.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cnnlab.backend import keras, no_gradient
from cnnlab.data.reader import open_cache
from cnnlab.errors import UserError
from cnnlab.metrics import choose_threshold, classification_report, to_jsonable
from cnnlab.models import count_parameters
from cnnlab.models.activations import inference_batch_size
from cnnlab.recipe.pixels import width_axis
from cnnlab.runs import Run
from cnnlab.training.batches import CacheBatches
from cnnlab.training.loggers import log_evaluation


def _predict_batches(model, batches, tta_flip: bool, outputs: list) -> None:
    for index in range(len(batches)):
        inputs, _ = batches[index]
        with no_gradient():  # else PyTorch keeps every layer's output of the batch for a backward pass
            probabilities = np.asarray(keras.ops.convert_to_numpy(model(inputs, training=False)))
            if tta_flip:
                mirrored = np.ascontiguousarray(np.flip(inputs, axis=width_axis()))
                mirrored_probabilities = np.asarray(keras.ops.convert_to_numpy(model(mirrored, training=False)))
                probabilities = (probabilities + mirrored_probabilities) / 2
        outputs.append(probabilities)


def predict_probabilities(model, cache, rows, pixel_scale: str, batch_size: int | None = None,
                          tta_flip: bool = False) -> tuple[np.ndarray, float]:
    """P(class 1) per row for two classes, (n, N) probabilities otherwise; and images/s.

    batch_size: None = as many photos as keep the batch's layer outputs within
    cnnlab.models.activations.INFERENCE_BYTES (256 at most).

    tta_flip: test-time augmentation, the mean of the probabilities for each image and its
    left-right mirror image (images/s then counts both passes' time).
    """
    batch_size = batch_size or inference_batch_size(model)
    batches = CacheBatches(cache.images, cache.labels, rows, len(cache.classes), batch_size, pixel_scale, shuffle=False)
    outputs = []
    started = time.perf_counter()
    _predict_batches(model, batches, tta_flip, outputs)
    seconds = time.perf_counter() - started
    probabilities = np.concatenate(outputs).astype(np.float64)
    if probabilities.shape[1] == 1:
        probabilities = probabilities[:, 0]
    return np.clip(probabilities, 0.0, 1.0), len(rows) / seconds if seconds > 0 else float("nan")


def evaluate_run(run: str | Path, cache_dir: str | None = None, splits=("val", "test"), write: bool = True) -> dict:
    """Metrics of a run's best weights per split, plus size, time and speed. Writes evaluation.json
    and, per split, predictions-<split>.npz (the probabilities behind the metrics)."""
    run = Run.open(run)
    model = run.build_model()
    data = run.data
    # data.json holds the cache's resolved path; the config's may be relative to another directory.
    cache = open_cache(cache_dir or run.cache_path)
    if cache.split_hash != data.get("split_hash"):
        raise UserError(f"{cache.root} is not the split {run.path} was trained on (split hash differs); "
                        "pass its --data cache")
    state = run.state or {}
    preprocessing = run.preprocessing()
    result = {
        "model": run.model_name, "run": str(run.path), "classes": cache.classes,
        "parameters": count_parameters(model),
        "model_file_megabytes": run.weights_megabytes(),
        "training_seconds": state.get("training_seconds"), "epochs_done": state.get("epochs_done"),
        "best_epoch": state.get("best_epoch"), "test_time_flip": preprocessing.tta_flip, "splits": {},
    }
    threshold = None
    # Two classes: the threshold always comes from validation, also when only test is asked
    # for (a test-only evaluation must not silently fall back to 0.5).
    needs_threshold = len(cache.classes) == 2 and "val" not in splits and len(run.split_rows(cache, "val"))
    for split in (("val",) if needs_threshold else ()) + tuple(splits):
        rows = run.split_rows(cache, split)
        if len(rows) == 0:
            continue
        probabilities, images_per_second = predict_probabilities(model, cache, rows, preprocessing.pixel_scale,
                                                                 tta_flip=preprocessing.tta_flip)
        labels = cache.labels[rows]
        if write:  # beside evaluation.json, for pictures of the run (see stored_predictions)
            run.write_predictions(split, rows, labels, probabilities, cache.split_hash)
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
        run.write_evaluation(result)
        log_evaluation(run, result)  # into the run's TensorBoard and MLflow logs, when it keeps them
    return result


def _keep_other_splits(run: Run, result: dict) -> None:
    """Splits evaluated earlier from the same weights stay in evaluation.json when this call
    evaluates others (`cnnlab evaluate RUN --split test` must not erase validation)."""
    try:
        earlier = run.evaluation
    except UserError:
        return
    if earlier is None:
        return
    if (earlier.get("best_epoch"), earlier.get("epochs_done")) != (result["best_epoch"], result["epochs_done"]):
        return
    for split, report in earlier.get("splits", {}).items():
        result["splits"].setdefault(split, report)
