"""A trained run in a notebook: evaluate, predict, export, report, plot, inspect its mistakes."""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from cnnlab.runs import Run
from cnnlab.workflow.results import Evaluation, TopLosses, html_table

EXPORT_SUFFIXES = {".onnx": "onnx", ".keras": "keras"}


class TrainedRun:
    """A run folder with the workflow's verbs. `cnnlab.train(...)` returns one;
    `cnnlab.open_run(path)` opens an existing run."""

    def __init__(self, path: str | os.PathLike):
        self.run = Run.open(path)
        self._classifier = None

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def model(self) -> str:
        return self.run.model_name

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    @property
    def history(self) -> list[dict]:
        """Metrics per finished epoch: train/val loss, accuracy, MSE, learning rate, seconds."""
        return self.run.history

    @property
    def state(self) -> dict:
        return self.run.state or {}

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        state = self.state
        best = state.get("best_val_loss")
        best_text = f", best val loss {best:.4f} (epoch {state.get('best_epoch')})" if isinstance(best, float) else ""
        return (f"TrainedRun({str(self.path)!r}: {self.model}, {len(self.classes)} classes, "
                f"{state.get('epochs_done', 0)}/{self.run.recipe['epochs']} epochs{best_text})")

    def _repr_html_(self) -> str:
        rows = [[entry.get("epoch"), entry.get("train_loss"), entry.get("val_loss"), entry.get("train_accuracy"),
                 entry.get("val_accuracy"), entry.get("seconds")] for entry in self.history]
        return (f"<p><b>{html.escape(self.model)}</b> in <code>{html.escape(str(self.path))}</code>: classes "
                f"{html.escape(', '.join(self.classes))}</p>"
                + html_table(["epoch", "train loss", "val loss", "train accuracy", "val accuracy", "seconds"], rows))

    # ---- the verbs -------------------------------------------------------------------------

    def evaluate(self, splits=("val", "test"), cache: str | None = None) -> Evaluation:
        """Score the best weights (threshold chosen on validation); writes the run's evaluation."""
        from cnnlab.training.evaluation import evaluate_run

        self._classifier = None  # a new threshold may have been chosen
        return Evaluation(evaluate_run(self.path, cache, tuple(splits)))

    def classifier(self, threshold: float | None = None):
        """The run as a cnnlab.Classifier (loaded once and kept)."""
        from cnnlab.inference.classifier import load

        if threshold is not None:
            return load(self.path, threshold=threshold)
        if self._classifier is None:
            self._classifier = load(self.path)
        return self._classifier

    def predict(self, inputs, threshold: float | None = None, batch_size: int = 64) -> list:
        """Paths (files, folders, globs), PIL images or uint8 arrays -> one Prediction per photo."""
        return self.classifier(threshold).predict(inputs, batch_size=batch_size)

    def export(self, out: str | os.PathLike, format: str | None = None, photos=(), tolerance: float | None = None):
        """Write an ONNX, .keras or SavedModel copy, checked against the run on real photos."""
        from cnnlab.inference.export import DEFAULT_TOLERANCE, ExportConfig, export_run

        format = format or EXPORT_SUFFIXES.get(Path(out).suffix.lower(), "savedmodel")
        config = ExportConfig(str(self.path), format, str(out), tuple(str(photo) for photo in photos),
                              tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance)
        return export_run(config)

    def report(self, out: str | os.PathLike = "report.html", cache: str | None = None, title: str | None = None) -> Path:
        """The HTML report of this run (learning curves, ROC, confusion, top losses)."""
        from cnnlab.report import ReportConfig, build_report

        result = build_report(ReportConfig((str(self.path),), str(out), cache=cache, title=title or f"{self.model}"))
        return result.path

    def plot_curves(self):
        """Loss and accuracy per epoch, training and validation (a Matplotlib Figure)."""
        from cnnlab.report.figures import learning_curves_figure

        return learning_curves_figure(self.model, self.history)

    def top_losses(self, count: int = 9) -> TopLosses:
        """The validation photos the model was surest about and got wrong, highest loss first."""
        from cnnlab.report.collect import load_run
        from cnnlab.report.photos import most_confidently_wrong, top_losses_figure

        data = load_run(self.path)
        if data.labels is None or data.cache is None:
            return TopLosses([])
        probabilities = data.class_probabilities()
        chosen = most_confidently_wrong(data.labels, probabilities, count)
        rows, images, captions = [], [], []
        for position in chosen:
            row = int(data.rows[position])
            truth, guess = int(data.labels[position]), int(np.argmax(probabilities[position]))
            loss = float(-np.log(max(probabilities[position, truth], 1e-12)))
            path = data.cache.paths([row])[0]
            rows.append({"path": path, "true": self.classes[truth], "predicted": self.classes[guess],
                         "probability": float(probabilities[position, guess]), "loss": loss})
            images.append(np.asarray(data.cache.images[row]))
            captions.append(f"{Path(path).name}\ntrue {self.classes[truth]}, said {self.classes[guess]}")
        figure = top_losses_figure(self.model, images, captions, "validation") if images else None
        return TopLosses(rows, figure)
