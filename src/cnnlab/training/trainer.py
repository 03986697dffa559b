"""`cnnlab train`: fit a registered model on a prepared cache into a resumable run folder."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from cnnlab.data.reader import Cache, open_cache
from cnnlab.info import library_versions
from cnnlab.runtime import resolve_precision
from cnnlab.models import build_model, count_parameters, get_model_spec
from cnnlab.training import run_folder as folder
from cnnlab.training.batches import CacheBatches, keras
from cnnlab.training.config import TrainConfig
from cnnlab.training.progress_callback import ProgressCallback


def subset(rows: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A seeded subset of `limit` rows that keeps the classes as balanced as the split is."""
    if limit is None or limit >= len(rows):
        return rows
    generator = np.random.default_rng([seed, 12345])
    by_class = [generator.permutation(rows[labels[rows] == label]) for label in np.unique(labels[rows])]
    interleaved = [row for group in zip(*by_class) for row in group]
    leftovers = [row for group in by_class for row in group[min(map(len, by_class)):]]
    return np.sort(np.array((interleaved + leftovers)[:limit]))


def metric_names(num_classes: int) -> list:
    accuracy = "binary_accuracy" if num_classes == 2 else "categorical_accuracy"
    return [keras.metrics.MeanSquaredError(name="mse"), keras.metrics.get(accuracy)]


def _compile(model, recipe, num_classes: int, steps_per_epoch: int | None = None):
    optimizer = recipe.make_optimizer(steps_per_epoch)
    model.compile(optimizer=optimizer, loss=recipe.make_loss(num_classes), metrics=metric_names(num_classes))
    return optimizer


class EpochCommit(keras.callbacks.Callback):
    """Checkpoints every finished epoch into the run folder and applies early stopping."""

    def __init__(self, run: Path, state: dict, optimizer, train_batches: CacheBatches, patience: int | None):
        super().__init__()
        self.run = run
        self.state = state
        self.optimizer_ = optimizer
        self.train_batches = train_batches
        self.patience = patience
        self.epoch_started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.train_batches.set_epoch(epoch)
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        entry = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.epoch_started, 3)}
        for key, value in sorted(logs.items()):
            name = key.replace("binary_accuracy", "accuracy").replace("categorical_accuracy", "accuracy")
            # A diverged epoch (NaN/inf loss) is recorded as null: JSON has no NaN, and a crash
            # here would lose the whole run.
            entry[name if name.startswith("val_") else f"train_{name}"] = _finite_or_none(value)
        entry["learning_rate"] = float(keras.ops.convert_to_numpy(self.optimizer_.learning_rate))
        state = dict(self.state)
        number = f"{epoch + 1:04d}"
        checkpoint = self.run / "checkpoint"
        checkpoint.mkdir(exist_ok=True)
        folder.save_weights(self.model, checkpoint / f"epoch-{number}.weights.h5")
        folder.save_optimizer(self.optimizer_, checkpoint / f"optimizer-{number}.npz")
        state["last_weights"] = f"checkpoint/epoch-{number}.weights.h5"
        state["last_optimizer"] = f"checkpoint/optimizer-{number}.npz"
        val_loss = entry.get("val_loss", entry.get("train_loss"))
        # The first epoch is always "best" so that best.weights.h5 exists; after that only a
        # finite, lower loss counts (a null best is beaten by any finite loss).
        improved = "best_weights" not in state or (
            val_loss is not None and (state.get("best_val_loss") is None or val_loss < state["best_val_loss"]))
        if improved:
            state.update(best_val_loss=val_loss, best_epoch=epoch + 1, best_weights=state["last_weights"], epochs_without_improvement=0)
        else:
            state["epochs_without_improvement"] = state.get("epochs_without_improvement", 0) + 1
        state["epochs_done"] = epoch + 1
        state["history"] = state.get("history", []) + [entry]
        stop = self.patience is not None and state["epochs_without_improvement"] >= self.patience
        if stop:
            state["stopped_early"] = True
            self.model.stop_training = True
        folder.write_json(self.run / folder.STATE_NAME, state)  # the commit point
        publish_committed_state(self.run, state)
        self.state.clear()
        self.state.update(state)


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def publish_committed_state(run: Path, state: dict) -> None:
    """Derive metrics.jsonl, last/best.weights.h5 from the committed state.json. Called after
    every commit and again on resume: a kill between the commit and these writes would
    otherwise leave them one epoch behind for good when no epoch remains to be trained."""
    folder.write_metrics_file(run, state["history"])
    folder.publish(run, run / state["last_weights"], "last.weights.h5")
    folder.publish(run, run / state["best_weights"], "best.weights.h5")
    folder.remove_unreferenced_checkpoints(run, state)


