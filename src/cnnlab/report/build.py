"""`cnnlab report`: a whole experiment on one self-contained HTML page.

collect.py reads the runs (and their validation predictions), figures.py and photos.py draw,
html.py lays out; this module decides what goes where and what is skipped, with a note
saying why, when a run cannot show it (N-class runs get no ROC curve or scatter, runs
without a cache no photos).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.data.cache_io import replace_atomically
from cnnlab.errors import UserError
from cnnlab.report import figures, html, photos
from cnnlab.report.collect import SPLIT, SPLIT_LABEL, RunData, load_runs, open_cache_quietly, read_survey
from cnnlab.report.tables import metrics_section_body, per_class_table
from cnnlab.version import __version__
from cnnlab.outputs import output_folder

SAMPLES_PER_CLASS = 8
TOP_LOSSES = 8
SKIPPED_FILES_SHOWN = 50


@dataclass(frozen=True)
class ReportConfig:
    runs: tuple[str, ...]
    out: str
    survey: str | None = None  # `cnnlab survey --json` output (reproduce writes OUT/survey.json)
    cache: str | None = None  # for every run's photos and predictions (default: each run's own)
    filters_photo: str | None = None  # default: a validation cat photo from the cache
    title: str = "cnnlab report"
    notice: str | None = None  # shown in a box at the top (e.g. quick mode)
    extra_results: tuple[dict, ...] = ()  # rows for the metrics table only (reproduce's baselines)


@dataclass
class ReportResult:
    path: Path
    figures: int
    notes: list[str] = field(default_factory=list)


def build_report(config: ReportConfig) -> ReportResult:
    """Read the runs, draw every figure that applies and write one HTML file atomically."""
    # Bad input fails here, in one line, before any model is loaded.
    out = Path(config.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the HTML file to write, e.g. {out / 'report.html'}")
    if config.filters_photo is not None and not Path(config.filters_photo).is_file():
        raise UserError(f"{config.filters_photo}: no such photo for --filters-photo")
    survey = read_survey(config.survey)
    runs = load_runs(config.runs, config.cache)
    notes = [note for run in runs for note in run.notes]
    cache = next((run.cache for run in runs if run.cache is not None), None)
    if cache is None and config.cache:
        cache = open_cache_quietly(config.cache, notes, "--cache")
    document, count = render_report(runs, survey, cache, config, notes)
    output_folder(out.parent)
    replace_atomically(out, document.encode("utf-8"))
    return ReportResult(out, count, notes)


def render_report(runs: list[RunData], survey: dict | None, cache, config: ReportConfig,
                  notes: list[str]) -> tuple[str, int]:
    """The HTML document and its number of figures, from data already in memory."""
    sections = [
        ("data", "Data", _data_section(survey, cache)),
        ("results", "Results", metrics_section_body(runs, config.extra_results)),
        ("curves", "Learning curves", _curves_section(runs)),
        ("roc", "ROC and predictions", _roc_section(runs)),
        ("cost", "Accuracy vs size and time", _cost_section(runs)),
        ("confusion", "Confusion and per-class accuracy", _confusion_section(runs)),
        ("wrong", "Most confidently wrong", _wrong_section(runs)),
    ]
    # The tutorial's edge-filter demo belongs to the tutorial's models (or to a photo asked for).
    if config.filters_photo is not None or any(run.config.get("model_family") == "tutorial" for run in runs):
        sections.append(("filters", "Filter demo", _filters_section(config.filters_photo, cache, notes)))
    sections.append(("notes", "Notes", html.bullet_list(notes, "notes") if notes else html.note("none")))
    subtitle = [f"{len(runs)} run(s): " + ", ".join(f"{run.name} ({run.path})" for run in runs),
                f"Figures describe the {SPLIT_LABEL} split unless they say otherwise. "
                f"Written by cnnlab {__version__} on {time.strftime('%Y-%m-%d %H:%M')}."]
    document = html.page(config.title, subtitle, config.notice, sections)
    return document, document.count("<img ")


def _data_section(survey: dict | None, cache) -> str:
    if survey is None and cache is None:
        return html.note("No survey or cache given (--survey SURVEY.json, --cache CACHE) and no run's cache found.")
    parts = []
    if survey is not None:
        per_class = survey["per_class"]
        readable = survey.get("readable_per_class", per_class)
        parts.append(html.paragraph(
            f"{survey.get('root', 'the photo folder')}: {survey.get('images', sum(per_class.values())):,} photos "
            f"({survey.get('layout', '?')} layout, {survey.get('total_megabytes', '?')} MB); "
            f"modes {_counts(survey.get('modes', {}))}; formats {_counts(survey.get('formats', {}))}."))
        parts.append(html.table(["class", "photos", "readable"],
                                [[name, f"{count:,}", f"{readable.get(name, 0):,}"] for name, count in per_class.items()]))
        if survey["top_shapes"]:
            parts.append(html.figures(html.image(figures.shape_histogram(survey), "histogram of photo sizes",
                                                 "Most common photo sizes, read from the file headers.")))
    if cache is not None:
        counts = cache.manifest.get("counts", {})
        parts.append(html.paragraph(
            f"Cache {cache.root}: {len(cache.labels):,} photos at {cache.image_shape[1]}x{cache.image_shape[0]}; "
            + "; ".join(f"{split} {_counts(per_class)}" for split, per_class in counts.items()) + "."))
        parts.append(html.figures(html.image(photos.sample_grid(cache, SAMPLES_PER_CLASS), "sample photos per class",
                                             "The first photos of each class in the training split.")))
    skipped = list((survey or {}).get("unreadable", []))
    if cache is not None:
        seen = {item.get("path") for item in skipped}
        skipped += [item for item in cache.manifest.get("skipped", []) if item.get("path") not in seen]
    parts.append(html.subheading(f"Skipped files: {len(skipped)}"))
    if skipped:
        rows = [[item.get("path", "?"), item.get("reason", "?")] for item in skipped[:SKIPPED_FILES_SHOWN]]
        parts.append(html.table(["file", "reason"], rows, ["text", "text"]))
        if len(skipped) > SKIPPED_FILES_SHOWN:
            parts.append(html.note(f"... and {len(skipped) - SKIPPED_FILES_SHOWN} more."))
    else:
        parts.append(html.note("Every photo was readable."))
    return "".join(parts)


def _counts(counts: dict) -> str:
    return ", ".join(f"{name} {value:,}" for name, value in counts.items()) or "-"


def _curves_section(runs: list[RunData]) -> str:
    items = [html.image(figures.learning_curves(run.name, run.history), f"learning curves of {run.name}",
                        f"{run.name}: training and validation loss ({run.config.get('recipe', {}).get('loss', '?')}) "
                        "and accuracy after each epoch.")
             for run in runs if run.history]
    missing = [html.note(f"{run.name}: no finished epoch recorded.") for run in runs if not run.history]
    return html.figures(*items) + "".join(missing)


def _groups(runs: list[RunData]) -> dict[tuple, list[RunData]]:
    """Runs with predictions, grouped by class list (one ROC chart per set of classes)."""
    groups: dict[tuple, list[RunData]] = {}
    for run in runs:
        if run.binary_scores is not None:
            groups.setdefault(tuple(run.classes), []).append(run)
    return groups


def _roc_section(runs: list[RunData]) -> str:
    parts = []
    for classes, group in _groups(runs).items():
        usable = [run for run in group if 0 < run.labels.sum() < len(run.labels)]
        if usable:
            curves = [(run.name, run.labels, run.binary_scores) for run in usable]
            parts.append(html.figures(
                html.image(figures.roc_curves(curves, classes[1], SPLIT_LABEL), "ROC curves",
                           f"True against false positive rate as the threshold on P({classes[1]}) falls from 1 to 0; "
                           "the area under each curve (AUC) is the chance that a random "
                           f"{classes[1]} photo scores above a random {classes[0]} photo."),
                html.image(figures.prediction_scatter(curves, list(classes), SPLIT_LABEL), "predictions vs labels",
                           "Each dot is a photo: its predicted probability (x) against its true label (y, jittered). "
                           "A useful model pushes the two rows apart; the tutorial reads Pearson's r off this plot.")))
        for run in group:
            if run not in usable:
                parts.append(html.note(f"{run.name}: the {SPLIT_LABEL} split has one class only; no ROC curve."))
    for run in runs:
        if run.probabilities is not None and run.binary_scores is None:
            parts.append(html.note(f"{run.name}: {len(run.classes)} classes; ROC curves and the scatter apply to "
                                   "two-class runs (see its confusion matrix and per-class accuracy)."))
        elif run.probabilities is None:
            parts.append(html.note(f"{run.name}: no predictions available; ROC and scatter skipped."))
    return "".join(parts) or html.note("No run has predictions.")


def _validation(run: RunData) -> dict:
    return ((run.evaluation or {}).get("splits") or {}).get(SPLIT) or {}


def _accuracy(run: RunData):
    validation = _validation(run)
    value = validation.get("accuracy_at_0.5", validation.get("accuracy"))
    if value is None and run.labels is not None:
        value = float(np.mean(run.predicted() == run.labels))
    return value


def _cost_section(runs: list[RunData]) -> str:
    points = [{"name": run.name, "accuracy": _accuracy(run),
               "parameters": (run.evaluation or {}).get("parameters") or run.config.get("parameters"),
               "seconds": (run.evaluation or {}).get("training_seconds")
               or sum(entry.get("seconds", 0) for entry in run.history) or None} for run in runs]
    if not any(point["accuracy"] is not None for point in points):
        return html.note("No run has a validation accuracy.")
    class_counts = {len(run.classes) for run in runs}
    chance = 1 / class_counts.pop() if len(class_counts) == 1 else None
    chance_text = (f"The dotted line is chance for {round(1 / chance)} balanced classes ({chance:.2f})."
                   if chance is not None else "")
    return html.figures(html.image(
        figures.accuracy_vs_cost(points, chance), "accuracy vs model size and training time",
        "Validation accuracy (threshold 0.5, or the most probable class) of each model against its number of "
        f"parameters and its training time on this machine. {chance_text}".strip()))


def _confusion(run: RunData) -> np.ndarray | None:
    if run.labels is not None:
        count = len(run.classes)
        matrix = np.zeros((count, count), dtype=np.int64)
        np.add.at(matrix, (run.labels, run.predicted()), 1)
        return matrix
    stored = _validation(run).get("confusion_matrix")
    return np.asarray(stored, dtype=np.int64) if stored is not None else None


def _confusion_section(runs: list[RunData]) -> str:
    items, recalls, parts = [], {}, []
    for run in runs:
        matrix = _confusion(run)
        if matrix is None:
            parts.append(html.note(f"{run.name}: no predictions or evaluation; no confusion matrix."))
            continue
        rule = "threshold 0.5" if run.probabilities is None or run.probabilities.ndim == 1 else "most probable class"
        items.append(html.image(figures.confusion_matrix_figure(run.name, matrix, run.classes, rule),
                                f"confusion matrix of {run.name}"))
        totals = matrix.sum(axis=1)
        recall = [float(matrix[index, index] / totals[index]) if totals[index] else float("nan")
                  for index in range(len(run.classes))]
        recalls.setdefault(tuple(run.classes), []).append((run.name, recall))
    parts.insert(0, html.figures(*items))
    # More than two classes: a table as well, since a bar chart of many classes is hard to read exactly.
    parts += [table for run in runs if len(run.classes) > 2 and (table := per_class_table(run)) is not None]
    for classes, series in recalls.items():
        parts.append(html.figures(html.image(
            figures.per_class_accuracy(series, list(classes), SPLIT_LABEL), "per-class accuracy",
            "The share of each class's photos that each model classified correctly: a model that always answers "
            "one class scores 1 on it and 0 on the others.")))
    return "".join(parts)


def _wrong_section(runs: list[RunData]) -> str:
    parts, items = [], []
    for run in runs:
        if run.labels is None or run.cache is None or run.rows is None:
            parts.append(html.note(f"{run.name}: needs predictions and the cache's photos; skipped."))
            continue
        probabilities = run.class_probabilities()
        if np.all(probabilities == probabilities[0]):
            shown = ", ".join(f"P({name}) = {value:.2f}" for name, value in zip(run.classes, probabilities[0]))
            parts.append(html.note(f"{run.name}: gives every photo the same probabilities ({shown}), so its wrong "
                                   "answers are all equally wrong; there is no ranking to show."))
            continue
        chosen = photos.most_confidently_wrong(run.labels, probabilities, TOP_LOSSES)
        if not chosen:
            parts.append(html.note(f"{run.name}: no wrong predictions on the {SPLIT_LABEL} split."))
            continue
        rows = [int(run.rows[position]) for position in chosen]
        names = [Path(path).name for path in run.cache.paths(rows)]
        captions = []
        for position, name in zip(chosen, names):
            truth, guess = run.labels[position], int(np.argmax(probabilities[position]))
            loss = -np.log(max(probabilities[position, truth], 1e-12))
            captions.append(f"{name}\ntrue {run.classes[truth]}, said {run.classes[guess]}\n"
                            f"P({run.classes[guess]}) {probabilities[position, guess]:.3f}, loss {loss:.1f}")
        images = [np.asarray(run.cache.images[row]) for row in rows]
        items.append(html.image(photos.top_losses(run.name, images, captions, SPLIT_LABEL),
                                f"most confidently wrong photos of {run.name}",
                                f"{run.name}: the wrong answers it was surest of (highest loss first), as the model saw them."))
    return html.figures(*items) + "".join(parts)


def _filters_section(photo: str | None, cache, notes: list[str]) -> str:
    try:
        png, name = photos.filter_demo(photo, cache)
    except ValueError as error:
        if photo is not None:
            raise  # the user named this photo: say what is wrong with it
        notes.append(f"filter demo skipped: {error}")
        return html.note(f"Skipped: {error}")
    return html.figures(html.image(
        png, f"edge filters applied to {name}",
        f"The tutorial's vertical and horizontal edge filters (Prewitt-style stand-ins: its exact values are not "
        f"recoverable) cross-correlated with {name} in greyscale, as a Conv2D layer does; "
        "white = strong edge. `cnnlab filters` makes more."))
