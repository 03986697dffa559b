"""`cnnlab train`: fit a registered model on a prepared cache into a resumable run folder."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from cnnlab.info import library_versions
from cnnlab.backend import resolve_precision
from cnnlab.models import build_model, count_parameters, get_model_spec
from cnnlab.training import distributed, train_step
from cnnlab.training import run_folder as folder
from cnnlab.training.batches import CacheBatches
from cnnlab.backend import keras
from cnnlab.training.config import TrainConfig
from cnnlab.training.progress_callback import ProgressCallback
from cnnlab.training.train_step import automatic_micro_batch_size, validation_batch_size
from cnnlab.training.training_data import open_training_data, photos_per_epoch
from cnnlab.errors import UserError


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
    """Checkpoints every finished epoch into the run folder and applies early stopping.

    With several workers each one keeps the same state from the combined epoch logs (so they
    stop together), and rank 0 alone writes."""

    def __init__(self, run: Path, state: dict, optimizer, train_batches: CacheBatches, patience: int | None,
                 workers: distributed.Workers = distributed.SINGLE, counts: tuple[int, int] = (1, 1)):
        super().__init__()
        self.workers = workers
        self.counts = counts
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
        logs = logs if logs is not None else {}
        # In place: the progress line (a later callback) then shows all workers' figures too.
        logs.update(distributed.combine_logs(logs, *self.counts, self.workers))
        entry = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.epoch_started, 3)}
        for key, value in sorted(logs.items()):
            name = key.replace("binary_accuracy", "accuracy").replace("categorical_accuracy", "accuracy")
            # A diverged epoch (NaN/inf loss) is recorded as null: JSON has no NaN, and a crash
            # here would lose the whole run.
            entry[name if name.startswith("val_") else f"train_{name}"] = _finite_or_none(value)
        entry["learning_rate"] = float(keras.ops.convert_to_numpy(self.optimizer_.learning_rate))
        state = dict(self.state)
        number = f"{epoch + 1:04d}"
        if self.workers.is_main:
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
        if self.workers.is_main:
            folder.write_json(self.run / folder.STATE_NAME, state)  # the commit point
            publish_committed_state(self.run, state)
        self.state.clear()
        self.state.update(state)


class AverageStatistics(keras.callbacks.Callback):
    """After an epoch's last training step, before validation and the checkpoint: average the
    workers' batch-norm statistics (cnnlab.training.distributed.average_statistics)."""

    def __init__(self, workers: distributed.Workers, steps: int):
        super().__init__()
        self.workers, self.steps = workers, steps

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.steps:
            distributed.average_statistics(self.model, self.workers)


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


