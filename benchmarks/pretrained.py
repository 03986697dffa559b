"""Offline ImageNet weights (issue 16): what EfficientNet-Lite0's pretrained features are worth on
the shared photos, and what they cost on this CPU. Prints one JSON document.

    .venv/bin/python benchmarks/pretrained.py --work runs/pretrained    # everything, 3 fine-tuning seeds (long)
    .venv/bin/python benchmarks/pretrained.py --fine-tune-seeds 0       # zero-shot and frozen features only
    .venv/bin/python benchmarks/pretrained.py --quick                   # smoke test (CI), a few minutes

Splits as resnet9's figures (benchmarks/modern_recipe.py): stratified, class-balanced, seed 0;
4,096 training photos, 500 validation, 1,000 test. Rows:
- zero_shot: no training at all. The 1,000-class ImageNet head at 224 x 224 (the weights'
  resolution); a photo is a dog when P(any of ImageNet's 118 dog breeds, classes 151-268)
  exceeds P(its 5 domestic cats, 281-285). Scored on the test photos.
- frozen_features_linear_head (224 px) and frozen_features_linear_head_quick (128 px):
  `cnnlab prepare`, `cnnlab train efficientnet-lite0-linear[-128]` then `cnnlab evaluate` at that
  recipe's size: 1,280 pooled features per training and validation photo computed once,
  scikit-learn's LogisticRegression on them as the output layer (C chosen on validation), then
  the test photos scored at the validation threshold. end_to_end_seconds counts prepare + train
  + evaluate, as a user would wait for them (in one process: the command adds its start-up).
- fine_tuned: `cnnlab train efficientnet-lite0-transfer` (its recipe, the offline weights: the
  linear probe, then the last stage fine-tuned on stored trunk outputs) per seed, then
  `cnnlab evaluate`: test accuracy at the validation threshold, the probe and every epoch,
  wall seconds; end_to_end_seconds_mean adds the 224 px prepare.
- latency_and_size, per model: single_photo_latency (JPEG file to probability, decode + forward)
  and the model file's size.
Quick mode asserts nothing about times: its numbers mean nothing.
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

from cnnlab.backend import keras  # noqa: E402
from cnnlab.data.cache import PrepareOptions, prepare  # noqa: E402
from cnnlab.data.decode import DecodeOptions, decode_file  # noqa: E402
from cnnlab.data.reader import open_cache  # noqa: E402
from cnnlab.data.splits import SplitOptions  # noqa: E402
from cnnlab.models import build_model, get_model_spec  # noqa: E402
from cnnlab.models import efficientnet_lite as lite  # noqa: E402
from cnnlab.models import efficientnet_lite_weights as offline  # noqa: E402
from cnnlab.recipe.pixels import to_model_input  # noqa: E402
from cnnlab.runs import TrainConfig  # noqa: E402
from workspace import work_folder  # noqa: E402
from cnnlab.training.evaluation import evaluate_run  # noqa: E402
from cnnlab.training.trainer import train  # noqa: E402

CAT_CLASSES = slice(281, 286)
DOG_CLASSES = slice(151, 269)
LINEAR_MODEL = "efficientnet-lite0-linear"
TRANSFER_MODEL = "efficientnet-lite0-transfer"
QUICK_LINEAR_MODEL = "efficientnet-lite0-linear-128"
MODELS = (QUICK_LINEAR_MODEL, LINEAR_MODEL, TRANSFER_MODEL)


def log(message: str) -> None:
    print(f"[pretrained] {message}", file=sys.stderr, flush=True)


def no_gradient():
    import contextlib

    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def forward_in_batches(model, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 (n, h, w, 3) -> the model's outputs, inference mode, no gradient graph."""
    outputs = []
    with no_gradient():
        for start in range(0, len(pixels), batch):
            inputs = to_model_input(pixels[start:start + batch], "unit")
            outputs.append(np.asarray(keras.ops.convert_to_numpy(model(inputs, training=False))))
    return np.concatenate(outputs)


def zero_shot(cache, state, count: int | None) -> dict:
    rows = cache.indices("test")[:count]
    paths, labels = cache.paths(rows), cache.labels[rows]
    dog = cache.classes.index("dog")
    side = lite.IMAGENET_INPUT_SIDE
    started = time.perf_counter()
    pixels = np.stack([decode_file(path, DecodeOptions(side, side, "crop"))[0] for path in paths])
    model = lite.build_imagenet_classifier()
    offline.load_imagenet_weights(model, state)
    logits = forward_in_batches(model, pixels, batch=16)
    seconds = time.perf_counter() - started
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    says_dog = probabilities[:, DOG_CLASSES].sum(axis=1) > probabilities[:, CAT_CLASSES].sum(axis=1)
    return {"photos": len(rows), "input": f"{side}x{side} crop", "accuracy": round(float(np.mean(says_dog == (labels == dog))), 4),
            "seconds": round(seconds, 1), "ms_per_photo": round(1000 * seconds / len(rows), 1)}


