"""The report's charts, drawn with Matplotlib's object-oriented API on an Agg canvas (no
pyplot, no global backend, no display) and returned as PNG bytes. The Figures the workflow hands
back (TrainedRun.plot_curves, TopLosses.figure) show themselves as PNGs in Jupyter.

Every chart has a title, labelled axes and, where there is more than one series, a legend.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np

DPI = 100
TRAIN_COLOUR, VALIDATION_COLOUR = "#1f77b4", "#d62728"


@functools.cache
def _shown_figure():
    from matplotlib.figure import Figure

    class ShownFigure(Figure):
        """A Figure that Jupyter shows as a PNG. IPython draws a plain Figure only once pyplot's
        inline backend has registered a formatter for it; a notebook that never imports pyplot would
        print `<Figure size 720x290 with 2 Axes>` instead (tests/test_notebook.py)."""

        def _repr_png_(self) -> bytes:
            return png_bytes(self)

    return ShownFigure


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _shown_figure()(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def shape_histogram(survey: dict) -> bytes:
    """The most common photo sizes (width x height) as horizontal bars, the rest as 'other'."""
    shapes = survey["top_shapes"]
    readable = sum(survey.get("readable_per_class", survey["per_class"]).values())
    labels = [f"{shape['width']}x{shape['height']}" for shape in shapes]
    counts = [shape["count"] for shape in shapes]
    other = readable - sum(counts)
    if other > 0:
        labels.append(f"other ({survey.get('distinct_shapes', len(shapes)) - len(shapes):,} sizes)")
        counts.append(other)
    figure = new_figure(7.5, 0.9 + 0.32 * max(len(labels), 1))
    axis = figure.subplots()
    positions = np.arange(len(labels))[::-1]
    colours = ["#4c72b0"] * len(shapes) + ["#a0a7b4"] * (len(labels) - len(shapes))
    axis.barh(positions, counts, color=colours)
    axis.set_yticks(positions, labels, fontsize=9)
    for position, count in zip(positions, counts):
        axis.text(count, position, f" {count:,}", va="center", fontsize=8)
    axis.set_xlim(0, max(counts or [1]) * 1.15)
    axis.set_xlabel("photos")
    axis.set_ylabel("width x height (pixels)")
    axis.set_title(f"Photo sizes: {survey.get('distinct_shapes', len(shapes)):,} distinct among {readable:,} readable photos")
    return png_bytes(figure)


def learning_curves(name: str, history: list[dict]) -> bytes:
    """Loss and accuracy per epoch, training and validation, side by side (PNG)."""
    return png_bytes(learning_curves_figure(name, history))


def learning_curves_figure(name: str, history: list[dict]):
    """The learning curves as a Matplotlib Figure (a notebook shows it as it is)."""
    epochs = [entry["epoch"] for entry in history]
    figure = new_figure(7.2, 2.9)
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for axis, metric, label in ((loss_axis, "loss", "loss"), (accuracy_axis, "accuracy", "accuracy")):
        for prefix, colour, split in (("train", TRAIN_COLOUR, "training"), ("val", VALIDATION_COLOUR, "validation")):
            values = [entry.get(f"{prefix}_{metric}") for entry in history]
            points = [(epoch, value) for epoch, value in zip(epochs, values) if _finite(value)]
            if points:
                axis.plot(*zip(*points), marker="o", markersize=4, color=colour, label=split)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.set_title(f"{name}: {label} per epoch")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
        if len(epochs) < 12:
            axis.set_xticks(epochs)
    # A flat curve must look flat: Matplotlib would stretch a change of 0.0005 over the whole axis.
    _at_least(loss_axis, 0.05 * max(abs(value) for value in loss_axis.get_ylim()))
    _at_least(accuracy_axis, 0.1, 0.0, 1.0)
    return figure


def _at_least(axis, span: float, floor: float = -math.inf, ceiling: float = math.inf) -> None:
    """Widen the y range to `span` around its centre (within floor..ceiling) when it is narrower."""
    low, high = axis.get_ylim()
    if high - low < span:
        centre = (low + high) / 2
        low, high = centre - span / 2, centre + span / 2
        if low < floor:
            low, high = floor, floor + span
        if high > ceiling:
            low, high = ceiling - span, ceiling
    axis.set_ylim(max(low, floor), min(high, ceiling))


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score (ties moved together)."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_labels)[ends]
    false_positives = ends + 1 - true_positives
    positives, negatives = sorted_labels.sum(), len(sorted_labels) - sorted_labels.sum()
    return np.r_[0.0, false_positives / negatives], np.r_[0.0, true_positives / positives]


def roc_curves(curves: list[tuple[str, np.ndarray, np.ndarray]], positive: str, split: str) -> bytes:
    """One ROC curve per model: (name, labels, P(positive class))."""
    figure = new_figure(6.2, 5.4)
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance (AUC 0.50)")
    for name, labels, scores in curves:
        false_rate, true_rate = roc_points(labels, scores)
        area = float(np.trapezoid(true_rate, false_rate))
        axis.plot(false_rate, true_rate, linewidth=1.8, label=f"{name} (AUC {area:.2f})")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_aspect("equal")
    axis.set_xlabel(f"false positive rate (other photos called {positive})")
    axis.set_ylabel(f"true positive rate ({positive} photos found)")
    axis.set_title(f"ROC curves on the {split} split (positive class: {positive})")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    return png_bytes(figure)


def prediction_scatter(panels: list[tuple[str, np.ndarray, np.ndarray]], classes: list[str], split: str) -> bytes:
    """The tutorial's predictions-vs-labels scatter, one panel per model; labels jittered so
    that a thousand points on two lines stay visible."""
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(4.3 * columns, 3.2 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    generator = np.random.default_rng(0)
    for axis, (name, labels, scores) in zip(axes, panels):
        jitter = generator.uniform(-0.12, 0.12, len(labels))
        for label, colour in ((0, TRAIN_COLOUR), (1, VALIDATION_COLOUR)):
            chosen = labels == label
            axis.scatter(scores[chosen], labels[chosen] + jitter[chosen], s=7, alpha=0.45, color=colour,
                         label=f"true {classes[label]}")
        axis.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        pearson = _pearson(labels, scores)
        axis.set_title(f"{name}: Pearson r = {pearson}", fontsize=10)
        axis.set_xlim(-0.02, 1.02)
        axis.set_yticks([0, 1], [f"0 ({classes[0]})", f"1 ({classes[1]})"])
        axis.set_xlabel(f"predicted P({classes[1]})")
        axis.set_ylabel("true label")
        axis.legend(fontsize=7, loc="center")
    for axis in axes[len(panels):]:
        axis.set_axis_off()
    figure.suptitle(f"Predictions vs labels on the {split} split (the tutorial's scatter)", fontsize=11)
    return png_bytes(figure)


def accuracy_vs_cost(points: list[dict], chance: float | None = 0.5) -> bytes:
    """Accuracy against parameters (log scale) and against training time, one point per model.
    Each point: name, accuracy, parameters (or None), seconds (or None). chance: the accuracy
    of guessing among balanced classes (1/N), drawn dotted; None draws none."""
    figure = new_figure(10, 3.8)
    size_axis, time_axis = figure.subplots(1, 2)
    for axis, key, label in ((size_axis, "parameters", "parameters (log scale)"),
                             (time_axis, "seconds", "training time, seconds (log scale)")):
        usable = [point for point in points if _finite(point.get(key)) and point[key] > 0 and _finite(point["accuracy"])]
        for index, point in enumerate(usable):
            axis.scatter(point[key], point["accuracy"], s=45, color=f"C{index % 10}", label=point["name"], zorder=3)
            axis.annotate(point["name"], (point[key], point["accuracy"]), textcoords="offset points",
                          xytext=(5, 5), fontsize=8)
        if usable:
            axis.set_xscale("log")
            axis.margins(x=0.25, y=0.12)  # room for the names beside the points
            axis.legend(fontsize=7, loc="best")
        else:
            axis.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=axis.transAxes)
        if chance is not None:
            axis.axhline(chance, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel(label)
        axis.set_ylabel("validation accuracy")
        axis.grid(alpha=0.3, which="both")
    size_axis.set_title("Accuracy vs model size")
    time_axis.set_title("Accuracy vs training time")
    return png_bytes(figure)


def confusion_matrix_figure(name: str, matrix: np.ndarray, classes: list[str], rule: str) -> bytes:
    """Counts and row percentages (share of each true class), coloured by the row share."""
    count = len(classes)
    size = min(2.6 + 0.55 * count, 11)
    figure = new_figure(size + 0.9, size)
    axis = figure.subplots()
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    font = 9 if count <= 6 else 7
    for row in range(count):
        for column in range(count):
            axis.text(column, row, f"{matrix[row, column]}\n{shares[row, column]:.0%}", ha="center", va="center",
                      fontsize=font, color="white" if shares[row, column] > 0.6 else "black")
    axis.set_xticks(range(count), classes, rotation=45 if count > 4 else 0, ha="right" if count > 4 else "center")
    axis.set_yticks(range(count), classes)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(f"{name}: confusion ({rule})", fontsize=10)
    return png_bytes(figure)


def per_class_accuracy(series: list[tuple[str, list[float]]], classes: list[str], split: str) -> bytes:
    """Grouped bars: for each class, the share of its photos each model got right (recall)."""
    count = len(classes)
    figure = new_figure(min(4.7 + 0.45 * count * max(len(series), 1), 14), 3.8)
    axis = figure.subplots()
    width = 0.8 / max(len(series), 1)
    positions = np.arange(count)
    for index, (name, recalls) in enumerate(series):
        values = [value if _finite(value) else 0.0 for value in recalls]
        axis.bar(positions + (index - (len(series) - 1) / 2) * width, values, width, label=name, color=f"C{index % 10}")
    axis.set_xticks(positions, classes, rotation=45 if count > 6 else 0, ha="right" if count > 6 else "center")
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("true class")
    axis.set_ylabel("accuracy on the class (recall)")
    axis.set_title(f"Per-class accuracy on the {split} split")
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="model", title_fontsize=8)
    return png_bytes(figure)


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)


def _pearson(labels: np.ndarray, scores: np.ndarray) -> str:
    if np.std(labels) == 0 or np.std(scores) == 0:
        return "undefined (constant predictions)"
    return f"{float(np.corrcoef(labels, scores)[0, 1]):.2f}"
