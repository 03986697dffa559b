"""Binary classification metrics, shared helpers and the report entry point (pure NumPy).

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

Multi-class metrics live in ``cnnlab.metrics_multiclass``; ``classification_report`` here
dispatches to either kind.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

TUTORIAL_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
THRESHOLD_RULE = "predict class 1 when probability > threshold"
DEFAULT_LOG_LOSS_EPS = 1e-7


def validate_class_labels(labels: Any, num_classes: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array, checking every value is an integer in [0, N)."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.ravel()
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: metrics need at least one example")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric class indices, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise ValueError(f"{name} must hold whole-number class indices (e.g. 0 and 1)")
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
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
        raise ValueError(
            "binary metrics need one probability of class 1 per example, shape (n,) or "
            f"(n, 1); got shape {probability_array.shape}"
        )
    if probability_array.shape[0] != label_array.shape[0]:
        raise ValueError(
            f"labels and probabilities differ in length: {label_array.shape[0]} labels vs "
            f"{probability_array.shape[0]} probabilities"
        )
    validate_probability_values(probability_array)
    return label_array, probability_array


def validate_probability_values(probability_array: np.ndarray) -> None:
    """Reject NaN/inf and values outside [0, 1] (e.g. logits passed by mistake)."""
    if not np.all(np.isfinite(probability_array)):
        raise ValueError("probabilities contain NaN or infinite values")
    if probability_array.min() < 0.0 or probability_array.max() > 1.0:
        raise ValueError(
            f"probabilities must lie in [0, 1], found values from {probability_array.min():g} "
            f"to {probability_array.max():g} (pass sigmoid/softmax outputs, not logits)"
        )


def confusion_matrix(labels: Any, predicted: Any, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows = true class, columns = predicted class."""
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    label_array = validate_class_labels(labels, num_classes, "labels")
    predicted_array = validate_class_labels(predicted, num_classes, "predicted")
    if label_array.shape != predicted_array.shape:
        raise ValueError(
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


def mean_squared_error(labels: Any, probabilities: Any) -> float:
    """Mean of (label - probability)^2, the tutorial's first metric (a Brier score)."""
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    return float(np.mean((label_array - probability_array) ** 2))


def log_loss(labels: Any, probabilities: Any, eps: float = DEFAULT_LOG_LOSS_EPS) -> float:
    """Binary cross-entropy; probabilities are clipped to [eps, 1 - eps] so 0 and 1 stay finite."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps!r}")
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    clipped = np.clip(probability_array, eps, 1.0 - eps)
    losses = np.where(label_array == 1, -np.log(clipped), -np.log1p(-clipped))
    return float(np.mean(losses))


def pearson_correlation(labels: Any, probabilities: Any) -> float:
    """Pearson r between labels and probabilities, as the tutorial reports.

    Returns NaN when either side is constant (one class only, or identical predictions):
    the correlation is then undefined, exactly as ``scipy.stats.pearsonr`` reports.
    """
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    # Test constancy exactly: a computed standard deviation can be a tiny non-zero residue.
    if np.all(label_array == label_array[0]) or np.all(probability_array == probability_array[0]):
        return float("nan")
    label_centered = label_array - label_array.mean()
    probability_centered = probability_array - probability_array.mean()
    denominator = np.linalg.norm(label_centered) * np.linalg.norm(probability_centered)
    correlation = float(np.dot(label_centered, probability_centered) / denominator)
    return max(-1.0, min(1.0, correlation))


def roc_auc(labels: Any, probabilities: Any) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    return rank_roc_auc(label_array == 1, probability_array)


def predict_at(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Hard 0/1 predictions under the module's rule: class 1 when probability > threshold."""
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return (probabilities > threshold).astype(np.int64)


def accuracy_at(labels: Any, probabilities: Any, threshold: float = 0.5) -> float:
    """Fraction correct when predicting class 1 for probability > threshold."""
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    return float(np.mean(predict_at(probability_array, threshold) == label_array))


def balanced_accuracy_at(labels: Any, probabilities: Any, threshold: float = 0.5) -> float:
    """Mean recall over the classes present in ``labels`` (one class: that class's recall)."""
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    predicted = predict_at(probability_array, threshold)
    recalls = [np.mean(predicted[label_array == c] == c) for c in np.unique(label_array)]
    return float(np.mean(recalls))


def _accuracies_for_thresholds(label_array: np.ndarray, probability_array: np.ndarray,
                               thresholds: np.ndarray) -> np.ndarray:
    """Accuracy at every threshold in O((n + t) log n) via sorted counts."""
    positives = np.sort(probability_array[label_array == 1])
    negatives = np.sort(probability_array[label_array == 0])
    # Positives are right when p > t; negatives are right when p <= t.
    positives_right = positives.size - np.searchsorted(positives, thresholds, side="right")
    negatives_right = np.searchsorted(negatives, thresholds, side="right")
    return (positives_right + negatives_right) / label_array.size


def _pick_best(thresholds: np.ndarray, accuracies: np.ndarray) -> tuple[float, float]:
    """Highest accuracy; ties go to the threshold closest to 0.5, then to the smaller one."""
    best = accuracies.max()
    tied = thresholds[np.isclose(accuracies, best, rtol=0.0, atol=1e-12)]
    order = np.lexsort((tied, np.abs(tied - 0.5)))
    return float(best), float(tied[order[0]])


def best_accuracy_over_thresholds(labels: Any, probabilities: Any,
                                  thresholds: tuple[float, ...] = TUTORIAL_THRESHOLDS
                                  ) -> tuple[float, float]:
    """The tutorial's figure: best (accuracy, threshold) over a grid, scored on the same set.

    Optimistic by construction because the threshold is tuned on the data it is scored on;
    use ``choose_threshold`` on validation data and ``accuracy_at`` on test data instead.
    """
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    grid = np.asarray(thresholds, dtype=np.float64).ravel()
    if grid.size == 0:
        raise ValueError("thresholds is empty: give at least one threshold")
    return _pick_best(grid, _accuracies_for_thresholds(label_array, probability_array, grid))


THRESHOLD_CHOICE_RULES = ("one_standard_error", "max")


def choose_threshold(labels: Any, probabilities: Any, rule: str = "one_standard_error") -> float:
    """Threshold chosen on (validation) data, to apply unchanged to test.

    Candidates are 0.5 and the midpoints between consecutive distinct probabilities (with
    0 and 1 added as ends, so "all class 1" and "all class 0" are reachable).
    rule 'max': the candidate with the highest accuracy; ties go to the one closest to 0.5,
    then to the smaller one. It overfits a small validation set: the exact maximum over
    hundreds of cut points is partly noise (measured: a resnet9 seed lost 2.7 test points to a
    threshold of 500 validation photos picked this way).
    rule 'one_standard_error' (default; Breiman's one-standard-error rule): of the candidates
    whose accuracy is within one binomial standard error sqrt(a(1 - a) / n) of the best a, the
    one closest to 0.5 (then the smaller). A threshold moves away from 0.5 only when the
    validation data show it is better by more than noise, as for a miscalibrated model.
    """
    if rule not in THRESHOLD_CHOICE_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLD_CHOICE_RULES)}")
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    distinct = np.unique(np.concatenate(([0.0], probability_array, [1.0])))
    candidates = np.unique(np.append((distinct[:-1] + distinct[1:]) / 2.0, 0.5))
    accuracies = _accuracies_for_thresholds(label_array, probability_array, candidates)
    if rule == "max":
        return _pick_best(candidates, accuracies)[1]
    best = accuracies.max()
    standard_error = np.sqrt(best * (1.0 - best) / label_array.size)
    close = candidates[accuracies >= best - standard_error - 1e-12]
    order = np.lexsort((close, np.abs(close - 0.5)))
    return float(close[order[0]])