def prepare_for(model: str, data: str, work: Path, split: SplitOptions) -> Path:
    """A cache of the shared photos at the model's recipe size (the same split for every size)."""
    recipe = get_model_spec(model).recipe
    cache_dir = work / f"cache-{recipe.input_width}x{recipe.input_height}-{recipe.fit}"
    prepare(data, cache_dir, PrepareOptions(DecodeOptions(recipe.input_width, recipe.input_height, recipe.fit), split),
            show_progress=False)
    return cache_dir


def linear_run(model: str, cache_dir: Path, work: Path) -> dict:
    """`cnnlab train efficientnet-lite0-linear[-128]` (features once, logistic regression, C chosen
    on validation), then `cnnlab evaluate`: what a user's two commands give, and their time."""
    out = work / f"run-{model}"
    started = time.perf_counter()
    state = train(TrainConfig(model, str(cache_dir), str(out), seed=0), resume=out.exists(),
                  show_progress=False, stream=sys.stderr)
    trained = time.perf_counter()
    evaluation = evaluate_run(out)
    test = evaluation["splits"]["test"]
    return {"C_chosen_on_validation": state["head_fit"]["regularisation_C"],
            "val_accuracy_at_0.5": evaluation["splits"]["val"]["accuracy_at_0.5"],
            "test_accuracy_at_validation_threshold": test["accuracy_at_validation_threshold"],
            "test_accuracy_at_0.5": test["accuracy_at_0.5"], "test_roc_auc": test["roc_auc"],
            "train_seconds": round(trained - started, 1), "evaluate_seconds": round(time.perf_counter() - trained, 1),
            "fit_seconds": state["head_fit"]["seconds"]}


def fine_tune(cache_dir: Path, work: Path, seed: int, quick: bool) -> dict:
    out = work / f"run-{TRANSFER_MODEL}-seed{seed}"
    started = time.perf_counter()
    limits = {"train_limit": 32, "val_limit": 16, "epochs": 1} if quick else {}
    state = train(TrainConfig(TRANSFER_MODEL, str(cache_dir), str(out), seed=seed, **limits),
                  resume=out.exists(), show_progress=False, stream=sys.stderr)
    evaluation = evaluate_run(out)
    test = evaluation["splits"]["test"]
    return {"seed": seed, "linear_probe": {key: state["head_fit"].get(key) for key in
                                           ("regularisation_C", "val_accuracy", "val_loss", "seconds")},
            "history": [{key: entry.get(key) for key in ("epoch", "seconds", "train_loss", "val_loss", "val_accuracy")}
                        for entry in state["history"]],
            "test_accuracy_at_validation_threshold": test["accuracy_at_validation_threshold"],
            "test_accuracy_at_0.5": test["accuracy_at_0.5"], "test_roc_auc": test["roc_auc"],
            "val_accuracy_at_0.5": evaluation["splits"]["val"]["accuracy_at_0.5"], "epochs": state["epochs_done"],
            "training_seconds": state["training_seconds"],
            "train_and_evaluate_wall_seconds": round(time.perf_counter() - started, 1),
            "model_file_megabytes": evaluation["model_file_megabytes"]}


def latency_and_size(name: str, photo: str, work: Path, repeats: int) -> dict:
    """A fresh model with the offline weights at its recipe size: one JPEG to one probability."""
    recipe = get_model_spec(name).recipe
    model = build_model(name)
    offline.load_imagenet_weights(model)
    options = DecodeOptions(recipe.input_width, recipe.input_height, recipe.fit)
    timings = []
    with no_gradient():
        for _ in range(repeats + 3):
            started = time.perf_counter()
            pixels = decode_file(photo, options)[0][None]
            keras.ops.convert_to_numpy(model(to_model_input(pixels, recipe.pixel_scale), training=False))
            timings.append(time.perf_counter() - started)
    timings = np.array(timings[3:]) * 1000
    weights, whole = work / f"{name}.weights.h5", work / f"{name}.keras"
    model.save_weights(weights)
    model.save(whole)
    return {"single_photo_latency": {"p50_ms": round(float(np.percentile(timings, 50)), 1),
                                     "p95_ms": round(float(np.percentile(timings, 95)), 1), "repeats": repeats},
            "weights_file_megabytes": round(weights.stat().st_size / 1e6, 2),
            "keras_file_megabytes": round(whole.stat().st_size / 1e6, 2)}


