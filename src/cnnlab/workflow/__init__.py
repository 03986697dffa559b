"""The whole workflow from Python, for notebooks and scripts: the same library the CLI calls.

    import cnnlab

    run = cnnlab.train("resnet9-tiny", data="photos/", epochs=5)   # prepares a cache, then trains
    run.evaluate()                     # metrics per split (a table in Jupyter)
    run.predict(["new/cat.jpg"])       # one Prediction per photo
    run.plot_curves(); run.top_losses()
    run.export("model.onnx"); run.report("report.html")
    cnnlab.compare([run, "runs/other"])

Every call raises cnnlab.errors.UserError (a ValueError) with one line when the input is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from cnnlab.workflow.results import Comparison, Evaluation, Prepared, TopLosses
from cnnlab.workflow.trained_run import TrainedRun

__all__ = ["Comparison", "Evaluation", "Prepared", "TopLosses", "TrainedRun", "compare", "open_run", "prepare",
           "train"]


def prepare(photos: str | os.PathLike, cache: str | os.PathLike, *, model: str | None = None,
            size: str | tuple[int, int] = "94x125", fit: str = "stretch", split: str | None = None,
            train: float | int | None = None, val: float | int | None = None, test: float | int | None = None,
            seed: int = 0, workers: int = 0, progress: bool = True) -> Prepared:
    """Decode `photos` once into a cache (incremental: a second call decodes only what changed).

    model: take the size and fit from that model's recipe instead of `size` / `fit`.
    split: 'stratified' (val/test as fractions like 0.2 or total counts) or 'tutorial' (per class).
    """
    from cnnlab.data.cache import PrepareOptions, prepare as prepare_cache
    from cnnlab.data.decode import DecodeOptions, parse_size
    from cnnlab.data.splits import SplitOptions

    if model is not None:
        from cnnlab.models import get_model_spec

        recipe = get_model_spec(model).recipe
        width, height, fit = recipe.input_width, recipe.input_height, recipe.fit
    else:
        width, height = parse_size(size) if isinstance(size, str) else (int(size[0]), int(size[1]))
    options = PrepareOptions(decode=DecodeOptions(width, height, fit), split=SplitOptions(split, train, val, test, seed),
                             workers=workers)
    result = prepare_cache(photos, cache, options, show_progress=progress)
    return Prepared(Path(result.cache_dir), result.summary(), list(result.skipped), result.manifest)


def train(model: str, data: str | os.PathLike | None = None, *, cache: str | os.PathLike | None = None,
          out: str | os.PathLike | None = None, epochs: int | None = None, batch_size: int | None = None,
          learning_rate: float | None = None, resume: bool = False, seed: int = 0, callbacks: list | None = None,
          progress: bool = True, any_input_size: bool = False, workers: int = 0, **settings) -> TrainedRun:
    """Train a registered model on a folder of photos (`data`) or a prepared `cache`.

    data: photos are prepared into `cache` (default: ~/.cache/cnnlab/...) at the recipe's size.
    out: the run folder (default: runs/<model>-<date>-<time>). callbacks: Keras callbacks, run
    after each epoch is committed. settings: any other TrainConfig field (loss, optimizer,
    pixel_scale, precision, patience, train_limit, val_limit, init_weights, micro_batch_size).
    """
    from cnnlab.errors import UserError
    from cnnlab.runs import TrainConfig
    from cnnlab.training.from_photos import is_cache, prepare_for_recipe
    from cnnlab.training.trainer import train as train_run

    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UserError(f"unknown training setting {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    out = Path(out) if out is not None else Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    # os.fspath, not str: cache= and data= may be a Prepared (or any os.PathLike), whose str() is its repr.
    cache_path = os.fspath(cache) if cache is not None else ""
    config = TrainConfig(model=model, cache=cache_path, out=os.fspath(out), epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, seed=seed, any_input_size=any_input_size, **settings)
    if data is not None and is_cache(data) and cache is None:
        config = dataclasses.replace(config, cache=os.fspath(data))
    elif data is not None:
        prepared = prepare_for_recipe(data, config.recipe(), cache, workers=workers, show_progress=progress)
        config = dataclasses.replace(config, cache=str(prepared.cache_dir), photos=os.fspath(data))
    elif cache is None and not resume:
        raise UserError("pass data= (a folder of photos) or cache= (a prepared cache)")
    elif cache is None:
        config = dataclasses.replace(config, cache=str(TrainedRun(out).run.cache_path))
    train_run(config, resume=resume, show_progress=progress, callbacks=callbacks)
    return TrainedRun(out)


def open_run(path: str | os.PathLike) -> TrainedRun:
    """An existing run folder, with the same verbs as a freshly trained one."""
    return TrainedRun(path)


def compare(runs) -> Comparison:
    """Evaluated runs (TrainedRun objects or folders) and reproductions side by side."""
    from cnnlab.experiments.compare import collect, render

    rows = collect([os.fspath(run) for run in runs])
    return Comparison(rows, render(rows))

