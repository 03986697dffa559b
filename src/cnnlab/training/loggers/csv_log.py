"""RUN/logs/metrics.csv: one row per finished epoch, its header the metric names (stdlib csv)."""

from __future__ import annotations

import csv
import io

from cnnlab.data.cache_io import replace_atomically
from cnnlab.training.loggers import EpochLog


class CsvLog(EpochLog):
    """The committed epochs as a spreadsheet. The file is rewritten whole (atomically) from
    metrics.jsonl when an epoch is added: a kill at any instant leaves the old table or the new
    one, never a half-written row, and a resumed run's epochs each appear once."""

    kind = "csv"

    def open(self) -> set[int]:
        path = self.run.log_path("csv")
        try:
            with open(path, newline="") as handle:
                return {int(row["epoch"]) for row in csv.DictReader(handle) if (row.get("epoch") or "").isdigit()}
        except FileNotFoundError:
            return set()

    def write_epochs(self, entries: list[dict]) -> None:
        history = self.run.history  # every committed epoch, the new ones included
        fields = list(dict.fromkeys(name for entry in history for name in entry))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        # A diverged epoch's null figures are empty cells.
        writer.writerows({name: "" if value is None else value for name, value in entry.items()} for entry in history)
        path = self.run.log_path("csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, text.getvalue().encode())
