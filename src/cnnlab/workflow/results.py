"""What the Python API hands back: plain data with a readable repr, and a table in Jupyter.

Each object keeps its data in ordinary attributes (dicts, lists, paths), so a script can use
it directly; `repr()` shows the text cnnlab's command line prints, and `_repr_html_()` the same
as an HTML table, which Jupyter renders.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path


def html_table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


@dataclass
class Evaluation:
    """`cnnlab evaluate`'s result: metrics per split, the validation threshold, size and speed."""

    result: dict

    def __getitem__(self, key):
        return self.result[key]

    @property
    def splits(self) -> dict:
        return self.result["splits"]

    def accuracy(self, split: str = "test") -> float | None:
        """The honest accuracy of a split: at the validation threshold (two classes) or argmax (more)."""
        report = self.splits.get(split, {})
        return report.get("accuracy_at_validation_threshold", report.get("accuracy"))

    def __repr__(self) -> str:
        from cnnlab.training.evaluation_text import format_evaluation

        return format_evaluation(self.result)

    def _repr_html_(self) -> str:
        rows = [[split, report.get("num_examples"), self.accuracy(split), report.get("balanced_accuracy"),
                 report.get("roc_auc", report.get("one_vs_rest_roc_auc")), report.get("log_loss")]
                for split, report in self.splits.items()]
        title = f"<p><b>{html.escape(self.result['model'])}</b> ({self.result['parameters']:,} parameters)</p>"
        return title + html_table(["split", "photos", "accuracy", "balanced accuracy", "AUC", "log loss"], rows)


@dataclass
class TopLosses:
    """The photos the model was surest about and wrong: highest loss first."""

    rows: list[dict]  # path, true, predicted, probability (of the predicted class), loss
    figure: object | None = None  # a Matplotlib Figure of their thumbnails, as the model saw them

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self) -> str:
        if not self.rows:
            return "TopLosses(no wrong predictions)"
        lines = [f"{'loss':>6}  {'true':12} {'predicted':12} {'P':>6}  path"]
        lines += [f"{row['loss']:6.2f}  {row['true']:12} {row['predicted']:12} {row['probability']:6.3f}  {row['path']}"
                  for row in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return html_table(["loss", "true", "predicted", "P", "path"],
                          [[row["loss"], row["true"], row["predicted"], row["probability"], row["path"]]
                           for row in self.rows])


@dataclass
class Comparison:
    """Runs side by side, as `cnnlab compare` prints them."""

    rows: list[dict]
    text: str = field(repr=False, default="")

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        headers = ["model", "parameters", "epochs", "val AUC", "val accuracy@0.5", "test accuracy"]
        return html_table(headers, [[row.get("model"), row.get("parameters"), row.get("epochs"), row.get("val_auc"),
                                     row.get("val_accuracy_at_0.5"), row.get("test_accuracy_at_validation_threshold")]
                                    for row in self.rows])


@dataclass
class Prepared:
    """A prepared cache: where it is and what went into it."""

    cache: Path
    summary: str
    skipped: list[dict]
    manifest: dict = field(repr=False, default_factory=dict)

    def __fspath__(self) -> str:
        return str(self.cache)

    def __repr__(self) -> str:
        skipped = f"; {len(self.skipped)} skipped" if self.skipped else ""
        return f"Prepared({str(self.cache)!r}: {self.summary}{skipped})"
