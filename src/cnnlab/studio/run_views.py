"""The Train and Compare tabs' data: the runs under --runs, one run's curves, runs side by side.

Everything is read through cnnlab.runs.Run (the run folder's one reader) and the comparison
through cnnlab.experiments.compare, exactly as `cnnlab compare` reads it; nothing here writes.
"""

from __future__ import annotations

from cnnlab.errors import UserError
from cnnlab.studio.folders import Folders

CURVE_KEYS = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate", "seconds")


def curve(history: list[dict]) -> list[dict]:
    """The per-epoch numbers the page draws, nothing else (a history entry may hold more)."""
    return [{key: entry.get(key) for key in CURVE_KEYS} for entry in history]


def run_summary(folders: Folders, name: str) -> dict:
    run = folders.run(name)
    state = run.state or {}
    evaluation = run.evaluation or {}
    validation = (evaluation.get("splits") or {}).get("val", {})
    epochs = int(run.recipe.get("epochs") or 0)
    done = int(state.get("epochs_done", 0))
    stopped_early = bool(state.get("stopped_early"))
    return {"name": name, "model": run.model_name, "family": run.family, "classes": run.classes,
            "epochs_done": done, "epochs": epochs, "complete": done >= epochs or stopped_early,
            "best_epoch": state.get("best_epoch"), "best_val_loss": state.get("best_val_loss"),
            "has_weights": run.has_weights(), "evaluated": bool(evaluation),
            "val_accuracy": validation.get("accuracy_at_validation_threshold", validation.get("accuracy")),
            "val_auc": validation.get("roc_auc", validation.get("one_vs_rest_roc_auc")),
            "validation_threshold": run.validation_threshold,
            "recipe": {key: run.recipe.get(key) for key in ("epochs", "batch_size", "learning_rate", "optimizer",
                                                            "loss", "input_width", "input_height", "fit")}}


def list_runs(folders: Folders) -> list[dict]:
    """Every run under --runs, newest first; a damaged folder is listed with its error."""
    rows = []
    for name in folders.run_names():
        try:
            rows.append(run_summary(folders, name))
        except UserError as error:
            rows.append({"name": name, "error": str(error)})
    return rows


def run_detail(folders: Folders, name: str) -> dict:
    run = folders.run(name)
    return {**run_summary(folders, name), "history": curve(run.history)}


def compare_runs(folders: Folders, names: list[str]) -> dict:
    """`cnnlab compare`'s rows for the evaluated runs among `names`, every run's curves, and
    which runs could not be compared yet (not evaluated) and why."""
    from cnnlab.experiments.compare import collect, render

    if not names:
        names = folders.run_names()
    evaluated, missing, curves = [], [], {}
    for name in names:
        run = folders.run(name)
        curves[name] = curve(run.history)
        if run.evaluation is None:
            missing.append({"run": name, "reason": "not evaluated yet (Evaluate, or wait for its training to finish)"})
        else:
            evaluated.append(name)
    rows = collect([str(folders.run_path(name)) for name in evaluated]) if evaluated else []
    for name, row in zip(evaluated, rows):
        row["name"] = name
    return {"rows": rows, "text": render(rows) if rows else "", "curves": curves, "not_compared": missing}
