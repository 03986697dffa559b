"""`cnnlab train`: fit a registered model on a prepared cache into a resumable run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path

from cnnlab.backend import keras, resolve_precision
from cnnlab.data.subset import subset
from cnnlab.errors import UserError
from cnnlab.info import library_versions
from cnnlab.models import build_model, count_parameters, get_model_spec
from cnnlab.runs import Run, TrainConfig
from cnnlab.runs.files import checkpoint_names
from cnnlab.training import distributed, train_step
from cnnlab.training.batches import CacheBatches
from cnnlab.training.from_photos import check_cache_fits
from cnnlab.training.frozen_head import fit_head_as_one_epoch, probe_head, trains_only_head
from cnnlab.training.resume import continued_config
from cnnlab.training.loggers import check_available, make_logs
from cnnlab.training.progress_callback import ProgressCallback
from cnnlab.training.train_step import automatic_micro_batch_size, validation_batch_size
from cnnlab.training.training_data import open_training_data, photos_per_epoch


def metric_names(num_classes: int) -> list:
    accuracy = "binary_accuracy" if num_classes == 2 else "categorical_accuracy"
    return [keras.metrics.MeanSquaredError(name="mse"), keras.metrics.get(accuracy)]


def _compile(model, recipe, num_classes: int, steps_per_epoch: int | None = None, optimizer=None):
    optimizer = optimizer or recipe.make_optimizer(steps_per_epoch)
    model.compile(optimizer=optimizer, loss=recipe.make_loss(num_classes), metrics=metric_names(num_classes))
    return optimizer


class EpochCommit(keras.callbacks.Callback):
    """Checkpoints every finished epoch into the run folder and applies early stopping.

    With several workers each one keeps the same state from the combined epoch logs (so they
    stop together), and rank 0 alone writes."""

    def __init__(self, run: Run, state: dict, optimizer, train_batches: CacheBatches, patience: int | None,
                 workers: distributed.Workers = distributed.SINGLE, counts: tuple[int, int] = (1, 1),
                 saved_model=None):
        super().__init__()
        # What is checkpointed: the whole model, also when fit trains only the layers above a
        # frozen trunk (cnnlab.training.frozen_trunk), whose variables it shares.
        self.saved_model = saved_model
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
        if self.workers.is_main:
            self.run.save_checkpoint(self.saved_model or self.model, self.optimizer_, epoch + 1)
        state["last_weights"], state["last_optimizer"] = checkpoint_names(epoch + 1)
        val_loss = entry.get("val_loss", entry.get("train_loss"))
        # The first epoch is always "best" so that the best weights exist; after that only a
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
            self.run.commit_state(state)  # the commit point
            self.run.publish_committed_state(state)
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


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True, stream=None,
          callbacks: list | None = None) -> dict:
    """Train (or resume) a run. Returns the final state dict; raises ValueError on bad input.

    `callbacks` are extra Keras callbacks run after the epoch is committed (benchmarks use them
    to score the test split per epoch; nothing they do can change what is checkpointed).
    `show_progress=False` keeps a live bar off a terminal: `stream` still gets one line per
    epoch (pass a stream that discards them for silence, as `cnnlab train --quiet` does).
    The experiment logs config.log names (TensorBoard, CSV, MLflow) go into the run folder's
    logs/ (cnnlab.training.loggers); a resumed run continues them.
    Under `torchrun` (distributed.start() called first) every worker runs this same function."""
    config.validate()
    check_available(config.log)  # before anything is written: a missing extra is a one-line error
    workers = distributed.current()
    run = Run(config.out)
    # Rank 0 writes the run folder; it holds it against a second trainer (cnnlab.runs.lock).
    with run.lock() if workers.is_main else contextlib.nullcontext():
        return _train(run, config, resume, workers, show_progress, stream, callbacks)


def _train(run: Run, config: TrainConfig, resume: bool, workers, show_progress: bool, stream, callbacks) -> dict:
    if workers.is_main:
        run.remove_stale_temporaries()  # a killed trainer's half-written files (we hold the lock)
    # Rank 0 alone reads the run folder and gives the others what it found (or its refusal).
    plan = distributed.from_main(workers, lambda: run.resume_plan(resume or workers.restart_count > 0,
                                                                   config.to_dict()))
    state = plan["state"]
    if state is not None:
        # A resumed run continues as it was configured (training.resume says what --epochs may
        # extend), but reads the cache and run folder where the caller says they are now: a
        # relative --cache stored by a run started elsewhere would not open (the split hash
        # check below guards the data).
        stored = TrainConfig.from_dict(plan["train"])
        config, state = continued_config(stored, config, state, run.path)
        if config.epochs != stored.epochs and workers.is_main:
            run.record_configuration(config.to_dict(), {**run.config["recipe"], "epochs": config.recipe().epochs})
        if state.get("finished"):
            return state
    recipe = config.recipe()
    data = open_training_data(config.cache, workers)
    decode = data.manifest["decode"]
    if state is None:  # a resumed run was checked when it started
        check_cache_fits(decode, recipe, config.model, config.any_input_size)
    if config.any_input_size:  # the stored recipe says what is really trained
        recipe = dataclasses.replace(recipe, input_width=int(decode["width"]), input_height=int(decode["height"]),
                                     fit=decode.get("fit", "stretch"))
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
        run.publish_committed_state(state)
        # Before compiling: the file holds no optimizer, and a compiled model warns that it
        # skipped loading one (the optimizer is restored from its own checkpoint below).
        run.load_last_weights(model, state)
    initial = None
    # --init-weights, else the weights the model is published with (ModelSpec.init_weights).
    init_weights = config.init_weights or get_model_spec(config.model).init_weights
    if state is None and init_weights and workers.is_main:
        # Before anything is written: weights that do not fit leave no half-made run folder.
        from cnnlab.models.transfer import apply_initial_weights

        initial = apply_initial_weights(model, init_weights)
    validation_batch = validation_batch_size(model, recipe.batch_size)
    if recipe.head_fit == "logistic" or recipe.cache_frozen_layers:
        # Those photos go through the frozen layers in inference pieces (bounded by
        # cnnlab.models.activations), not as one training-sized batch: Lite0 at 224 got 1-photo
        # batches from the training budget, at half the speed per photo.
        validation_batch = max(validation_batch, recipe.batch_size)
    train_batches, val_batches = data.batches(train_rows, val_rows, recipe, config.seed,
                                              epoch=0 if state is None else state["epochs_done"],
                                              validation_batch=validation_batch)
    with distributed.scope(workers):
        optimizer = _compile(model, recipe, num_classes, len(train_batches))
    distributed.prepare_model(model, workers)
    if state is None:
        description = data.description(train_rows, val_rows)  # on every worker: counts are summed over them
        if workers.is_main:
            _write_description(run, config, recipe, data, model, description, input_shape, precision, initial, workers)
        state = {"epochs_done": 0, "history": [], "best_val_loss": None}
    elif workers.reads_run_folder:
        with distributed.scope(workers):
            run.load_optimizer(optimizer, model, state)
    else:
        optimizer.build(model.trainable_variables)
    distributed.broadcast_variables(optimizer.variables, workers)
    head_only = recipe.head_fit == "logistic" and trains_only_head(model)
    if (recipe.head_fit == "logistic" or recipe.cache_frozen_layers) and workers.world_size > 1:
        raise UserError("head_fit 'logistic' and cache_frozen_layers train in one process; run them without torchrun")
    remaining = state["epochs_done"] < (1 if head_only else recipe.epochs) and not state.get("stopped_early")
    live = None if show_progress else False
    # After EpochCommit: a log mirrors committed epochs only (metrics.jsonl).
    logs = make_logs(run, config.log) if workers.is_main else []
    try:
        with contextlib.ExitStack() as trunk_cache:
            # `fitted` is what model.fit trains: the whole model, or (cache_frozen_layers) the layers
            # above the frozen trunk on its stored outputs; they share the whole model's variables.
            setup_started = time.perf_counter()
            fitted, fit_train, fit_val, features_from = model, train_batches, val_batches, None
            if remaining and recipe.cache_frozen_layers and not head_only:
                from cnnlab.training.frozen_trunk import trunk_outputs

                fitted, fit_train, fit_val, features_from = trunk_cache.enter_context(
                    trunk_outputs(model, train_batches, val_batches, num_classes, stream, live))
                _compile(fitted, recipe, num_classes, optimizer=optimizer)  # the same optimizer: its state is the run's
            # DistributedDataParallel copies rank 0's (loaded or initial) weights to every worker here.
            forward = distributed.wrap(model, workers) if workers.on_torch else None
            micro_batch_size = config.micro_batch_size if config.micro_batch_size is not None else \
                automatic_micro_batch_size(fitted, train_batches.batch_size // workers.world_size)
            train_step.install(fitted, micro_batch_size or None, forward)
            callbacks = [
                *_ema_callbacks(recipe, resumed=state["epochs_done"] > 0),
                *([AverageStatistics(workers, len(train_batches))] if workers.on_torch else []),
                EpochCommit(run, state, optimizer, fit_train, config.patience, workers,
                            counts=(photos_per_epoch(train_batches), len(val_batches.rows)), saved_model=model),
                # One fit replaces every epoch of a frozen backbone's logistic head: its own bars show the
                # features' progress.
                ProgressCallback(config.model, 1, len(train_batches), live=False, stream=stream) if head_only else
                ProgressCallback(config.model, recipe.epochs, len(train_batches), live=live, stream=stream),
                *logs,
                *(callbacks or []),
            ]
            if not remaining:  # every epoch was committed before a cut: the logs still get what they miss
                for log in logs:
                    log.finish_training()
            elif head_only:
                fit_head_as_one_epoch(model, train_batches, val_batches, num_classes, config.seed, state, callbacks,
                                      stream, live)
            else:
                if recipe.head_fit == "logistic" and state["epochs_done"] == 0:
                    probe_head(model, fit_train, fit_val, num_classes, config.seed, state, stream, live,
                               inputs=features_from)
                if features_from is not None or "head_fit" in state:
                    # The frozen layers' outputs and the linear probe, before the first epoch (again after a resume).
                    state["setup_seconds"] = round(state.get("setup_seconds", 0.0) + time.perf_counter() - setup_started, 3)
                fitted.fit(fit_train, validation_data=fit_val, epochs=recipe.epochs,
                           initial_epoch=state["epochs_done"], callbacks=callbacks, verbose=0, shuffle=False)
    finally:
        for log in logs:  # also when training fails: what the logs hold is flushed
            log.close()
    state["finished"] = True
    state["training_seconds"] = round(sum(entry["seconds"] for entry in state["history"]) + state.get("setup_seconds", 0.0), 2)
    if workers.is_main:
        run.commit_state(state)
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


def _write_description(run, config, recipe, data, model, description: dict, input_shape, precision,
                       initial, workers) -> None:
    spec = get_model_spec(config.model)
    run.create(config={
        "train": config.to_dict(), "recipe": recipe.to_dict(), "model_family": spec.family,
        "model_description": spec.description, "input_shape": list(input_shape),
        "image_data_format": keras.config.image_data_format(), "backend": keras.backend.backend(),
        "parameters": count_parameters(model), "precision": precision, "initial_weights": initial,
        # The loss as it is computed: a recipe's 'bce' is categorical cross-entropy for N > 2 classes.
        "loss_function": recipe.make_loss(len(data.cache.classes)).name,
        "workers": workers.world_size,
    }, classes=data.cache.classes, data={"cache": str(Path(config.cache).resolve()), **description},
        versions=library_versions())