def _check_run_folder(run: Path, resume: bool) -> dict | None:
    state = folder.read_state(run)
    if state is not None and not resume:
        raise ValueError(f"{run} already holds a run; pass --resume to continue it, or choose another --out")
    if state is None and run.exists() and any(p for p in run.iterdir() if not p.name.startswith(".")):
        if resume:
            raise ValueError(f"{run}: no finished epoch to resume from; remove the folder or choose another --out")
        raise ValueError(f"{run} exists and is not empty; choose another --out (cnnlab never overwrites a folder)")
    return state


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True, stream=None,
          callbacks: list | None = None) -> dict:
    """Train (or resume) a run. Returns the final state dict; raises ValueError on bad input.

    `callbacks` are extra Keras callbacks run after the epoch is committed (benchmarks use them
    to score the test split per epoch; nothing they do can change what is checkpointed)."""
    config.validate()
    run = Path(config.out)
    state = _check_run_folder(run, resume)
    if state is not None:
        stored = TrainConfig.from_dict(folder.read_json(run / "config.json")["train"])
        # A resumed run continues exactly as it was configured, but reads the cache and run
        # folder where the caller says they are now: a relative --data stored by a run started
        # in another directory would not open (the split hash check below guards the data).
        config = dataclasses.replace(stored, cache=config.cache, out=config.out)
        if state.get("finished"):
            return state
    recipe = config.recipe()
    cache = open_cache(config.cache)
    _check_cache_matches(cache, run, state)
    num_classes = len(cache.classes)
    train_rows = subset(cache.indices("train"), cache.labels, config.train_limit, config.seed)
    val_rows = subset(cache.indices("val"), cache.labels, config.val_limit, config.seed)
    keras.utils.set_random_seed(config.seed)
    height, width, channels = cache.image_shape
    input_shape = (channels, height, width) if keras.config.image_data_format() == "channels_first" else (height, width, channels)
    # 'auto' is settled once, when the run starts, and stored: a resumed run or an evaluation
    # on another machine rebuilds the model in the precision it was trained in.
    precision = resolve_precision(recipe.precision) if state is None else \
        folder.read_json(run / "config.json").get("precision", "float32")
    model = build_model(config.model, input_shape, num_classes, precision=precision)
    if state is not None:
        publish_committed_state(run, state)
        # Before compiling: the file holds no optimizer, and a compiled model warns that it
        # skipped loading one (the optimizer is restored from its own checkpoint below).
        model.load_weights(run / state["last_weights"])
    initial = None
    if state is None and config.init_weights:
        # Before anything is written: weights that do not fit leave no half-made run folder.
        from cnnlab.models.transfer import apply_initial_weights

        initial = apply_initial_weights(model, config.init_weights)
    steps_per_epoch = -(-len(train_rows) // recipe.batch_size)  # as len(CacheBatches): the schedule's unit
    optimizer = _compile(model, recipe, num_classes, steps_per_epoch)
    if state is None:
        run.mkdir(parents=True, exist_ok=True)
        _write_description(run, config, recipe, cache, model, train_rows, val_rows, input_shape, precision, initial)
        state = {"epochs_done": 0, "history": [], "best_val_loss": None}
    else:
        folder.load_optimizer(optimizer, model, run / state["last_optimizer"])
    train_batches = CacheBatches(cache.images, cache.labels, train_rows, num_classes, recipe.batch_size,
                                 recipe.pixel_scale, shuffle=True, seed=config.seed, epoch=state["epochs_done"],
                                 augment=recipe.augment)  # training only: validation sees the photos as they are
    val_batches = CacheBatches(cache.images, cache.labels, val_rows, num_classes, max(recipe.batch_size, 128),
                               recipe.pixel_scale, shuffle=False)
    callbacks = [
        *_ema_callbacks(recipe, resumed=state["epochs_done"] > 0),
        EpochCommit(run, state, optimizer, train_batches, config.patience),
        ProgressCallback(config.model, recipe.epochs, len(train_batches), live=None if show_progress else False, stream=stream),
        *(callbacks or []),
    ]
    if state["epochs_done"] < recipe.epochs and not state.get("stopped_early"):
        model.fit(train_batches, validation_data=val_batches, epochs=recipe.epochs, initial_epoch=state["epochs_done"],
                  callbacks=callbacks, verbose=0, shuffle=False)
    state["finished"] = True
    state["training_seconds"] = round(sum(entry["seconds"] for entry in state["history"]), 2)
    folder.write_json(run / folder.STATE_NAME, state)
    return state


def _ema_callbacks(recipe, resumed: bool) -> list:
    """With weight averaging on, validate and checkpoint the averaged weights.

    Keras' SwapEMAWeights(swap_on_epoch=True) swaps the optimizer's averages into the model for
    validation and again at each epoch end, before EpochCommit (listed after it) saves them, so
    the checkpoint, last.weights.h5 and best.weights.h5 hold exactly the weights whose
    validation loss picked the best epoch; it swaps the raw weights back at the next epoch's
    start. The saved optimizer state then holds the raw weights in its averages' place, so a
    resumed run starts in that swapped state and the callback swaps back before training.
    (Keras averages the trainable weights only: batch-norm statistics stay the live ones.)
    """
    if not recipe.ema:
        return []
    swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    # Private to Keras 3.15 (pinned); the state SwapEMAWeights itself leaves after an epoch end.
    swap._ema_weights_in_model = resumed
    return [swap]


def _check_cache_matches(cache: Cache, run: Path, state: dict | None) -> None:
    if state is None:
        return
    data = folder.read_json(run / "data.json")
    if data["split_hash"] != cache.split_hash:
        raise ValueError(f"{run} was trained on another split of the data (split hash differs); "
                         "resume with the same cache or start a new run")


def _write_description(run, config, recipe, cache, model, train_rows, val_rows, input_shape, precision,
                       initial=None) -> None:
    spec = get_model_spec(config.model)
    folder.write_json(run / "config.json", {
        "train": config.to_dict(), "recipe": recipe.to_dict(), "model_family": spec.family,
        "model_description": spec.description, "input_shape": list(input_shape),
        "image_data_format": keras.config.image_data_format(), "backend": keras.backend.backend(),
        "parameters": count_parameters(model), "precision": precision, "initial_weights": initial,
    })
    folder.write_json(run / "classes.json", cache.classes)
    folder.write_json(run / "data.json", {
        "cache": str(Path(config.cache).resolve()), "split_hash": cache.split_hash,
        "image_file": cache.manifest["image_file"], "decode": cache.manifest["decode"],
        "split": cache.manifest["split"], "train_images": int(len(train_rows)), "val_images": int(len(val_rows)),
        "test_images": int(len(cache.indices("test"))),
    })
    folder.write_json(run / "versions.json", library_versions())
