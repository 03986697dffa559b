"""Rows of `cnnlab predict`, written as they arrive: a table for people, CSV and JSON for programs.

Every format has one row per file, in input order: path, label, one probability per class,
the threshold used and the error. Rows of files that failed have an empty label, empty
probabilities and threshold, and the reason in `error`. For more than two classes the
threshold is empty: the most probable class is the label.

Paths are written printable (photo_file.printable_path): a file name that is not UTF-8 has
each undecodable byte written as \\xNN, so one odd name never costs the other rows (an
unencodable str would abort a UTF-8 CSV or JSON file, or the terminal, mid-run).
"""

from __future__ import annotations

import csv
import json

from cnnlab.data.photo_file import printable_path
from cnnlab.errors import UserError

FORMATS = ("table", "csv", "json")
FIXED_COLUMNS = ("path", "label", "threshold", "error")


def _shown(path) -> str:
    return "" if path is None else printable_path(path)


def probability_columns(classes) -> list[str]:
    """One column per class, named after it (prefixed only where a name clashes with a fixed column)."""
    return [f"probability_{name}" if name in FIXED_COLUMNS else name for name in classes]


class RowWriter:
    def __init__(self, stream, classes, threshold, header: dict):
        self.stream = stream
        self.classes = list(classes)
        self.threshold = threshold
        self.header = header
        self.count = 0
        self.failed = 0

    def begin(self) -> None:
        pass

    def write(self, predictions) -> None:
        for prediction in predictions:
            self.count += 1
            self.failed += prediction.error is not None
            self.write_row(prediction)
        self.stream.flush()

    def write_row(self, prediction) -> None:
        raise NotImplementedError

    def end(self) -> None:
        self.stream.flush()


class CsvWriter(RowWriter):
    def begin(self) -> None:
        self.writer = csv.writer(self.stream, lineterminator="\n")
        self.writer.writerow(["path", "label", *probability_columns(self.classes), "threshold", "error"])

    def write_row(self, prediction) -> None:
        if prediction.error is not None:
            self.writer.writerow([_shown(prediction.path), "", *([""] * len(self.classes)), "", prediction.error])
            return
        probabilities = [format(prediction.probabilities[name], ".6g") for name in self.classes]
        threshold = "" if self.threshold is None else format(self.threshold, ".6g")
        self.writer.writerow([_shown(prediction.path), prediction.label, *probabilities, threshold, ""])


class JsonWriter(RowWriter):
    """One JSON document, streamed: the run's description, then `predictions`, then the counts."""

    def begin(self) -> None:
        opening = json.dumps({**self.header, "predictions": []}, indent=1)
        self.stream.write(opening[:opening.rindex("[") + 1])  # everything up to the open list
        self.separator = "\n"

    def write_row(self, prediction) -> None:
        failed = prediction.error is not None
        row = {"path": None if prediction.path is None else printable_path(prediction.path), "label": prediction.label, "probabilities": prediction.probabilities,
               "threshold": None if failed else self.threshold, "error": prediction.error}
        self.stream.write(self.separator + "  " + json.dumps(row))
        self.separator = ",\n"

    def end(self) -> None:
        self.stream.write(f"\n ],\n \"count\": {self.count},\n \"failed\": {self.failed}\n}}\n")
        self.stream.flush()


class TableWriter(RowWriter):
    """Aligned columns; the path column is as wide as the longest path (all are known up front)."""

    def __init__(self, stream, classes, threshold, header: dict, path_width: int = 40):
        super().__init__(stream, classes, threshold, header)
        self.path_width = max(4, path_width)
        self.label_width = max(5, *(len(name) for name in self.classes))
        self.widths = [max(8, len(name)) for name in probability_columns(self.classes)]

    def begin(self) -> None:
        names = "  ".join(f"{name:>{width}}" for name, width in zip(probability_columns(self.classes), self.widths))
        self.stream.write(f"{'path':<{self.path_width}}  {'label':<{self.label_width}}  {names}  threshold  error\n")

    def write_row(self, prediction) -> None:
        path = f"{_shown(prediction.path) or '-':<{self.path_width}}"
        if prediction.error is not None:
            blank = "  ".join(" " * width for width in self.widths)
            self.stream.write(f"{path}  {'':<{self.label_width}}  {blank}  {'':>9}  {prediction.error}\n")
            return
        values = "  ".join(f"{prediction.probabilities[name]:>{width}.4f}"
                           for name, width in zip(self.classes, self.widths))
        threshold = "" if self.threshold is None else f"{self.threshold:.4f}"
        self.stream.write(f"{path}  {prediction.label:<{self.label_width}}  {values}  {threshold:>9}\n".rstrip() + "\n")


def make_writer(kind: str, stream, classes, threshold, header: dict, paths=()) -> RowWriter:
    if kind == "csv":
        return CsvWriter(stream, classes, threshold, header)
    if kind == "json":
        return JsonWriter(stream, classes, threshold, header)
    if kind == "table":
        return TableWriter(stream, classes, threshold, header, max((len(_shown(path)) for path in paths), default=4))
    raise UserError(f"unknown format {kind!r}; choose one of {', '.join(FORMATS)}")
