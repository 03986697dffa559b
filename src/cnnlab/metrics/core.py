"""What every metric shares: input checks, the confusion matrix, rank AUC and JSON output.

Conventions used everywhere in cnnlab:

* Binary labels are 0/1 (the tutorial uses cat = 1, dog = 0); ``probabilities`` is the
  predicted probability of class 1, in [0, 1].
* Threshold rule: an example is predicted as class 1 when ``probability > threshold``
  (strictly greater).  This is the rule Keras' ``binary_accuracy`` and scikit-learn's binary
  ``top_k_accuracy_score`` use, so our accuracy at 0.5 equals the figure Keras prints while
  training, and equals the argmax of ``[1 - p, p]`` (argmax picks class 0 on a 0.5 tie).
* Confusion matrices have rows = true class, columns = predicted class (scikit-learn).
* Undefined values (AUC with one class, Pearson with a constant side) are ``float('nan')``;
  ``to_jsonable`` turns them into ``None`` for JSON output.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnlab.errors import UserError

TUTORIAL_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
THRESHOLD_RULE = "predict class 1 when probability > threshold"
DEFAULT_LOG_LOSS_EPS = 1e-7


def validate_class_labels(labels: Any, num_classes: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array, checking every value is an integer in [0, N)."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.ravel()
    if array.ndim != 1:
        raise UserError(f"{name} must be a 1-D array of class indices, got shape {array.shape}")
    if array.size == 0:
        raise UserError(f"{name} is empty: metrics need at least one example")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number):
        raise UserError(f"{name} must be numeric class indices, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise UserError(f"{name} must hold whole-number class indices (e.g. 0 and 1)")
    if array.min() < 0 or array.max() >= num_classes:
        raise UserError(
            f"{name} must lie in [0, {num_classes}), found values from {array.min()} "
            f"to {array.max()}"
        )
    return array.astype(np.int64)


def validate_binary_inputs(labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check binary labels and P(class 1); accept shape (n,) or (n, 1) for either."""
    label_array = validate_class_labels(labels, 2)
    probability_array = np.asarray(probabilities, dtype=np.float64)
    if probability_array.ndim == 2 and probability_array.shape[1] == 1:
        probability_array = probability_array.ravel()
    if probability_array.ndim != 1:
        raise UserError(
            "binary metrics need one probability of class 1 per example, shape (n,) or "
            f"(n, 1); got shape {probability_array.shape}"
        )
    if probability_array.shape[0] != label_array.shape[0]:
        raise UserError(
            f"labels and probabilities differ in length: {label_array.shape[0]} labels vs "
            f"{probability_array.shape[0]} probabilities"
        )
    validate_probability_values(probability_array)
    return label_array, probability_array


def validate_probability_values(probability_array: np.ndarray) -> None:
    """Reject NaN/inf and values outside [0, 1] (e.g. logits passed by mistake)."""
    if not np.all(np.isfinite(probability_array)):
        raise UserError("probabilities contain NaN or infinite values")
    if probability_array.min() < 0.0 or probability_array.max() > 1.0:
        raise UserError(
            f"probabilities must lie in [0, 1], found values from {probability_array.min():g} "
            f"to {probability_array.max():g} (pass sigmoid/softmax outputs, not logits)"
        )


def confusion_matrix(labels: Any, predicted: Any, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows = true class, columns = predicted class."""
    if int(num_classes) != num_classes or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    label_array = validate_class_labels(labels, num_classes, "labels")
    predicted_array = validate_class_labels(predicted, num_classes, "predicted")
    if label_array.shape != predicted_array.shape:
        raise UserError(
            f"labels and predicted differ in length: {label_array.size} vs {predicted_array.size}"
        )
    flat_index = label_array * num_classes + predicted_array
    return np.bincount(flat_index, minlength=num_classes**2).reshape(num_classes, num_classes)


def rank_roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for tied scores; NaN when one class is absent."""
    positive_count = int(is_positive.sum())
    negative_count = is_positive.size - positive_count
    if positive_count == 0 or negative_count == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    average_rank = last_rank - (counts - 1) / 2.0
    positive_rank_sum = average_rank[inverse.ravel()][is_positive].sum()
    u_statistic = positive_rank_sum - positive_count * (positive_count + 1) / 2.0
    return float(u_statistic / (positive_count * negative_count))


def to_jsonable(value: Any) -> Any:
    """Copy ``value`` with NaN/inf -> None and NumPy scalars/arrays -> plain Python values."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
