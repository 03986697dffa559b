"""`reproduce --seeds N`: each model trained with N seeds, and each metric's mean and spread.

The tutorial published one run of each model. Whether a reproduction's figure that differs from
it is a fidelity gap or the luck of one seed cannot be told from one run on each side: at lr
1e-6 on 4,096 photos the tutorial's models move by several hundredths of Pearson or accuracy
from seed to seed. So every model is trained with seeds SEED .. SEED+N-1 (the weights'
initialisation and the batch order; the photos and the split stay the same), and each metric is
summarised by its mean, sample standard deviation, minimum and maximum. A published figure
outside mean +- 2 standard deviations of N >= 3 seeds is called a gap; inside, seed noise
(with 3 seeds the standard deviation is itself rough, which the text says).
"""

from __future__ import annotations

import math

from cnnlab.errors import UserError

# The metrics summarised over seeds (keys of report.results_table.table_rows' rows), and the
# published figure each is compared with (cnnlab.published), where the tutorial gives one.
METRICS = {
    "val_mse": "mse",
    "val_pearson": "pearson",
    "val_tutorial_best_accuracy": "accuracy",
    "val_auc": None,
    "val_accuracy_at_0.5": None,
    "test_accuracy_at_validation_threshold": None,
    "training_seconds": None,
}
LABELS = {
    "val_mse": "val MSE", "val_pearson": "val Pearson", "val_tutorial_best_accuracy": "val best-threshold acc",
    "val_auc": "val AUC", "val_accuracy_at_0.5": "val acc@0.5",
    "test_accuracy_at_validation_threshold": "test acc, threshold from val", "training_seconds": "train s",
}
# Fewer seeds than this give no verdict: a standard deviation of two values says little.
SEEDS_FOR_A_VERDICT = 3


def check_seeds(seeds: int) -> int:
    if not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"--seeds must be a whole number >= 1, got {seeds!r}")
    return seeds


def seeds_of(first: int, count: int) -> list[int]:
    return [first + offset for offset in range(check_seeds(count))]


def run_name(model: str, seed: int, first_seed: int) -> str:
    """The run folder's name under OUT/runs: the first seed keeps the model's name (so a
    reproduction made before --seeds existed is reused as its first seed), the others say theirs."""
    return model if seed == first_seed else f"{model}-seed{seed}"


def _usable(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarise(values: list) -> dict:
    """Mean, sample standard deviation (n - 1), min, max and the values themselves; NaN and None
    (e.g. Pearson of constant predictions) are counted out and reported as `undefined`."""
    usable = [float(value) for value in values if _usable(value)]
    summary = {"values": values, "n": len(usable), "undefined": len(values) - len(usable)}
    if not usable:
        return {**summary, "mean": None, "std": None, "min": None, "max": None}
    mean = sum(usable) / len(usable)
    spread = math.sqrt(sum((value - mean) ** 2 for value in usable) / (len(usable) - 1)) if len(usable) > 1 else None
    return {**summary, "mean": mean, "std": spread, "min": min(usable), "max": max(usable)}


def seed_spread(rows_per_seed: dict[str, list[dict]], seeds: list[int]) -> dict:
    """{model: {"seeds": [...], metric: summarise(...), ...}} from each model's table rows, one per seed."""
    spread = {}
    for model, rows in rows_per_seed.items():
        entry: dict = {"seeds": seeds[:len(rows)]}
        for metric in METRICS:
            entry[metric] = summarise([row.get(metric) for row in rows])
        published = rows[0].get("published") or {}
        entry["verdicts"] = {metric: verdict(entry[metric], published.get(key))
                             for metric, key in METRICS.items() if key and key in published}
        spread[model] = entry
    return spread


def verdict(summary: dict, published: float) -> dict:
    """Whether a published figure lies within mean +- 2 standard deviations of the seeds."""
    mean, spread = summary["mean"], summary["std"]
    if mean is None or spread is None or summary["n"] < SEEDS_FOR_A_VERDICT:
        return {"published": published, "call": "too few seeds to tell"}
    distance = (published - mean) / spread if spread > 0 else (0.0 if published == mean else math.inf)
    call = "within seed noise" if abs(distance) <= 2 else "a gap beyond seed noise"
    return {"published": published, "standard_deviations_away": round(distance, 2), "call": call}


def _figure(summary: dict, digits: int = 3) -> str:
    if summary["mean"] is None:
        return "-"
    text = f"{summary['mean']:.{digits}f}"
    if summary["std"] is not None:
        text += f" ± {summary['std']:.{digits}f}"
    return text + (f" ({summary['undefined']} undefined)" if summary["undefined"] else "")


def spread_markdown(spread: dict) -> str:
    """The seeds section of results.md: mean ± standard deviation per metric, then the verdicts."""
    if not spread:
        return ""
    metrics = [metric for metric in METRICS if metric != "training_seconds"]
    count = max(len(entry["seeds"]) for entry in spread.values())
    lines = [f"## Across {count} seeds", "",
             "Mean ± sample standard deviation over the seeds (the weights' initialisation and the batch order; "
             "same photos and split). A published figure more than 2 standard deviations from the mean is called "
             f"a gap; fewer than {SEEDS_FOR_A_VERDICT} seeds give no verdict, and 3 give a rough one.", "",
             "| model | seeds | " + " | ".join(LABELS[metric] for metric in metrics) + " |",
             "|---|---|" + "---:|" * len(metrics)]
    for model, entry in spread.items():
        lines.append(f"| {model} | {', '.join(map(str, entry['seeds']))} | "
                     + " | ".join(_figure(entry[metric]) for metric in metrics) + " |")
    sentences = []
    for model, entry in spread.items():
        parts = [f"{LABELS[metric]}: published {call['published']:.3f}, "
                 + (f"{call['standard_deviations_away']:+.1f} SD from the mean, {call['call']}"
                    if "standard_deviations_away" in call else call["call"])
                 for metric, call in entry["verdicts"].items()]
        if parts:
            sentences.append(f"- **{model}**: " + "; ".join(parts) + ".")
    return "\n".join(lines + ([""] + sentences if sentences else [])) + "\n"
