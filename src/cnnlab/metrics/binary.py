"""Binary classification metrics (pure NumPy): MSE, log loss, Pearson, AUC, accuracies at a
threshold, the tutorial's best-of-thresholds accuracy and the validation threshold choice."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnlab.errors import UserError
from cnnlab.metrics.core import (
    DEFAULT_LOG_LOSS_EPS,
    THRESHOLD_RULE,
    TUTORIAL_THRESHOLDS,
    confusion_matrix,
    rank_roc_auc,
    validate_binary_inputs,
)


def mean_squared_error(labels: Any, probabilities: Any) -> float:
    """Mean of (label - probability)^2, the tutorial's first metric (a Brier score)."""
    label_array, probability_array = validate_binary_inputs(labels, probabilities)
    return float(np.mean((label_array - probability_array) ** 2))


def log_loss(labels: Any, probabilities: Any, eps: float = DEFAULT_LOG_LOSS_EPS) -> float:
    """Binary cross-entropy; probabilities are clipped to [eps, 1 - eps] so 0 and 1 stay finite."""
    if not 0.0 < eps < 0.5:
        raise UserError(f"eps must lie in (0, 0.5), got {eps!r}")
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
        raise UserError(f"threshold must be a finite number, got {threshold!r}")
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
        raise UserError("thresholds is empty: give at least one threshold")
    return _pick_best(grid, _accuracies_for_thresholds(label_array, probability_array, grid))


THRESHOLD_CHOICE_RULES = ("one_standard_error", "max")


def choose_threshold(labels: Any, probabilities: Any, rule: str = "one_standard_error") -> float:
    """Threshold chosen on (validation) data, to apply unchanged to test.

    Candidates are 0.5 and the midpoints between consecutive distinct probabilities (with
    0 and 1 added as ends, so "all class 1" and "all class 0" are reachable).
    rule 'max': the candidate with the highest accuracy; ties go to the one closest to 0.5,
    then to the smaller one. It overfits a small validation set: the exact maximum over
    hundreds of cut points is partly noise (benchmarks/modern_recipe.py, per seed: a resnet9 seed
    lost 2.7 test points to a threshold of 500 validation photos picked this way).
    rule 'one_standard_error' (default; Breiman's one-standard-error rule): of the candidates
    whose accuracy is within one binomial standard error sqrt(a(1 - a) / n) of the best a, the
    one closest to 0.5 (then the smaller). A threshold moves away from 0.5 only when the
    validation data show it is better by more than noise, as for a miscalibrated model.
    """
    if rule not in THRESHOLD_CHOICE_RULES:
        raise UserError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLD_CHOICE_RULES)}")
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
