"""Classification metrics in pure NumPy, each tested against scikit-learn and SciPy.

core: input checks, confusion matrix, rank AUC, JSON output (the conventions are written there);
binary: two-class metrics on P(class 1); multiclass: N-class metrics on (n, N) probability rows.
``classification_report`` is the one entry point: it picks the kind from the shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.errors import UserError
from cnnlab.metrics.binary import (  # noqa: F401  (re-exported: cnnlab.metrics offers the binary metrics)
    THRESHOLD_CHOICE_RULES,
    accuracy_at,
    balanced_accuracy_at,
    best_accuracy_over_thresholds,
    binary_report,
    choose_threshold,
    log_loss,
    mean_squared_error,
    pearson_correlation,
    predict_at,
    roc_auc,
)
from cnnlab.metrics.core import (  # noqa: F401
    DEFAULT_LOG_LOSS_EPS,
    THRESHOLD_RULE,
    TUTORIAL_THRESHOLDS,
    confusion_matrix,
    rank_roc_auc,
    to_jsonable,
    validate_binary_inputs,
    validate_class_labels,
    validate_probability_values,
)
from cnnlab.metrics.multiclass import multiclass_report


def classification_report(labels: Any, probabilities: Any, class_names: Any,
                          threshold: float | None = None) -> dict:
    """One entry point: shape (n,) or (n, 1) -> binary report, shape (n, N) -> multi-class.

    The binary report also carries the multi-class fields (accuracy, balanced accuracy,
    confusion matrix, F1, per-class scores) computed from ``[1 - p, p]``, i.e. at 0.5, so
    binary and multi-class runs can be compared field by field.
    """
    names = [str(name) for name in class_names]
    probability_array = np.asarray(probabilities, dtype=np.float64)
    if probability_array.ndim == 1 or probability_array.shape[1:] == (1,):
        if len(names) != 2:
            raise UserError(
                f"one probability per example means a binary task, which needs 2 class "
                f"names (class 0 first), got {len(names)}: {names}"
            )
        label_array, positive = validate_binary_inputs(labels, probability_array)
        report = binary_report(label_array, positive, threshold)
        two_column = np.stack([1.0 - positive, positive], axis=1)
        multiclass_fields = multiclass_report(label_array, two_column, names)
        for key, value in multiclass_fields.items():
            report.setdefault(key, value)
        return report
    if threshold is not None:
        raise UserError("threshold applies only to binary tasks (one probability per example)")
    return multiclass_report(labels, probability_array, names)
