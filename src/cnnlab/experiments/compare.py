"""`cnnlab compare`: evaluated runs and reproductions side by side, tutorial figures beside ours.

Reads only what is saved (a run's evaluation and configuration, a reproduction's results): it
never trains or evaluates, so comparing is instant and cannot change a run.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import UserError
from cnnlab.experiments.reproduce import read_results
from cnnlab.report.results_table import markdown_table, reading, table_rows
from cnnlab.runs import Run


def _run_result(run: Run) -> dict:
    result = run.evaluation
    if result is None:
        raise UserError(f"{run.path}: not evaluated yet; run `cnnlab evaluate {run.path}` first")
    result.setdefault("family", run.family)
    result["run"] = str(run.path)
    result["model_file_megabytes"] = run.weights_megabytes(digits=2)
    return result


def collect(paths: list[str]) -> list[dict]:
    """One row per run: a run folder gives its row, a reproduction folder all of its rows;
    rows keep the order of `paths`."""
    rows = []
    for text in paths:
        path = Path(text)
        results = read_results(path) if not Run.is_run(path) else None
        if results is not None:
            rows.extend({**row, "run": str(path / "runs" / row["model"]), "split_hash": results.get("split_hash")}
                        for row in results["rows"])
        elif Run.is_run(path):
            run = Run.open(path)
            result = _run_result(run)
            row = table_rows([result])[0]
            row.update(run=result["run"], model_file_megabytes=result["model_file_megabytes"],
                       split_hash=run.split_hash)
            rows.append(row)
        else:
            raise UserError(f"{path}: neither a run folder (`cnnlab train`) nor a reproduction (`cnnlab reproduce`)")
    if not rows:
        raise UserError("nothing to compare: name run folders or reproduction folders")
    _label_duplicates(rows)
    return rows


def _label_duplicates(rows: list[dict]) -> None:
    """The same model from two runs gets its run folder beside its name."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["model"]] = counts.get(row["model"], 0) + 1
    for row in rows:
        if counts[row["model"]] > 1 and row.get("run"):
            row["model"] = f"{row['model']} ({row['run']})"


def render(rows: list[dict]) -> str:
    ordered = sorted(rows, key=lambda row: {"tutorial": 0, "modern": 1}.get(row.get("family"), 2))
    text = markdown_table(ordered) + "\n\n" + "\n".join(reading(ordered)) + "\n"
    if any((row.get("classes") or 2) > 2 for row in rows):
        text += ("\nRows with more than two classes label each photo with its most probable class: their "
                 "accuracies need no threshold and their AUC is the mean one-vs-rest AUC over the classes.\n")
    splits = {row.get("split_hash") for row in rows}
    if len(splits) > 1:
        text += (f"\nNote: these rows come from {len(splits)} different splits of the photos (split hashes differ), "
                 "so they were validated and tested on different photos; differences of a few hundredths may be the "
                 "photos, not the models.\n")
    return text