def _check_run_folder(run: Path, resume: bool, config: TrainConfig | None = None) -> dict | None:
    state = folder.read_state(run)
    if state is None and resume and config is not None and _started_by(run, config):
        return None  # cut before its first epoch was committed: start it again in place
    if state is not None and not resume:
        raise UserError(f"{run} already holds a run; pass --resume to continue it, or choose another --out")
    if state is None and run.exists() and any(p for p in run.iterdir() if not p.name.startswith(".")):
        if resume:
            raise UserError(f"{run}: no finished epoch to resume from; remove the folder or choose another --out")
        raise UserError(f"{run} exists and is not empty; choose another --out (cnnlab never overwrites a folder)")
    return state


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True, stream=None,
          callbacks: list | None = None) -> dict:
    """Train (or resume) a run. Returns the final state dict; raises ValueError on bad input.

    `callbacks` are extra Keras callbacks run after the epoch is committed (benchmarks use them
    to score the test split per epoch; nothing they do can change what is checkpointed).
    Under `torchrun` (distributed.start() called first) every worker runs this same function."""
    config.validate()
    workers = distributed.current()
    run = Path(config.out)
    # Rank 0 alone reads the run folder and gives the others what it found (or its refusal).
    plan = distributed.from_main(workers, lambda: _plan(run, config, resume or workers.restart_count > 0))
    state = plan["state"]
    if state is not None:
        # A resumed run continues exactly as it was configured, but reads the cache and run
        # folder where the caller says they are now: a relative --data stored by a run started
        # in another directory would not open (the split hash check below guards the data).
        config = dataclasses.replace(TrainConfig.from_dict(plan["train"]), cache=config.cache, out=config.out)
        if state.get("finished"):
            return state
    recipe = config.recipe()
    data = open_training_data(config.cache, workers)
    if state is not None and plan["split_hash"] != data.split_hash:
        raise UserError(f"{run} was trained on another split of the data (split hash differs); "
                         "resume with the same cache or start a new run")
    cache = data.cache
    num_classes = len(cache.classes)
    train_rows = subset(cache.indices("train"), cache.labels, config.train_limit, config.seed)
    val_rows = subset(cache.indices("val"), cache.labels, config.val_limit, config.seed)
    keras.utils.set_random_seed(config.seed)
    height, width, channels = cache.image_shape
    input_shape = (channels, height, width) if keras.config.image_data_format() == "channels_first" else (height, width, channels)
    # 'auto' is settled once, when the run starts, and stored: a resumed run or an evaluation
    # on another machine rebuilds the model in the precision it was trained in.
    precision = resolve_precision(recipe.precision) if state is None else plan["precision"]
    precision = distributed.from_main(workers, lambda: precision)  # workers' CPUs could differ
    with distributed.scope(workers):  # TensorFlow's strategy must create the variables
        model = build_model(config.model, input_shape, num_classes, precision=precision)
    if state is not None and workers.reads_run_folder:
        publish_committed_state(run, state)
        # Before compiling: the file holds no optimizer, and a compiled model warns that it
        # skipped loading one (the optimizer is restored from its own checkpoint below).
        model.load_weights(run / state["last_weights"])
    initial = None
    if state is None and config.init_weights and workers.is_main:
        # Before anything is written: weights that do not fit leave no half-made run folder.
        from cnnlab.models.transfer import apply_initial_weights

        initial = apply_initial_weights(model, config.init_weights)
    train_batches, val_batches = data.batches(train_rows, val_rows, recipe, config.seed,
                                              epoch=0 if state is None else state["epochs_done"],
                                              validation_batch=validation_batch_size(model, recipe.batch_size))
    with distributed.scope(workers):
        optimizer = _compile(model, recipe, num_classes, len(train_batches))
    distributed.prepare_model(model, workers)
    if state is None:
        description = data.description(train_rows, val_rows)  # on every worker: counts are summed over them
        if workers.is_main:
            run.mkdir(parents=True, exist_ok=True)
            _write_description(run, config, recipe, data, model, description, input_shape, precision, initial, workers)
        state = {"epochs_done": 0, "history": [], "best_val_loss": None}
    elif workers.reads_run_folder:
        with distributed.scope(workers):
            folder.load_optimizer(optimizer, model, run / state["last_optimizer"])
    else:
        optimizer.build(model.trainable_variables)
    distributed.broadcast_variables(optimizer.variables, workers)
    # DistributedDataParallel copies rank 0's (loaded or initial) weights to every worker here.
    forward = distributed.wrap(model, workers) if workers.on_torch else None
    micro_batch_size = config.micro_batch_size if config.micro_batch_size is not None else \
        automatic_micro_batch_size(model, train_batches.batch_size // workers.world_size)
    train_step.install(model, micro_batch_size or None, forward)
    callbacks = [
        *_ema_callbacks(recipe, resumed=state["epochs_done"] > 0),
        *([AverageStatistics(workers, len(train_batches))] if workers.on_torch else []),
        EpochCommit(run, state, optimizer, train_batches, config.patience, workers,
                    counts=(photos_per_epoch(train_batches), len(val_batches.rows))),
        ProgressCallback(config.model, recipe.epochs, len(train_batches), live=None if show_progress else False, stream=stream),
        *(callbacks or []),
    ]
    if state["epochs_done"] < recipe.epochs and not state.get("stopped_early"):
        model.fit(train_batches, validation_data=val_batches, epochs=recipe.epochs, initial_epoch=state["epochs_done"],
                  callbacks=callbacks, verbose=0, shuffle=False)
    state["finished"] = True
    state["training_seconds"] = round(sum(entry["seconds"] for entry in state["history"]), 2)
    if workers.is_main:
        folder.write_json(run / folder.STATE_NAME, state)
    return state


def _plan(run: Path, config: TrainConfig, resume: bool) -> dict:
    """What the run folder says: a fresh start (state None) or the state, stored configuration,
    precision and split hash to resume with."""
    state = _check_run_folder(run, resume, config)
    if state is None:
        return {"state": None}
    stored = folder.read_json(run / "config.json")
    return {"state": state, "train": stored["train"], "precision": stored.get("precision", "float32"),
            "split_hash": folder.read_json(run / "data.json")["split_hash"]}


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


def _started_by(run: Path, config: TrainConfig) -> bool:
    """True when `run` holds only what this same configuration writes before its first epoch."""
    try:
        return folder.read_json(run / "config.json")["train"] == config.to_dict()
    except (OSError, ValueError, KeyError):
        return False


def _write_description(run, config, recipe, data, model, description: dict, input_shape, precision,
                       initial, workers) -> None:
    spec = get_model_spec(config.model)
    folder.write_json(run / "config.json", {
        "train": config.to_dict(), "recipe": recipe.to_dict(), "model_family": spec.family,
        "model_description": spec.description, "input_shape": list(input_shape),
        "image_data_format": keras.config.image_data_format(), "backend": keras.backend.backend(),
        "parameters": count_parameters(model), "precision": precision, "initial_weights": initial,
        "workers": workers.world_size,
    })
    folder.write_json(run / "classes.json", data.cache.classes)
    folder.write_json(run / "data.json", {"cache": str(Path(config.cache).resolve()),
                                          **description})
    folder.write_json(run / "versions.json", library_versions())
