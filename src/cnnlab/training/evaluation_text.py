"""What `cnnlab train` and `cnnlab evaluate` print: the binary table for two-class runs, and for
N-class runs the metrics that apply to them (the binary columns - MSE, Pearson, thresholds - would
all read '-' there): accuracy, balanced accuracy, macro/weighted F1, top-k accuracy, one-vs-rest
ROC AUC, then per split every class's precision, recall, F1 and support and the N x N confusion
matrix, so no class is hidden."""

from __future__ import annotations

from cnnlab.published import PUBLISHED


def _number(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def is_multiclass(result: dict) -> bool:
    return any(report.get("task") == "multiclass" for report in result.get("splits", {}).values())


def format_evaluation(result: dict) -> str:
    """The evaluation of one run as text; two-class runs keep the tutorial-style table."""
    if not is_multiclass(result):
        return format_binary(result)
    return format_multiclass(result)


def format_multiclass(result: dict) -> str:
    classes = [str(name) for name in result.get("classes", [])]
    lines = [f"{result['model']} ({result['parameters']:,} parameters, {result['model_file_megabytes']} MB, "
             f"trained {result['training_seconds']} s, best epoch {result['best_epoch']}/{result['epochs_done']}), "
             f"{len(classes)} classes: {', '.join(classes)}"]
    splits = result["splits"]
    top_k = sorted({k for report in splits.values() for k in report.get("top_k_accuracy", {})}, key=int)
    lines.append(f"{'split':6} {'n':>5} {'accuracy':>8} {'balanced':>8} {'F1 macro':>8} {'F1 wtd':>8} "
                 + "".join(f"{'top-' + k:>7}" for k in top_k) + f" {'AUC ovr':>7}")
    for split, report in splits.items():
        lines.append(f"{split:6} {report.get('num_examples', '-'):>5} {_number(report.get('accuracy')):>8} "
                     f"{_number(report.get('balanced_accuracy')):>8} {_number(report.get('f1_macro')):>8} "
                     f"{_number(report.get('f1_weighted')):>8} "
                     + "".join(f"{_number(report.get('top_k_accuracy', {}).get(k)):>7}" for k in top_k)
                     + f" {_number(report.get('one_vs_rest_roc_auc')):>7}")
    for split, report in splits.items():
        lines += ["", *per_class_lines(split, report), *confusion_lines(report)]
    lines.append("")
    lines.append("the label is the most probable class; AUC ovr is the mean of each class's ROC AUC against the rest")
    return "\n".join(lines)


def per_class_lines(split: str, report: dict) -> list[str]:
    rows = report.get("per_class", [])
    width = max([5, *(len(row["name"]) for row in rows)])
    lines = [f"{split}: per class", f"  {'class':<{width}} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>7}"]
    for row in rows:
        lines.append(f"  {row['name']:<{width}} {_number(row['precision']):>9} {_number(row['recall']):>7} "
                     f"{_number(row['f1']):>6} {row['support']:>7}")
    return lines


def confusion_lines(report: dict) -> list[str]:
    """The confusion matrix with true classes as rows and predicted classes as columns."""
    names = [str(name) for name in report.get("class_names", [])]
    matrix = report.get("confusion_matrix")
    if not matrix or len(matrix) != len(names):
        return []
    width = max([6, *(len(name) for name in names), *(len(str(value)) for row in matrix for value in row)])
    lines = ["  confusion (rows: true class, columns: predicted class)",
             "  " + " " * width + "".join(f" {name:>{width}}" for name in names)]
    for name, row in zip(names, matrix):
        lines.append(f"  {name:<{width}}" + "".join(f" {value:>{width}}" for value in row))
    return lines


def format_binary(result: dict) -> str:
    # The tutorial's optimistic best-of-thresholds figure is shown for the tutorial's own models only.
    tutorial = result.get("model") in PUBLISHED
    lines = [f"{result['model']} ({result['parameters']:,} parameters, {result['model_file_megabytes']} MB, "
             f"trained {result['training_seconds']} s, best epoch {result['best_epoch']}/{result['epochs_done']})"]
    header = (f"{'split':6} {'n':>5} {'MSE':>6} {'logloss':>7} {'Pearson':>7} {'AUC':>6} {'acc@0.5':>7} {'bal@0.5':>7} "
              + (f"{'tut.best':>8} " if tutorial else "") + f"{'acc@val-thr':>11}")
    lines.append(header)
    for split, report in result["splits"].items():
        def number(key, digits=3):
            value = report.get(key)
            return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"
        lines.append(
            f"{split:6} {report.get('num_examples', '-'):>5} {number('mean_squared_error'):>6} {number('log_loss'):>7} "
            f"{number('pearson_correlation'):>7} {number('roc_auc'):>6} {number('accuracy_at_0.5'):>7} "
            f"{number('balanced_accuracy_at_0.5'):>7} " + (f"{number('tutorial_best_accuracy'):>8} " if tutorial else "")
            + f"{number('accuracy_at_validation_threshold'):>11}"
        )
    if result.get("validation_threshold") is not None:
        lines.append(f"threshold chosen on validation: {result['validation_threshold']:.3f}"
                     + ("; 'tut.best' is the tutorial's best of thresholds 0.1..0.9 picked on the same split (optimistic)"
                        if tutorial else ", applied unchanged to test (acc@val-thr)"))
    return "\n".join(lines)
