"""The modern recipe end to end on the shared photos (issue 4): accuracy per seed, wall times,
time to 75% test accuracy, model size and single-photo latency. Prints one JSON document.

    .venv/bin/python benchmarks/modern_recipe.py                 # resnet9, 3 seeds (long)
    .venv/bin/python benchmarks/modern_recipe.py --quick         # smoke test, a few minutes

Splits (stratified, class-balanced, seeded): 4,096 training photos as the tutorial, 500 for
validation (every choice: threshold, best epoch), 1,000 for test (never used for a choice; it
is scored after every epoch only to report when 75% was reached). A second row trains on every
shared photo outside validation and test, to show how accuracy grows with data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cnnlab.backend import configure_keras  # noqa: E402
from cnnlab.runtime import prepare_process  # noqa: E402

if __name__ == "__main__":  # the allocator settings the cnnlab command runs with (runtime.py)
    prepare_process(sys.argv[1:], command=[sys.executable, str(Path(__file__).resolve())])
configure_keras()

import numpy as np  # noqa: E402

from cnnlab.data.cache import PrepareOptions, prepare  # noqa: E402
from cnnlab.data.decode import DecodeOptions, decode_image  # noqa: E402
from cnnlab.data.reader import open_cache  # noqa: E402
from cnnlab.data.splits import SplitOptions  # noqa: E402
from cnnlab.metrics import accuracy_at  # noqa: E402
from cnnlab.models import get_model_spec  # noqa: E402
from workspace import work_folder  # noqa: E402
from cnnlab.training.batches import keras, to_model_input  # noqa: E402
from cnnlab.runs import TrainConfig  # noqa: E402
from cnnlab.runs import Run  # noqa: E402
from cnnlab.training.evaluation import evaluate_run, predict_probabilities  # noqa: E402
from cnnlab.runs.files import read_state  # noqa: E402
from cnnlab.training.trainer import train  # noqa: E402


class TestAccuracyPerEpoch(keras.callbacks.Callback):
    """Scores the test split after each committed epoch (reporting only, never a choice)."""

    def __init__(self, cache, pixel_scale: str, tta_flip: bool):
        super().__init__()
        self.cache, self.pixel_scale, self.tta_flip = cache, pixel_scale, tta_flip
        self.rows = cache.indices("test")
        self.history: list[float] = []
        self.seconds = 0.0  # time spent here, which the benchmark subtracts from the recipe's wall time

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        probabilities, _ = predict_probabilities(self.model, self.cache, self.rows, self.pixel_scale, tta_flip=self.tta_flip)
        self.history.append(float(accuracy_at(self.cache.labels[self.rows], probabilities, 0.5)))
        self.seconds += time.perf_counter() - started


def single_photo_latency(run: Path, photo: Path, size, fit: str, pixel_scale: str, repeats: int = 30) -> dict:
    """Seconds from a JPEG file to a probability, one photo at a time (decode + forward)."""
    model = Run.open(run).build_model()
    options = DecodeOptions(size[0], size[1], fit)
    timings = []
    for _ in range(repeats + 3):
        started = time.perf_counter()
        pixels = decode_image(photo.read_bytes(), options)[None]
        keras.ops.convert_to_numpy(model(to_model_input(pixels, pixel_scale), training=False))
        timings.append(time.perf_counter() - started)
    timings = np.array(timings[3:]) * 1000
    return {"p50_ms": round(float(np.percentile(timings, 50)), 2), "p95_ms": round(float(np.percentile(timings, 95)), 2)}


SEED_RESULT = "benchmark-seed.json"


def run_seed(model: str, cache_dir: Path, out: Path, seed: int, epochs: int | None) -> dict:
    """One seed end to end. Its result is saved in the run folder, so a benchmark that is run
    again with the same --work reuses finished seeds (re-scored, since the evaluation is cheap
    and the metric code may have changed) instead of training them again."""
    saved = out / SEED_RESULT
    if saved.exists():
        result = json.loads(saved.read_text())
        evaluation = evaluate_run(out)
        result.update(_scores(evaluation), reused_from_an_earlier_invocation=True)
        return result
    result = _train_seed(model, cache_dir, out, seed, epochs)
    saved.write_text(json.dumps(result))
    return result


def _scores(evaluation: dict) -> dict:
    test = evaluation["splits"]["test"]
    return {
        "test_accuracy_at_validation_threshold": test["accuracy_at_validation_threshold"],
        "validation_threshold": test.get("validation_threshold"),
        "test_accuracy_at_0.5": test["accuracy_at_0.5"],
        "test_roc_auc": test["roc_auc"],
        "val_accuracy_at_0.5": evaluation["splits"]["val"]["accuracy_at_0.5"],
    }


def _train_seed(model: str, cache_dir: Path, out: Path, seed: int, epochs: int | None) -> dict:
    cache = open_cache(cache_dir)
    recipe = get_model_spec(model).recipe
    scorer = TestAccuracyPerEpoch(cache, recipe.pixel_scale, recipe.tta_flip)
    started = time.perf_counter()
    # A seed cut short by an earlier invocation continues from its last epoch; the epochs before
    # were not scored on test here (None), so time-to-75% counts from the epochs seen.
    earlier = (read_state(out) or {}).get("epochs_done", 0)
    state = train(TrainConfig(model, str(cache_dir), str(out), epochs=epochs, seed=seed), resume=earlier > 0,
                  show_progress=False, stream=sys.stderr, callbacks=[scorer])
    scorer.history = [None] * earlier + scorer.history
    evaluation = evaluate_run(out)
    wall = time.perf_counter() - started
    elapsed = np.cumsum([entry["seconds"] for entry in state["history"]])
    reached = [float(t) for t, accuracy in zip(elapsed, scorer.history) if accuracy is not None and accuracy >= 0.75]
    validation = [entry.get("val_accuracy") or 0.0 for entry in state["history"]]

    def seconds_to_validation(level: float):
        times = [float(t) for t, accuracy in zip(elapsed, validation) if accuracy >= level]
        return round(times[0], 1) if times else None
    return {
        "seed": seed,
        **_scores(evaluation),
        "best_epoch": state.get("best_epoch"), "epochs": state["epochs_done"],
        "training_seconds": state["training_seconds"],
        # The recipe's own cost: everything but this benchmark's per-epoch test scoring.
        "train_and_evaluate_wall_seconds": round(wall - scorer.seconds, 1),
        "per_epoch_test_scoring_seconds": round(scorer.seconds, 1),
        "test_accuracy_per_epoch": [None if a is None else round(a, 4) for a in scorer.history],
        "seconds_to_75_percent_test_accuracy": round(reached[0], 1) if reached else None,
        # Training seconds (epochs' wall time, validation included) until validation accuracy at 0.5 first reached it.
        "seconds_to_validation_accuracy": {f"{level:.2f}": seconds_to_validation(level) for level in (0.75, 0.85, 0.90)},
        "model_file_megabytes": evaluation["model_file_megabytes"],
        "parameters": evaluation["parameters"],
    }


def summarise(rows: list[dict]) -> dict:
    accuracies = [row["test_accuracy_at_validation_threshold"] for row in rows]
    return {
        "test_accuracy_mean": round(statistics.mean(accuracies), 4),
        "test_accuracy_spread": [round(min(accuracies), 4), round(max(accuracies), 4)],
        "test_accuracy_stdev": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else None,
        "test_accuracy_at_0.5_mean": round(statistics.mean(row["test_accuracy_at_0.5"] for row in rows), 4),
        "train_and_evaluate_wall_seconds_mean": round(statistics.mean(r["train_and_evaluate_wall_seconds"] for r in rows), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA", str(REPOSITORY.parent / "shared/datasets/dogs-vs-cats/train")))
    parser.add_argument("--model", default="resnet9")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here (to add seeds to earlier runs)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--work", help="folder for caches and runs (default: a temporary one, removed at the end)")
    parser.add_argument("--quick", action="store_true", help="resnet9-tiny, 256 training photos, 1 seed, 2 epochs")
    parser.add_argument("--no-all-data", action="store_true", help="skip the row trained on every remaining photo")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.model, arguments.seeds, arguments.epochs = "resnet9-tiny", 1, arguments.epochs or 2
    recipe = get_model_spec(arguments.model).recipe
    with work_folder(arguments.work, "cnnlab-modern-") as work:
        result = measure(arguments, recipe, work)
    json.dump(result, sys.stdout, indent=1)
    print()


def measure(arguments, recipe, work: Path) -> dict:
    decode = DecodeOptions(recipe.input_width, recipe.input_height, recipe.fit)
    train_total = 256 if arguments.quick else 4096
    val_total, test_total = (100, 200) if arguments.quick else (500, 1000)
    started = time.perf_counter()
    result = {"benchmark": "modern_recipe", "quick": arguments.quick, "model": arguments.model,
              "recipe": recipe.to_dict(), "work": arguments.work, "rows": {}}
    rows = {"tutorial_size_train": (train_total, range(arguments.first_seed, arguments.first_seed + arguments.seeds))}
    if not arguments.no_all_data:
        rows["all_remaining_photos_train"] = (None, range(1))
    for label, (train_count, seeds) in rows.items():
        cache_dir = work / f"cache-{label}"
        prepare(arguments.data, cache_dir, PrepareOptions(decode, SplitOptions("stratified", train_count, val_total, test_total, seed=0)),
                show_progress=False)
        cache = open_cache(cache_dir)
        per_seed = [run_seed(arguments.model, cache_dir, work / f"run-{label}-seed{seed}", seed, arguments.epochs) for seed in seeds]
        result["rows"][label] = {"train_images": int(len(cache.indices("train"))), "val_images": int(len(cache.indices("val"))),
                                 "test_images": int(len(cache.indices("test"))), "seeds": per_seed, **summarise(per_seed)}
    first_run = work / f"run-tutorial_size_train-seed{arguments.first_seed}"
    photo = Path(open_cache(work / "cache-tutorial_size_train").paths([0])[0])
    result["single_photo_latency"] = single_photo_latency(first_run, photo, (recipe.input_width, recipe.input_height),
                                                          recipe.fit, recipe.pixel_scale)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    return result


if __name__ == "__main__":
    main()
