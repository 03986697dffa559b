"""The computed pieces of the guided tour (docs/make_tutorial.py): the worked convolution, the
threshold study and the small figures. Every number comes from cnnlab's own functions applied to
files a run wrote; nothing here is typed in by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def matrix_block(matrix: np.ndarray) -> str:
    """A matrix as aligned text rows, whole numbers without decimals."""
    cells = [[f"{value:g}" for value in row] for row in np.asarray(matrix)]
    width = max(len(cell) for row in cells for cell in row)
    return "\n".join(" ".join(cell.rjust(width) for cell in row) for row in cells)


def worked_convolution() -> dict:
    """A 6x6 picture, bright on the left, dark on the right, cross-correlated with the tutorial's
    vertical-edge kernel by cnnlab.explain.convolution (as a Keras Conv2D computes it)."""
    from cnnlab.explain.convolution import correlate
    from cnnlab.explain.kernels import KERNELS

    image = np.zeros((6, 6))
    image[:, :3] = 9  # a vertical edge between columns 2 and 3
    image[4:, :] += 1  # and a faint horizontal one near the bottom
    kernel = np.asarray(KERNELS["vertical-edge"].matrix)
    result = correlate(image, kernel)
    row, column = 0, 1  # one output position, spelled out below
    window = image[row:row + 3, column:column + 3]
    products = " + ".join(f"{a:g}x{b:g}" for a, b in zip(window.ravel(), kernel.ravel()))
    return {"image": matrix_block(image), "kernel": matrix_block(kernel), "result": matrix_block(result),
            "shape_in": image.shape, "shape_out": result.shape, "row": row, "column": column,
            "window": matrix_block(window), "products": products, "value": f"{result[row, column]:g}",
            "check": f"{float(np.sum(window * kernel)):g}"}


def learning_curve_png(run: Path, name: str, out: Path) -> Path | None:
    from cnnlab.report.figures import learning_curves

    from cnnlab.runs import Run

    history = Run(run).history
    if not history:
        return None
    out.write_bytes(learning_curves(name, history))
    return out


def threshold_study(run: Path, split_hash: str, out: Path) -> dict | None:
    """Accuracy against the threshold on validation and on test from the run's stored predictions:
    the tutorial's best-of-thresholds on validation, and what the threshold chosen there gives on test."""
    from cnnlab.metrics import (TUTORIAL_THRESHOLDS, accuracy_at, best_accuracy_over_thresholds,
                                choose_threshold, mean_squared_error, pearson_correlation)
    from cnnlab.report.figures import new_figure, png_bytes
    from cnnlab.runs import Run

    validation = Run(run).stored_predictions("val", split_hash)
    test = Run(run).stored_predictions("test", split_hash)
    if validation is None or test is None or validation.probabilities.ndim != 1:
        return None
    grid = np.asarray(TUTORIAL_THRESHOLDS)
    val_curve = [accuracy_at(validation.labels, validation.probabilities, t) for t in grid]
    test_curve = [accuracy_at(test.labels, test.probabilities, t) for t in grid]
    best_accuracy, best_threshold = best_accuracy_over_thresholds(validation.labels, validation.probabilities)
    chosen = choose_threshold(validation.labels, validation.probabilities)
    figure = new_figure(5.6, 3.2)
    axis = figure.subplots()
    axis.plot(grid, val_curve, marker="o", label=f"validation ({len(validation.labels)} photos)")
    axis.plot(grid, test_curve, marker="s", label=f"test ({len(test.labels)} photos)")
    axis.axvline(best_threshold, color="grey", linestyle=":", label=f"best on validation ({best_threshold:g})")
    axis.axhline(0.5, color="black", linewidth=0.6)
    axis.set_xlabel("threshold on P(cat)")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{run.name}: accuracy for each of the tutorial's thresholds", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    out.write_bytes(png_bytes(figure))
    return {
        "figure": out, "val_photos": len(validation.labels), "test_photos": len(test.labels),
        "mse": mean_squared_error(validation.labels, validation.probabilities),
        "pearson": pearson_correlation(validation.labels, validation.probabilities),
        "best_accuracy": best_accuracy, "best_threshold": best_threshold,
        "test_at_best": accuracy_at(test.labels, test.probabilities, best_threshold),
        "chosen": chosen, "test_at_chosen": accuracy_at(test.labels, test.probabilities, chosen),
        "val_at_half": accuracy_at(validation.labels, validation.probabilities, 0.5),
        "spread": max(val_curve) - min(val_curve),
    }


def shrink_png(path: Path, max_width: int = 900) -> None:
    """Keep the committed figures small: at most max_width pixels wide, palette PNG."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > max_width:
            image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
        image.quantize(colors=128).save(path, optimize=True)
