"""Multi-class metrics (pure NumPy); nothing here assumes two classes.

Inputs: ``labels`` are class indices in [0, N); ``probabilities`` has shape (n, N) with rows
summing to 1 (softmax outputs).  The predicted class is the row's argmax, the lowest index
winning a tie, so with N = 2 and ``[1 - p, p]`` it agrees with the binary rule ``p > 0.5``.

Averaging follows scikit-learn's defaults: F1 averages run over the classes that occur in
the labels or the predictions; balanced accuracy averages recall over the classes that occur
in the labels; one-vs-rest AUC averages over the classes present in the labels (a class with
no examples has no defined AUC).  Undefined per-class precision/recall are 0, as sklearn's
``zero_division`` default reports them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.errors import UserError
from cnnlab.metrics.core import (
    confusion_matrix,
    rank_roc_auc,
    validate_class_labels,
    validate_probability_values,
)

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "f1_scores",
    "multiclass_report",
    "one_vs_rest_roc_auc",
    "precision_recall_per_class",
    "top_k_accuracy",
    "validate_multiclass_inputs",
]

# Softmax outputs in float32 can miss 1 by ~1e-6 per row; anything further off is not a
# probability distribution (e.g. independent sigmoids or logits).
ROW_SUM_TOLERANCE = 1e-3


def validate_multiclass_inputs(labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check shape (n, N) probabilities with rows summing to 1 and labels in [0, N)."""
    probability_array = np.asarray(probabilities, dtype=np.float64)
    if probability_array.ndim != 2 or probability_array.shape[1] < 2:
        raise UserError(
            "multi-class metrics need probabilities of shape (n, N) with N >= 2 columns, "
            f"got shape {probability_array.shape}"
        )
    if probability_array.shape[0] == 0:
        raise UserError("probabilities is empty: metrics need at least one example")
    num_classes = probability_array.shape[1]
    label_array = validate_class_labels(labels, num_classes)
    if label_array.shape[0] != probability_array.shape[0]:
        raise UserError(
            f"labels and probabilities differ in length: {label_array.shape[0]} labels vs "
            f"{probability_array.shape[0]} probability rows"
        )
    validate_probability_values(probability_array)
    row_sums = probability_array.sum(axis=1)
    worst_row = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst_row] - 1.0) > ROW_SUM_TOLERANCE:
        raise UserError(
            f"each probability row must sum to 1 (softmax output); row {worst_row} sums to "
            f"{row_sums[worst_row]:g}"
        )
    return label_array, probability_array


def _confusion(labels: Any, probabilities: Any) -> np.ndarray:
    label_array, probability_array = validate_multiclass_inputs(labels, probabilities)
    predicted = np.argmax(probability_array, axis=1)
    return confusion_matrix(label_array, predicted, probability_array.shape[1])


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0 where the denominator is 0 (sklearn's zero_division)."""
    numerator = numerator.astype(np.float64)
    result = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def accuracy(labels: Any, probabilities: Any) -> float:
    """Fraction of examples whose argmax class equals the label."""
    counts = _confusion(labels, probabilities)
    return float(np.trace(counts) / counts.sum())


def balanced_accuracy(labels: Any, probabilities: Any) -> float:
    """Mean recall over the classes present in ``labels``."""
    counts = _confusion(labels, probabilities)
    support = counts.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(counts)[present] / support[present]))


def precision_recall_per_class(labels: Any, probabilities: Any) -> dict[str, list]:
    """Per-class precision, recall, F1 and support (true count), one entry per column."""
    counts = _confusion(labels, probabilities)
    true_positive = np.diag(counts)
    predicted_count = counts.sum(axis=0)
    support = counts.sum(axis=1)
    return {
        "precision": _safe_ratio(true_positive, predicted_count).tolist(),
        "recall": _safe_ratio(true_positive, support).tolist(),
        # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and stays defined when P + R = 0.
        "f1": _safe_ratio(2 * true_positive, predicted_count + support).tolist(),
        "support": support.tolist(),
    }


def f1_scores(labels: Any, probabilities: Any) -> dict[str, float]:
    """Macro F1 (plain mean) and weighted F1 (weighted by support) over classes that occur."""
    counts = _confusion(labels, probabilities)
    true_positive = np.diag(counts)
    predicted_count = counts.sum(axis=0)
    support = counts.sum(axis=1)
    occurring = (support + predicted_count) > 0
    per_class = _safe_ratio(2 * true_positive, predicted_count + support)[occurring]
    return {
        "macro": float(np.mean(per_class)),
        "weighted": float(np.average(per_class, weights=support[occurring])),
    }


def top_k_accuracy(labels: Any, probabilities: Any, k: int) -> float:
    """Fraction of examples whose label is among the k highest-probability classes.

    Tied probabilities rank the lower class index first, so ``k=1`` equals ``accuracy``.
    (scikit-learn ranks ties the other way; the two agree whenever there are no ties.)
    """
    label_array, probability_array = validate_multiclass_inputs(labels, probabilities)
    num_classes = probability_array.shape[1]
    if int(k) != k or not 1 <= k <= num_classes:
        raise UserError(f"k must be an integer in [1, {num_classes}], got {k!r}")
    ranking = np.argsort(-probability_array, axis=1, kind="stable")[:, : int(k)]
    return float(np.mean(np.any(ranking == label_array[:, None], axis=1)))


def one_vs_rest_roc_auc(labels: Any, probabilities: Any) -> float:
    """Macro mean of each present class's AUC against the rest; NaN if fewer than 2 present.

    Matches ``roc_auc_score(labels, probabilities, multi_class='ovr', average='macro')``
    when every class occurs in ``labels``.  With two columns it is the binary AUC of column 1,
    as in sklearn: both one-vs-rest AUCs are equal then, up to rounding in ``1 - p``.
    """
    label_array, probability_array = validate_multiclass_inputs(labels, probabilities)
    present = np.unique(label_array)
    if present.size < 2:
        return float("nan")
    if probability_array.shape[1] == 2:
        return rank_roc_auc(label_array == 1, probability_array[:, 1])
    per_class = [rank_roc_auc(label_array == c, probability_array[:, c]) for c in present]
    return float(np.mean(per_class))


def multiclass_report(labels: Any, probabilities: Any, class_names: Any) -> dict:
    """All multi-class metrics as plain Python values, per-class entries named."""
    label_array, probability_array = validate_multiclass_inputs(labels, probabilities)
    num_classes = probability_array.shape[1]
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise UserError(
            f"class_names has {len(names)} names but probabilities has {num_classes} columns"
        )
    per_class = precision_recall_per_class(label_array, probability_array)
    f1 = f1_scores(label_array, probability_array)
    return {
        "task": "multiclass",
        "num_examples": int(label_array.size),
        "num_classes": num_classes,
        "class_names": names,
        "accuracy": accuracy(label_array, probability_array),
        "balanced_accuracy": balanced_accuracy(label_array, probability_array),
        "f1_macro": f1["macro"],
        "f1_weighted": f1["weighted"],
        "top_k_accuracy": {
            str(k): top_k_accuracy(label_array, probability_array, k)
            for k in (2, 3, 5) if k < num_classes
        },
        "one_vs_rest_roc_auc": one_vs_rest_roc_auc(label_array, probability_array),
        "confusion_matrix": _confusion(label_array, probability_array).tolist(),
        "per_class": [
            {
                "name": names[index],
                "precision": per_class["precision"][index],
                "recall": per_class["recall"][index],
                "f1": per_class["f1"][index],
                "support": per_class["support"][index],
            }
            for index in range(num_classes)
        ],
    }