def _torch_threads() -> int | None:
    if keras.backend.backend() != "torch":
        return None
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA", str(REPOSITORY.parent / "shared/datasets/dogs-vs-cats/train")))
    parser.add_argument("--work", help="folder for the cache, features and runs (default: a temporary one, removed at the end)")
    parser.add_argument("--fine-tune-seeds", type=int, default=3, help="fine-tuning runs (0 = none)")
    parser.add_argument("--zero-shot-photos", type=int, help="test photos for the zero-shot row (default: all)")
    parser.add_argument("--quick", action="store_true", help="128/50/100 photos, 1 short fine-tuning seed")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice). On a busy "
                        "machine 1 thread can be much faster: EfficientNet's ~300 small operations per forward "
                        "pass each wait at an OpenMP barrier for a descheduled sibling thread")
    arguments = parser.parse_args()
    if arguments.threads:
        import torch

        torch.set_num_threads(arguments.threads)
    seeds = 1 if arguments.quick else arguments.fine_tune_seeds
    zero_shot_photos = 20 if arguments.quick else arguments.zero_shot_photos
    with work_folder(arguments.work, "cnnlab-pretrained-") as work:
        result = measure(arguments, seeds, zero_shot_photos, work)
    json.dump(result, sys.stdout, indent=1)
    print()


def measure(arguments, seeds: int, zero_shot_photos: int | None, work: Path) -> dict:
    train_total, val_total, test_total = (128, 50, 100) if arguments.quick else (4096, 500, 1000)
    result = {"benchmark": "pretrained", "quick": arguments.quick, "work": arguments.work,
              "weights": {"file": f"{offline.WEIGHTS_PACKAGE}/{offline.WEIGHTS_FILE}", "sha256": offline.WEIGHTS_SHA256},
              "recipes": {name: get_model_spec(name).recipe.to_dict() for name in MODELS},
              "load_average_at_start": os.getloadavg()[0], "torch_threads": _torch_threads()}
    began = time.perf_counter()
    split = SplitOptions("stratified", train_total, val_total, test_total, seed=0)
    prepare_seconds = {}
    for row, model in (("frozen_features_linear_head_quick", QUICK_LINEAR_MODEL),
                       ("frozen_features_linear_head", LINEAR_MODEL)):
        log(f"frozen features + logistic regression: cnnlab prepare, cnnlab train {model}, then evaluate")
        started = time.perf_counter()
        cache_dir = prepare_for(model, arguments.data, work, split)
        prepared = time.perf_counter()
        head = linear_run(model, cache_dir, work)
        recipe = get_model_spec(model).recipe
        prepare_seconds[model] = round(prepared - started, 1)
        result[row] = {"model": model, "input": f"{recipe.input_width}x{recipe.input_height} {recipe.fit}",
                       "prepare_seconds": prepare_seconds[model], **head,
                       "end_to_end_seconds": round(time.perf_counter() - started, 1)}
        log(f"{model}: {result[row]}")
    cache = open_cache(cache_dir)
    result["splits"] = {split: int(len(cache.indices(split))) for split in ("train", "val", "test")}
    state = offline.read_verified_state_dict()
    log("zero-shot")
    result["zero_shot"] = zero_shot(cache, state, zero_shot_photos)
    # The transfer recipe's size is the linear one's (224): its cache is that cache, prepared once.
    transfer_cache = prepare_for(TRANSFER_MODEL, arguments.data, work, split) if seeds else None
    rows = []
    for seed in range(seeds):
        log(f"fine-tuning, seed {seed}: cnnlab train {TRANSFER_MODEL}, then evaluate")
        rows.append(fine_tune(transfer_cache, work, seed, arguments.quick))
        log(f"seed {seed}: {rows[-1]}")
    if rows:
        accuracies = [row["test_accuracy_at_validation_threshold"] for row in rows]
        wall = statistics.mean(row["train_and_evaluate_wall_seconds"] for row in rows)
        result["fine_tuned"] = {"seeds": rows, "test_accuracy_mean": round(statistics.mean(accuracies), 4),
                                "test_accuracy_spread": [round(min(accuracies), 4), round(max(accuracies), 4)],
                                "train_and_evaluate_wall_seconds_mean": round(wall, 1),
                                # + `cnnlab prepare` at 224, as the linear row measured it
                                "end_to_end_seconds_mean": round(wall + prepare_seconds[LINEAR_MODEL], 1)}
    result["latency_and_size"] = {name: latency_and_size(name, cache.paths([0])[0], work, 5 if arguments.quick else 30)
                                  for name in MODELS}
    result["load_average_at_end"] = os.getloadavg()[0]
    result["total_seconds"] = round(time.perf_counter() - began, 1)
    return result


if __name__ == "__main__":
    main()
