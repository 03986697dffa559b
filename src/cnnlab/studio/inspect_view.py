"""The Inspect tab: what a run gets wrong on validation, and what its layers see.

Confusion matrix, threshold metrics and the most confidently wrong photos come from the run's
stored validation predictions (predictions-val.npz, written by evaluation for the current best
weights): no model runs for them, and they are the very numbers `cnnlab evaluate` reported. The
photos are the run's cache rows, as the model saw them. Grad-CAM and feature maps run the model
on such a row; the convolution explorer filters any photo of --data with a kernel the user types.
"""

from __future__ import annotations

import numpy as np

from cnnlab.errors import UserError
from cnnlab.serve.views import enlarge, heat_overlay, png_data_url

SPLIT = "val"
FEATURE_CHANNELS = 16
EXPLORER_SIZE = 256  # longest side of the convolution explorer's photo


class NotEvaluated(UserError):
    """The run has no validation predictions for its current weights (HTTP 409: evaluate it)."""


def validation(run):
    """(labels, (n, classes) probabilities, cache rows) of the run's stored validation predictions."""
    stored = run.stored_predictions(SPLIT)
    if stored is None:
        raise NotEvaluated(f"run {run.path.name!r} has no validation predictions for its current weights: "
                           "evaluate it (the Evaluate button, or `cnnlab evaluate`)")
    probabilities = np.asarray(stored.probabilities, dtype=np.float64)
    if probabilities.ndim == 1:
        probabilities = np.stack([1.0 - probabilities, probabilities], axis=1)
    return np.asarray(stored.labels, dtype=np.int64), probabilities, np.asarray(stored.rows, dtype=np.int64)


