"""The report's metrics table: the reproduction's table rows (results_table) as HTML, the
tutorial's published figures in their own shaded columns beside ours."""

from __future__ import annotations

import math

from cnnlab.metrics.multiclass import precision_recall_per_class
from cnnlab.progress import format_duration
from cnnlab.report import html
from cnnlab.report.collect import SPLIT, RunData
from cnnlab.report.results_table import reading, table_rows

HEADERS = ["model", "parameters", "epochs", "training time", "val MSE", "tutorial MSE", "val Pearson",
           "tutorial Pearson", "val AUC", "val accuracy", "val best-threshold accuracy", "tutorial accuracy",
           "test accuracy (threshold from val)"]
PUBLISHED_COLUMNS = {"tutorial MSE", "tutorial Pearson", "tutorial accuracy"}


def _number(value, digits: int = 3) -> str | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return f"{value:.{digits}f}"


def _duration(seconds) -> str | None:
    return format_duration(seconds) if isinstance(seconds, (int, float)) else None


def evaluation_of(run: RunData) -> dict:
    """The run's evaluation, or the little that is known without one (so the table names it)."""
    if run.evaluation is not None:
        return {**run.evaluation, "model": run.model}
    return {"model": run.model, "parameters": run.config.get("parameters"), "splits": {},
            "epochs_done": len(run.history) or None}


def metrics_section_body(runs: list[RunData], extra_results=()) -> str:
    evaluations = [evaluation_of(run) for run in runs] + list(extra_results)
    rows = table_rows(evaluations)  # looks the published figures up by model name
    names = [run.name for run in runs] + [result.get("model") for result in extra_results]
    body = []
    for name, row, evaluation in zip(names, rows, evaluations):
        published = row["published"]
        validation = evaluation.get("splits", {}).get(SPLIT, {})
        accuracy = row["val_accuracy_at_0.5"] if row["val_accuracy_at_0.5"] is not None else validation.get("accuracy")
        parameters = row["parameters"]
        body.append([
            name, f"{parameters:,}" if isinstance(parameters, int) else None, row["epochs"],
            _duration(row["training_seconds"]),
            _number(row["val_mse"]), _number(published.get("mse"), 2),
            _number(row["val_pearson"]), _number(published.get("pearson"), 2),
            _number(row["val_auc"]), _number(accuracy), _number(row["val_tutorial_best_accuracy"]),
            _number(published.get("accuracy"), 2) or published.get("note"),
            _number(row["test_accuracy_at_validation_threshold"]),
        ])
    classes = ["text"] + ["published" if header in PUBLISHED_COLUMNS else "" for header in HEADERS[1:]]
    if not any(row["published"] for row in rows):
        return _own_data_table(body, classes)
    sentences = [sentence.replace("**", "").lstrip("- ") for sentence in reading(rows)]
    parts = [
        html.table(HEADERS, body, classes),
        html.note("Shaded columns: the figures the tutorial published (on its 1,024 validation photos). "
                  "'val accuracy' is at threshold 0.5 (the most probable class for more than two classes); the "
                  "best-threshold accuracy is the tutorial's: the best of thresholds 0.1..0.9 chosen on the "
                  "validation photos themselves, which flatters it. The last column is the honest figure: a "
                  "threshold chosen on validation, applied unchanged to the test photos. '-': not measured "
                  "or undefined (constant predictions)."),
    ]
    if sentences:
        parts.append(html.subheading("Against the published figures"))
        parts.append(html.bullet_list(sentences))
    return "".join(parts)


def _own_data_table(body: list[list], classes: list[str]) -> str:
    """Runs of models the tutorial never had: no tutorial columns, no comparison with it."""
    keep = [index for index, header in enumerate(HEADERS)
            if header not in PUBLISHED_COLUMNS and header != "val best-threshold accuracy"]
    return html.table([HEADERS[index] for index in keep], [[row[index] for index in keep] for row in body],
                      [classes[index] for index in keep]) + html.note(
        "'val accuracy' is at threshold 0.5 for two classes, the most probable class for more. The last column "
        "is the honest figure: a threshold chosen on validation, applied unchanged to the test photos (the most "
        "probable class for more than two classes). '-': not measured or undefined.")


def per_class_table(run: RunData) -> str | None:
    """Every class's precision, recall, F1 and support on the validation split, from the run's
    predictions (the most probable class is the label), or None when there are none."""
    probabilities = run.class_probabilities()
    if probabilities is None or run.labels is None:
        return None
    scores = precision_recall_per_class(run.labels, probabilities)
    rows = [[name, _number(scores["precision"][index]), _number(scores["recall"][index]),
             _number(scores["f1"][index]), f"{scores['support'][index]:,}"] for index, name in enumerate(run.classes)]
    return html.subheading(f"{run.name}: every class") + html.table(
        ["class", "precision", "recall", "F1", "photos"], rows, ["text", "", "", "", ""])