def binary_report(labels: Any, probabilities: Any, threshold: float | None = None) -> dict:
    """All binary metrics as plain Python values; pass ``threshold`` chosen on validation."""
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    best_accuracy, best_threshold = best_accuracy_over_thresholds(label_array, probability_array)
    report = {
        "task": "binary",
        "threshold_rule": THRESHOLD_RULE,
        "num_examples": int(label_array.size),
        "num_positive": int(label_array.sum()),
        "num_negative": int(label_array.size - label_array.sum()),
        "mean_squared_error": mean_squared_error(label_array, probability_array),
        "log_loss": log_loss(label_array, probability_array),
        "pearson_correlation": pearson_correlation(label_array, probability_array),
        "roc_auc": roc_auc(label_array, probability_array),
        "accuracy_at_0.5": accuracy_at(label_array, probability_array, 0.5),
        "balanced_accuracy_at_0.5": balanced_accuracy_at(label_array, probability_array, 0.5),
        "confusion_matrix_at_0.5": confusion_matrix(
            label_array, predict_at(probability_array, 0.5), 2).tolist(),
        "tutorial_best_accuracy": best_accuracy,
        "tutorial_best_threshold": best_threshold,
        "tutorial_thresholds": list(TUTORIAL_THRESHOLDS),
    }
    if threshold is not None:
        report["validation_threshold"] = threshold = float(threshold)
        report["accuracy_at_validation_threshold"] = accuracy_at(
            label_array, probability_array, threshold)
        report["balanced_accuracy_at_validation_threshold"] = balanced_accuracy_at(
            label_array, probability_array, threshold)
    return report


def classification_report(labels: Any, probabilities: Any, class_names: Any,
                          threshold: float | None = None) -> dict:
    """One entry point: shape (n,) or (n, 1) -> binary report, shape (n, N) -> multi-class.

    The binary report also carries the multi-class fields (accuracy, balanced accuracy,
    confusion matrix, F1, per-class scores) computed from ``[1 - p, p]``, i.e. at 0.5, so
    binary and multi-class runs can be compared field by field.
    """
    # Imported here because cnnlab.metrics_multiclass builds on this module's helpers.
    from cnnlab import metrics_multiclass

    names = [str(name) for name in class_names]
    probability_array = np.asarray(probabilities, dtype=np.float64)
    if probability_array.ndim == 1 or probability_array.shape[1:] == (1,):
        if len(names) != 2:
            raise ValueError(
                f"one probability per example means a binary task, which needs 2 class "
                f"names (class 0 first), got {len(names)}: {names}"
            )
        label_array, positive = validate_binary_inputs(labels, probability_array)
        report = binary_report(label_array, positive, threshold)
        two_column = np.stack([1.0 - positive, positive], axis=1)
        multiclass_fields = metrics_multiclass.multiclass_report(label_array, two_column, names)
        for key, value in multiclass_fields.items():
            report.setdefault(key, value)
        return report
    if threshold is not None:
        raise ValueError("threshold applies only to binary tasks (one probability per example)")
    return metrics_multiclass.multiclass_report(labels, probability_array, names)


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