def decide(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Two classes: the second when its probability > threshold (cnnlab's rule); else the most probable."""
    if probabilities.shape[1] == 2 and threshold is not None:
        return (probabilities[:, 1] > threshold).astype(np.int64)
    return np.argmax(probabilities, axis=1)


def threshold_metrics(run, threshold: float | None = None) -> dict:
    """The confusion matrix and accuracy, precision and recall on validation at `threshold`
    (two classes; default the run's validation threshold, else 0.5). Precision and recall are
    of the second class (the one the probability is of); with more classes, their means."""
    from cnnlab.metrics.core import confusion_matrix

    labels, probabilities, _ = validation(run)
    classes = run.classes
    binary = probabilities.shape[1] == 2
    if threshold is None and binary:
        threshold = run.validation_threshold if run.validation_threshold is not None else 0.5
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserError(f"threshold must be between 0 and 1, got {threshold}")
    predicted = decide(probabilities, threshold)
    matrix = confusion_matrix(labels, predicted, len(classes))
    true_positive = np.diag(matrix).astype(np.float64)
    predicted_count, actual_count = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(true_positive, predicted_count, out=np.zeros_like(true_positive), where=predicted_count > 0)
    recall = np.divide(true_positive, actual_count, out=np.zeros_like(true_positive), where=actual_count > 0)
    return {"classes": classes, "threshold": threshold if binary else None,
            "validation_threshold": run.validation_threshold, "photos": int(labels.size),
            "confusion_matrix": matrix.tolist(), "accuracy": float(true_positive.sum() / max(labels.size, 1)),
            "precision": float(precision[1] if binary else precision.mean()),
            "recall": float(recall[1] if binary else recall.mean()),
            "positive_class": classes[1] if binary else None,
            "per_class": {name: {"precision": float(precision[index]), "recall": float(recall[index])}
                          for index, name in enumerate(classes)}}


def run_cache(run):
    """The cache the run was trained on, or UserError saying why its photos cannot be shown."""
    from cnnlab.data.reader import open_cache

    try:
        cache = open_cache(run.cache_path)
    except (ValueError, OSError) as error:
        raise UserError(f"run {run.path.name!r}: its cache is unavailable ({error})") from None
    if run.split_hash and cache.split_hash != run.split_hash:
        raise UserError(f"run {run.path.name!r}: {cache.root} no longer holds the split it was trained on")
    return cache


def top_losses(run, count: int = 12) -> list[dict]:
    """The validation photos the run was surest about and got wrong, highest loss first."""
    from cnnlab.report.photos import most_confidently_wrong

    labels, probabilities, rows = validation(run)
    chosen = most_confidently_wrong(labels, probabilities, count)
    cache = run_cache(run) if len(chosen) else None
    classes, answer = run.classes, []
    for position in chosen:
        row, truth = int(rows[position]), int(labels[position])
        guess = int(np.argmax(probabilities[position]))
        answer.append({"row": row, "path": cache.paths([row])[0].split("/")[-1], "true": classes[truth],
                       "predicted": classes[guess], "probability": float(probabilities[position, guess]),
                       "loss": float(-np.log(max(probabilities[position, truth], 1e-12))),
                       "image": png_data_url(enlarge(np.asarray(cache.images[row])))})
    return answer


def cache_pixels(run, row: int) -> np.ndarray:
    cache = run_cache(run)
    if not 0 <= row < len(cache.labels):
        raise UserError(f"row {row} is not in the run's cache (0-{len(cache.labels) - 1})")
    return np.asarray(cache.images[row])


def grad_cam(models, run, row: int) -> dict:
    """The model's input for cache row `row`, its prediction and its Grad-CAM overlay."""
    pixels = cache_pixels(run, row)
    service = models.service(run)
    (result,) = service.predict_decoded([_decoded(pixels, row)])
    heatmap, detail = service.grad_cam(pixels)
    return {"row": row, "result": result, "model_input": png_data_url(enlarge(pixels)),
            "grad_cam": png_data_url(enlarge(heat_overlay(pixels, heatmap))) if heatmap is not None else None,
            "layer": detail if heatmap is not None else None, "note": None if heatmap is not None else detail}


def _decoded(pixels, row):
    from cnnlab.serve.service import Decoded

    return Decoded(f"row {row}", pixels)


def feature_maps(models, run, row: int, channels: int = FEATURE_CHANNELS) -> dict:
    """Per convolution, the first `channels` output maps for cache row `row`, tiled into one picture."""
    pixels = cache_pixels(run, row)
    service, explainer = models.explainer(run)
    with service.lock:
        explanation = explainer.explain(pixels, service.classifier.pixel_scale)
    layers = [{"layer": name, "channels": int(maps.shape[0]), "size": [int(maps.shape[2]), int(maps.shape[1])],
               "image": png_data_url(tile(maps[:channels]))} for name, maps in explanation.feature_maps.items()]
    return {"row": row, "model_input": png_data_url(enlarge(pixels)), "layers": layers}


def tile(maps: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """(channels, h, w) -> one grey picture, each map stretched to 0-255 on its own, at least 48 px."""
    count, height, width = maps.shape
    factor = max(1, 48 // max(height, width))
    rows = -(-count // columns)
    columns = min(columns, count)
    canvas = np.full((rows * (height * factor + gap), columns * (width * factor + gap)), 255, dtype=np.uint8)
    for index in range(count):
        values = maps[index].astype(np.float64)
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        big = np.repeat(np.repeat(scaled.astype(np.uint8), factor, axis=0), factor, axis=1)
        top, left = (index // columns) * (height * factor + gap), (index % columns) * (width * factor + gap)
        canvas[top:top + height * factor, left:left + width * factor] = big
    return canvas


def convolve(folders, decoding, relative: str, kernel) -> dict:
    """The photo in grey and its cross-correlation with `kernel` (as Keras' Conv2D computes it),
    shown as `cnnlab filters` shows it."""
    from cnnlab.explain.convolution import correlate
    from cnnlab.explain.filters import display_pixels, greyscale, is_detector
    from cnnlab.studio.data_view import decode_for_view

    matrix = kernel_matrix(kernel)
    photo = decode_for_view(folders, relative, decoding, EXPLORER_SIZE)
    grey = greyscale(photo)
    response = correlate(grey, matrix, 1, "same")
    return {"path": relative, "kernel": matrix.tolist(),
            "display": "edge strength (absolute value)" if is_detector(matrix) else "divided by the kernel's sum",
            "grey": png_data_url(np.clip(grey + 0.5, 0, 255).astype(np.uint8)),
            "result": png_data_url(display_pixels(response, matrix)),
            "range": [float(response.min()), float(response.max())]}


def kernel_matrix(kernel) -> np.ndarray:
    try:
        matrix = np.asarray(kernel, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError("kernel must be a 3x3 matrix of numbers") from None
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise UserError(f"kernel must be a 3x3 matrix of finite numbers, got shape {matrix.shape}")
    if not np.abs(matrix).sum():
        raise UserError("the kernel is all zeros: every pixel would be 0")
    return matrix
