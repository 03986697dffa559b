"""cnnlab.metrics and cnnlab.metrics.multiclass checked against scikit-learn / SciPy oracles."""

import json
import math
import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics as skm

from cnnlab import metrics
from cnnlab.metrics import multiclass as mc

SEEDS = [0, 1, 2, 3, 4]


def binary_sample(seed, size=200, tied=False):
    """Random labels and probabilities correlated with them; ``tied`` rounds to a coarse grid."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=size)
    probabilities = np.clip(0.5 + 0.25 * (labels - 0.5) + rng.normal(0.0, 0.25, size), 0, 1)
    if tied:
        probabilities = np.round(probabilities, 1)  # many exact ties, exact 0s/1s and 0.5s
    return labels, probabilities


def multiclass_sample(seed, size=300, num_classes=5, tied=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=size)
    logits = rng.normal(0.0, 1.0, (size, num_classes))
    logits[np.arange(size), labels] += 1.0
    if tied:
        logits = np.round(logits)  # equal logits give exactly equal softmax outputs
    probabilities = np.exp(logits)
    return labels, probabilities / probabilities.sum(axis=1, keepdims=True)


def sklearn_quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# ----------------------------------------------------------------------------- binary
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_binary_metrics_match_sklearn_and_scipy(seed, tied):
    labels, probabilities = binary_sample(seed, tied=tied)
    np.testing.assert_allclose(metrics.mean_squared_error(labels, probabilities),
                               skm.mean_squared_error(labels, probabilities), rtol=1e-12)
    eps = metrics.DEFAULT_LOG_LOSS_EPS
    np.testing.assert_allclose(
        metrics.log_loss(labels, probabilities),
        skm.log_loss(labels, np.clip(probabilities, eps, 1 - eps), labels=[0, 1]), rtol=1e-10)
    np.testing.assert_allclose(metrics.pearson_correlation(labels, probabilities),
                               scipy.stats.pearsonr(labels, probabilities).statistic, rtol=1e-10)
    np.testing.assert_allclose(metrics.roc_auc(labels, probabilities),
                               skm.roc_auc_score(labels, probabilities), rtol=1e-12)
    for threshold in (0.1, 0.3, 0.5, 0.7):
        predicted = (probabilities > threshold).astype(int)
        np.testing.assert_allclose(metrics.accuracy_at(labels, probabilities, threshold),
                                   skm.accuracy_score(labels, predicted), rtol=1e-12)
        np.testing.assert_allclose(metrics.balanced_accuracy_at(labels, probabilities, threshold),
                                   skm.balanced_accuracy_score(labels, predicted), rtol=1e-12)


def test_threshold_rule_is_strictly_greater():
    labels = np.array([1, 0, 1])
    probabilities = np.array([0.5, 0.5, 0.9])  # the two 0.5s are predicted as class 0
    np.testing.assert_allclose(metrics.accuracy_at(labels, probabilities, 0.5), 2 / 3)
    np.testing.assert_allclose(metrics.accuracy_at(labels, probabilities, 0.4999), 2 / 3)
    np.testing.assert_allclose(metrics.accuracy_at(labels, [0.6, 0.4, 0.9], 0.5), 1.0)


def test_roc_auc_counts_ties_as_half():
    np.testing.assert_allclose(metrics.roc_auc([0, 1], [0.3, 0.3]), 0.5)
    np.testing.assert_allclose(metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]), 0.875)


def test_log_loss_clips_zero_and_one_like_sklearn():
    labels, probabilities = np.array([1, 0, 1, 0]), np.array([0.0, 1.0, 1.0, 0.0])
    eps = 1e-7
    value = metrics.log_loss(labels, probabilities, eps=eps)
    assert math.isfinite(value)
    np.testing.assert_allclose(value, -np.log(eps) / 2, rtol=1e-6)


@pytest.mark.parametrize("only_class", [0, 1])
def test_one_class_edge_case(only_class):
    rng = np.random.default_rng(7)
    labels = np.full(50, only_class)
    probabilities = rng.uniform(0, 1, 50)
    assert math.isnan(metrics.roc_auc(labels, probabilities))
    assert math.isnan(metrics.pearson_correlation(labels, probabilities))
    assert math.isnan(sklearn_quiet(scipy.stats.pearsonr, labels, probabilities).statistic)
    predicted = (probabilities > 0.5).astype(int)
    np.testing.assert_allclose(metrics.balanced_accuracy_at(labels, probabilities),
                               sklearn_quiet(skm.balanced_accuracy_score, labels, predicted))
    assert math.isnan(metrics.binary_report(labels, probabilities)["roc_auc"])


def test_pearson_nan_for_constant_predictions():
    assert math.isnan(metrics.pearson_correlation([0, 1, 1, 0], [0.3, 0.3, 0.3, 0.3]))


@pytest.mark.parametrize("seed", SEEDS)
def test_best_over_thresholds_beats_every_grid_point(seed):
    labels, probabilities = binary_sample(seed, tied=seed % 2 == 0)
    best_accuracy, best_threshold = metrics.best_accuracy_over_thresholds(labels, probabilities)
    assert best_threshold in metrics.TUTORIAL_THRESHOLDS
    grid_accuracies = [skm.accuracy_score(labels, (probabilities > t).astype(int))
                       for t in metrics.TUTORIAL_THRESHOLDS]
    np.testing.assert_allclose(best_accuracy, max(grid_accuracies), rtol=1e-12)
    np.testing.assert_allclose(best_accuracy,
                               metrics.accuracy_at(labels, probabilities, best_threshold))


def test_best_over_thresholds_breaks_ties_toward_half():
    labels, probabilities = [0, 1], [0.05, 0.95]  # every grid threshold scores 1.0
    assert metrics.best_accuracy_over_thresholds(labels, probabilities) == (1.0, 0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_choose_threshold_is_optimal_on_its_own_set(seed):
    labels, probabilities = binary_sample(seed, tied=seed % 2 == 1)
    chosen = metrics.choose_threshold(labels, probabilities, rule="max")
    chosen_accuracy = metrics.accuracy_at(labels, probabilities, chosen)
    assert chosen_accuracy >= metrics.accuracy_at(labels, probabilities, 0.5)
    # Brute force over every distinct cut (and "predict all 1"): no threshold does better.
    cuts = np.concatenate(([-1.0], np.unique(probabilities)))
    oracle = max(skm.accuracy_score(labels, (probabilities > c).astype(int)) for c in cuts)
    np.testing.assert_allclose(chosen_accuracy, oracle, rtol=1e-12)


def test_choose_threshold_prefers_half_on_ties_and_moves_when_better():
    assert metrics.choose_threshold([0, 1], [0.1, 0.9], rule="max") == 0.5
    # All positives sit at 0.2-0.3: only a low threshold gets them right.
    labels, probabilities = [0, 0, 1, 1], [0.05, 0.1, 0.2, 0.3]
    chosen = metrics.choose_threshold(labels, probabilities, rule="max")
    np.testing.assert_allclose(chosen, 0.15)
    assert metrics.accuracy_at(labels, probabilities, chosen) == 1.0


@pytest.mark.parametrize("labels, probabilities, expected", [
    ([1, 1, 0, 1], [0.2, 0.3, 0.4, 0.6], 0.1),  # best is "all class 1": below the minimum
    ([0, 1, 0, 0], [0.6, 0.65, 0.7, 0.8], 0.9),  # best is "all class 0": above the maximum
])
def test_choose_threshold_reaches_all_one_class(labels, probabilities, expected):
    chosen = metrics.choose_threshold(labels, probabilities, rule="max")
    np.testing.assert_allclose(chosen, expected)
    np.testing.assert_allclose(metrics.accuracy_at(labels, probabilities, chosen), 0.75)


@pytest.mark.parametrize("seed", SEEDS)
def test_one_standard_error_rule_stays_within_noise_of_the_best_and_nearest_half(seed):
    labels, probabilities = binary_sample(seed, tied=seed % 2 == 1)
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    chosen = metrics.choose_threshold(labels, probabilities)
    best = metrics.accuracy_at(labels, probabilities, metrics.choose_threshold(labels, probabilities, rule="max"))
    error = np.sqrt(best * (1 - best) / labels.size)
    assert metrics.accuracy_at(labels, probabilities, chosen) >= best - error - 1e-12
    # Brute force with scikit-learn over the same candidates (0.5 and every midpoint between
    # distinct scores): the acceptable one nearest to 0.5 is the one chosen.
    distinct = np.unique(np.concatenate(([0.0], probabilities, [1.0])))
    candidates = np.unique(np.append((distinct[:-1] + distinct[1:]) / 2, 0.5))
    scores = np.array([skm.accuracy_score(labels, (probabilities > c).astype(int)) for c in candidates])
    acceptable = candidates[scores >= scores.max() - np.sqrt(scores.max() * (1 - scores.max()) / labels.size) - 1e-12]
    assert chosen == min(acceptable, key=lambda c: (abs(c - 0.5), c))


def test_one_standard_error_rule_keeps_half_for_noise_and_moves_for_miscalibration():
    generator = np.random.default_rng(0)
    labels = np.repeat([0, 1], 250)
    # Calibrated scores: the exact best cut is a little off 0.5 by chance; 0.5 is within noise.
    probabilities = np.clip(np.where(labels == 1, 0.7, 0.3) + generator.normal(0, 0.2, 500), 0, 1)
    assert metrics.choose_threshold(probabilities=probabilities, labels=labels, rule="max") != 0.5
    assert metrics.choose_threshold(labels, probabilities) == 0.5
    # Miscalibrated: every score below 0.5, the classes separated around 0.3: far beyond noise.
    shifted = np.where(labels == 1, 0.35, 0.25) + generator.uniform(-0.04, 0.04, 500)
    chosen = metrics.choose_threshold(labels, shifted)
    assert 0.28 < chosen < 0.32 and metrics.accuracy_at(labels, shifted, chosen) == 1.0
    with pytest.raises(ValueError, match="unknown threshold rule"):
        metrics.choose_threshold(labels, shifted, rule="best")


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(3)
    labels, predicted = rng.integers(0, 4, 100), rng.integers(0, 4, 100)
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, predicted, 6),
                                  skm.confusion_matrix(labels, predicted, labels=range(6)))


def test_binary_report_fields_and_validation_threshold():
    labels, probabilities = binary_sample(11)
    report = metrics.binary_report(labels, probabilities, threshold=0.35)
    np.testing.assert_allclose(report["accuracy_at_validation_threshold"],
                               skm.accuracy_score(labels, (probabilities > 0.35).astype(int)))
    assert report["validation_threshold"] == 0.35
    np.testing.assert_allclose(report["roc_auc"], skm.roc_auc_score(labels, probabilities))
    np.testing.assert_array_equal(report["confusion_matrix_at_0.5"],
                                  skm.confusion_matrix(labels, (probabilities > 0.5).astype(int)))
    assert "accuracy_at_validation_threshold" not in metrics.binary_report(labels, probabilities)
    json.dumps(report, allow_nan=False)  # plain Python values only


def test_to_jsonable_replaces_nan_and_numpy_values():
    report = metrics.binary_report(np.ones(10, dtype=int), np.linspace(0, 1, 10))
    with pytest.raises(ValueError):
        json.dumps(report, allow_nan=False)
    cleaned = metrics.to_jsonable(report)
    assert cleaned["roc_auc"] is None and cleaned["pearson_correlation"] is None
    assert metrics.to_jsonable({"a": np.float32(0.5), "b": np.arange(2), "c": (np.inf,)}) == {
        "a": 0.5, "b": [0, 1], "c": [None]}
    json.dumps(cleaned, allow_nan=False)


@pytest.mark.parametrize("bad_call, message", [
    (lambda: metrics.roc_auc([0, 1, 1], [0.2, 0.8]), "differ in length"),
    (lambda: metrics.mean_squared_error([0, 1], [0.2, 1.3]), r"\[0, 1\]"),
    (lambda: metrics.log_loss([0, 1], [-0.1, 0.5]), r"\[0, 1\]"),
    (lambda: metrics.accuracy_at([], []), "empty"),
    (lambda: metrics.pearson_correlation([0, 2], [0.1, 0.2]), r"\[0, 2\)"),
    (lambda: metrics.roc_auc([0, 0.5], [0.1, 0.2]), "whole-number"),
    (lambda: metrics.roc_auc([0, 1], [0.1, np.nan]), "NaN"),
    (lambda: metrics.accuracy_at([0, 1], [[0.1, 0.9], [0.2, 0.8]]), "shape"),
    (lambda: metrics.confusion_matrix([0, 1], [0, 1, 1], 2), "differ in length"),
    (lambda: metrics.best_accuracy_over_thresholds([0, 1], [0.1, 0.9], ()), "empty"),
    (lambda: mc.accuracy([0, 1], [[0.5, 0.6], [0.5, 0.5]]), "sum to 1"),
    (lambda: mc.accuracy([0, 3], [[0.5, 0.5], [0.5, 0.5]]), r"\[0, 2\)"),
    (lambda: mc.accuracy(np.zeros(0), np.zeros((0, 3))), "empty"),
    (lambda: mc.top_k_accuracy([0, 1], [[0.5, 0.5], [0.5, 0.5]], 3), "k must be"),
    (lambda: mc.multiclass_report([0, 1], [[0.5, 0.5], [0.5, 0.5]], ["a"]), "class_names"),
    (lambda: metrics.classification_report([0, 1], [0.2, 0.7], ["a", "b", "c"]), "2 class"),
])
def test_invalid_input_raises_value_error(bad_call, message):
    with pytest.raises(ValueError, match=message):
        bad_call()


# ----------------------------------------------------------------------------- multi-class
@pytest.mark.parametrize("num_classes", [2, 3, 7])
@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_metrics_match_sklearn(seed, num_classes):
    labels, probabilities = multiclass_sample(seed, num_classes=num_classes, tied=seed % 2 == 1)
    predicted = np.argmax(probabilities, axis=1)
    classes = list(range(num_classes))
    np.testing.assert_allclose(mc.accuracy(labels, probabilities),
                               skm.accuracy_score(labels, predicted), rtol=1e-12)
    np.testing.assert_allclose(mc.balanced_accuracy(labels, probabilities),
                               skm.balanced_accuracy_score(labels, predicted), rtol=1e-12)
    f1 = mc.f1_scores(labels, probabilities)
    np.testing.assert_allclose(f1["macro"], skm.f1_score(labels, predicted, average="macro"))
    np.testing.assert_allclose(f1["weighted"],
                               skm.f1_score(labels, predicted, average="weighted"))
    per_class = mc.precision_recall_per_class(labels, probabilities)
    precision, recall, f_score, support = sklearn_quiet(
        skm.precision_recall_fscore_support, labels, predicted, labels=classes)
    np.testing.assert_allclose(per_class["precision"], precision, rtol=1e-12)
    np.testing.assert_allclose(per_class["recall"], recall, rtol=1e-12)
    np.testing.assert_allclose(per_class["f1"], f_score, rtol=1e-12)
    np.testing.assert_array_equal(per_class["support"], support)
    np.testing.assert_array_equal(mc.confusion_matrix(labels, predicted, num_classes),
                                  skm.confusion_matrix(labels, predicted, labels=classes))
    oracle_auc = (skm.roc_auc_score(labels, probabilities[:, 1]) if num_classes == 2 else
                  skm.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    np.testing.assert_allclose(mc.one_vs_rest_roc_auc(labels, probabilities), oracle_auc,
                               rtol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_top_k_accuracy_matches_sklearn_without_ties(seed):
    labels, probabilities = multiclass_sample(seed, num_classes=6)
    for k in (1, 2, 4, 6):
        np.testing.assert_allclose(
            mc.top_k_accuracy(labels, probabilities, k),
            sklearn_quiet(skm.top_k_accuracy_score, labels, probabilities, k=k, labels=range(6)),
            rtol=1e-12)


def test_top_1_equals_argmax_accuracy_with_ties():
    labels, probabilities = multiclass_sample(5, num_classes=4, tied=True)
    assert np.any(probabilities.max(axis=1, keepdims=True) == np.sort(probabilities)[:, -2:-1])
    assert mc.top_k_accuracy(labels, probabilities, 1) == mc.accuracy(labels, probabilities)


def test_multiclass_with_absent_classes_averages_over_present_ones():
    rng = np.random.default_rng(9)
    labels, probabilities = multiclass_sample(9, num_classes=5)
    labels = np.where(labels == 4, rng.integers(0, 3, labels.size), labels)  # class 4 absent
    predicted = np.argmax(probabilities, axis=1)
    np.testing.assert_allclose(mc.balanced_accuracy(labels, probabilities),
                               sklearn_quiet(skm.balanced_accuracy_score, labels, predicted))
    np.testing.assert_allclose(mc.f1_scores(labels, probabilities)["macro"],
                               sklearn_quiet(skm.f1_score, labels, predicted, average="macro"))
    per_class_auc = [skm.roc_auc_score(labels == c, probabilities[:, c]) for c in range(4)]
    np.testing.assert_allclose(mc.one_vs_rest_roc_auc(labels, probabilities),
                               np.mean(per_class_auc), rtol=1e-10)
    assert math.isnan(mc.one_vs_rest_roc_auc(np.zeros(5, int), probabilities[:5]))


def test_classification_report_dispatches_binary_and_multiclass():
    labels, probabilities = binary_sample(2)
    binary = metrics.classification_report(labels, probabilities[:, None], ["dog", "cat"],
                                           threshold=0.4)
    assert binary["task"] == "binary"
    predicted = (probabilities > 0.5).astype(int)
    np.testing.assert_allclose(binary["accuracy"], skm.accuracy_score(labels, predicted))
    np.testing.assert_allclose(binary["balanced_accuracy"],
                               skm.balanced_accuracy_score(labels, predicted))
    np.testing.assert_array_equal(binary["confusion_matrix"],
                                  skm.confusion_matrix(labels, predicted))
    np.testing.assert_allclose(binary["accuracy_at_validation_threshold"],
                               skm.accuracy_score(labels, (probabilities > 0.4).astype(int)))
    assert [entry["name"] for entry in binary["per_class"]] == ["dog", "cat"]

    labels, probabilities = multiclass_sample(4, num_classes=3)
    report = metrics.classification_report(labels, probabilities, ["a", "b", "c"])
    assert report["task"] == "multiclass" and report["num_classes"] == 3
    np.testing.assert_allclose(report["accuracy"],
                               skm.accuracy_score(labels, probabilities.argmax(axis=1)))
    np.testing.assert_allclose(report["top_k_accuracy"]["2"],
                               skm.top_k_accuracy_score(labels, probabilities, k=2))
    json.dumps(metrics.to_jsonable(report), allow_nan=False)
    with pytest.raises(ValueError, match="binary"):
        metrics.classification_report(labels, probabilities, ["a", "b", "c"], threshold=0.5)
