"""Choosing the modern recipe by measurement (issue 4): a grid of resnet9 variants (input size,
width, epochs, learning rate, batch, label smoothing, EMA, layer order), each trained on the
same splits as benchmarks/modern_recipe.py, with validation and test accuracy per seed.

Two halves, because accuracy and CPU cost can be measured in different places:
    python benchmarks/recipe_sweep.py train --data DIR --work W --parallel 6 > rows.jsonl
        trains every configuration (on a GPU machine this takes minutes; the accuracy of a
        configuration does not depend on where it trained, up to run-to-run noise);
    python benchmarks/recipe_sweep.py cost > cost.json
        times a training step of each distinct architecture on this machine's CPU and turns
        it into estimated training seconds for each configuration (steps x epochs).
Rows are printed as JSON lines as they finish, so a run cut short still reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY / "src"), str(REPOSITORY / "benchmarks")]

BASE = {"size": 64, "stem": 24, "widths": [48, 96, 192], "epochs": 16, "lr": 2e-3, "batch": 64,
        "smoothing": 0.1, "ema": 0.0, "pool_first": True, "weight_decay": 0.05, "translate": None}
WIDE = {"stem": 32, "widths": [64, 128, 256]}


def grid() -> list[dict]:
    """The configurations, each a change from BASE (the resnet9 recipe as first registered)."""
    changes = [
        {}, {"epochs": 32},
        {"size": 80}, {"size": 80, "epochs": 32},
        {"size": 96}, {"size": 96, "epochs": 32},
        {"size": 112, "epochs": 16},
        {**WIDE}, {**WIDE, "epochs": 32}, {**WIDE, "size": 80, "epochs": 24},
        {"epochs": 32, "lr": 4e-3}, {"epochs": 32, "smoothing": 0.2}, {"epochs": 32, "ema": 0.99},
        {"epochs": 32, "batch": 128, "lr": 4e-3}, {"pool_first": False},
        {"size": 80, "epochs": 48},
    ]
    configurations = []
    for index, change in enumerate(changes):
        for seed in (0, 1):
            configurations.append({**BASE, **change, "id": index, "seed": seed})
    return configurations


def recipe_for(configuration: dict):
    from cnnlab.models.modern import MODERN_AUGMENT, modern_recipe

    augment = MODERN_AUGMENT
    if configuration["translate"] is not None:
        augment = dataclasses.replace(augment, translate=configuration["translate"])
    size = configuration["size"]
    return dataclasses.replace(
        modern_recipe(configuration["epochs"], configuration["lr"]), input_width=size, input_height=size,
        batch_size=configuration["batch"], label_smoothing=configuration["smoothing"], ema=configuration["ema"],
        weight_decay=configuration["weight_decay"], augment=augment)


def register_configuration(configuration: dict) -> str:
    from cnnlab.models import ModelSpec, register
    from cnnlab.models.modern import build_resnet9

    name = f"sweep-{configuration['id']}"
    stem, widths, pool_first = configuration["stem"], tuple(configuration["widths"]), configuration["pool_first"]

    def build(shape, classes):
        return build_resnet9(name, shape, classes, stem, widths, pool_first=pool_first)

    register(ModelSpec(name=name, description="sweep", build=build, recipe=recipe_for(configuration), family="modern"))
    return name


def train_one(job: dict) -> dict:
    import torch

    torch.set_num_threads(job.pop("threads"))
    from modern_recipe import TestAccuracyPerEpoch

    from cnnlab.data.reader import open_cache
    from cnnlab.runs import Run, TrainConfig
    from cnnlab.training.evaluation import evaluate_run
    from cnnlab.training.trainer import train

    configuration = job["configuration"]
    name = register_configuration(configuration)
    cache = open_cache(job["cache"])
    recipe = recipe_for(configuration)
    scorer = TestAccuracyPerEpoch(cache, recipe.pixel_scale, recipe.tta_flip)
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        state = train(TrainConfig(name, job["cache"], job["out"], seed=configuration["seed"], any_input_size=True), show_progress=False,
                      stream=quiet, callbacks=[scorer])
    evaluation = evaluate_run(job["out"])
    return {**configuration, "val_accuracy": evaluation["splits"]["val"]["accuracy_at_0.5"],
            "test_accuracy": evaluation["splits"]["test"]["accuracy_at_validation_threshold"],
            "test_roc_auc": evaluation["splits"]["test"]["roc_auc"], "best_epoch": state.get("best_epoch"),
            "test_accuracy_per_epoch": [round(a, 4) for a in scorer.history],
            "seconds_here": round(time.perf_counter() - started, 1), "precision": Run(job["out"]).precision}


def command_train(arguments) -> None:
    from cnnlab.data.cache import PrepareOptions, prepare
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.data.splits import SplitOptions

    work = Path(arguments.work)
    configurations = [c for c in grid() if arguments.only is None or c["id"] in arguments.only]
    if arguments.max_epochs:  # smoke tests
        configurations = [{**c, "epochs": min(c["epochs"], arguments.max_epochs)} for c in configurations]
    jobs = []
    for configuration in configurations:
        size = configuration["size"]
        cache = work / f"cache-{size}"
        if not (cache / "manifest.json").exists():
            prepare(arguments.data, cache, PrepareOptions(DecodeOptions(size, size, "crop"),
                                                          SplitOptions("stratified", 4096, 500, 1000, seed=0)),
                    show_progress=False)
        out = work / f"run-{configuration['id']}-seed{configuration['seed']}"
        jobs.append({"configuration": configuration, "cache": str(cache), "out": str(out), "threads": arguments.threads})
    # The longest first, so that the pool does not end waiting on one straggler.
    jobs.sort(key=lambda job: -job["configuration"]["epochs"] * job["configuration"]["size"] ** 2)
    context = multiprocessing.get_context("spawn")
    with context.Pool(arguments.parallel, maxtasksperchild=1) as pool:
        for row in pool.imap_unordered(train_one, jobs):
            print(json.dumps(row), flush=True)


def command_cost(arguments) -> None:
    """Seconds per training step on this machine's CPU, per distinct architecture and batch."""
    from cnnlab.backend import configure_keras

    configure_keras()
    import keras
    import numpy as np

    from cnnlab.models import build_model, get_model_spec

    measured = {}
    rows = []
    for configuration in grid():
        if configuration["seed"] != 0 or (arguments.only is not None and configuration["id"] not in arguments.only):
            continue
        key = (configuration["size"], configuration["stem"], tuple(configuration["widths"]), configuration["batch"],
               configuration["pool_first"])
        if key not in measured:
            name = register_configuration(configuration)
            recipe = get_model_spec(name).recipe
            model = build_model(name, recipe.input_shape(), 2, precision=recipe.precision)
            model.compile(optimizer=recipe.make_optimizer(100), loss=recipe.make_loss(2), metrics=["accuracy", "mse"])
            batch = configuration["batch"]
            images = np.random.rand(batch, *recipe.input_shape()).astype("float32")
            labels = np.random.randint(0, 2, (batch, 1)).astype("float32")
            for _ in range(3):
                model.train_on_batch(images, labels)
            started = time.perf_counter()
            for _ in range(arguments.steps):
                model.train_on_batch(images, labels)
            measured[key] = (time.perf_counter() - started) / arguments.steps
            keras.backend.clear_session()
        step = measured[key]
        steps = -(-4096 // configuration["batch"]) * configuration["epochs"]
        rows.append({"id": configuration["id"], "size": configuration["size"], "widths": configuration["widths"],
                     "batch": configuration["batch"], "epochs": configuration["epochs"],
                     "seconds_per_step": round(step, 4), "estimated_training_seconds": round(step * steps, 1)})
        print(json.dumps(rows[-1]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train every configuration; JSON lines")
    train_parser.add_argument("--data", required=True)
    train_parser.add_argument("--work", required=True)
    train_parser.add_argument("--parallel", type=int, default=1)
    train_parser.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    train_parser.add_argument("--only", type=int, nargs="*", help="configuration ids to run")
    train_parser.add_argument("--max-epochs", type=int, help="cap every configuration's epochs (smoke test)")
    cost_parser = commands.add_parser("cost", help="CPU seconds per step and per configuration; JSON lines")
    cost_parser.add_argument("--steps", type=int, default=8)
    cost_parser.add_argument("--only", type=int, nargs="*", help="configuration ids to time")
    arguments = parser.parse_args()
    command_train(arguments) if arguments.command == "train" else command_cost(arguments)


if __name__ == "__main__":
    main()
