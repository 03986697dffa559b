"""`cnnlab compare`: evaluated runs and reproductions side by side, tutorial figures beside ours.

Reads only what is saved (evaluation.json, config.json, a reproduction's results.json): it
never trains or evaluates, so comparing is instant and cannot change a run.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.report.results_table import markdown_table, reading, table_rows
from cnnlab.training import run_folder as folder
from cnnlab.errors import UserError


def _run_result(run: Path) -> dict:
    evaluation_file = run / "evaluation.json"
    if not evaluation_file.exists():
        raise UserError(f"{run}: not evaluated yet; run `cnnlab evaluate {run}` first")
    result = folder.read_json(evaluation_file)
    config = folder.read_json(run / "config.json")
    result.setdefault("family", config.get("model_family", "tutorial"))
    result["run"] = str(run)
    weights = run / "best.weights.h5"
    result["model_file_megabytes"] = round(weights.stat().st_size / 1e6, 2) if weights.exists() else None
    return result


def collect(paths: list[str]) -> list[dict]:
    """One row per run: a run folder gives its row, a reproduction folder (results.json) all of
    its rows; rows keep the order of `paths`."""
    rows = []
    for text in paths:
        path = Path(text)
        if (path / "results.json").exists() and not (path / "config.json").exists():
            results = folder.read_json(path / "results.json")
            rows.extend({**row, "run": str(path / "runs" / row["model"]), "split_hash": results.get("split_hash")}
                        for row in results["rows"])
        elif (path / "config.json").exists():
            result = _run_result(path)
            row = table_rows([result])[0]
            row.update(run=result["run"], model_file_megabytes=result["model_file_megabytes"],
                       split_hash=folder.read_json(path / "data.json").get("split_hash"))
            rows.append(row)
        else:
            raise UserError(f"{path}: neither a run folder (config.json) nor a reproduction (results.json)")
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
