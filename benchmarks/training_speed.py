"""Training speed: cnnlab's `train` beside the tutorial's own code path and a plain PyTorch loop,
per model, plus the machine's matrix-multiply ceiling. Prints one JSON document on stdout;
progress on stderr.

    .venv/bin/python benchmarks/training_speed.py            # every tutorial model + resnet9
    .venv/bin/python benchmarks/training_speed.py --quick    # smoke test, ~1 minute
    .venv/bin/python benchmarks/training_speed.py --models conv2,resnet9 --paths cnnlab,raw \
        --raw-variants foreach,fused,prefetch                # what could close the gap to raw PyTorch

For each model, fresh processes train two epochs on the same photos with the same model,
recipe and batch size; the second (warm) epoch is timed:
- `cnnlab`: cnnlab.training.trainer.train, as `cnnlab train` runs it: batches streamed from the
  memory-mapped uint8 cache, checkpoints every epoch, the tuned allocator (runtime.py), the
  recipe's precision and layers;
- `tutorial`: the tutorial's way: its whole data set in RAM as NumPy arrays (4,096 training and
  1,024 validation photos, uint8 as `np.array(PIL image)` gives them; float32 for a model whose
  recipe scales pixels to 0-1), Keras' stock loss, `model.fit(x, y, batch_size)`, glibc's
  default allocator, float32. `--hold-timed-only` holds only the timed photos instead.
- `raw`: the model's torch.nn twin (torch_twins.py) in a plain PyTorch loop (raw_torch_loop.py):
  the same photos, batches, augmentation, micro-batches, loss, optimizer constants, schedule and
  precision as the cnnlab row, the photos in RAM, no Keras; the tuned allocator, as cnnlab.
  `--raw-variants` adds one raw row per variant (fused or foreach Adam, channels_last, batches
  assembled in a background thread).
bfloat16 is measured (ceiling, and resnet9's automatic precision) only on a CPU with AMX
(`amx_bf16` in /proc/cpuinfo): elsewhere torch's bfloat16 matrix product is emulated, ~40x slower
than float32. Images/s counts training images (validation is limited to 64 photos in both). Achieved GFLOP/s
is the analytic forward FLOPs x 3 (forward + backward) x images/s; peak RSS is the process's
VmHWM from /proc. Ratios are cnnlab / tutorial and cnnlab / raw, from the same invocation.
This machine's speed moves 10-20% from one process to the next, so `--repeats 3` (as `make bench`
runs it) times conv2 and resnet9 on the cnnlab and raw paths three times in turn and reports the
median round, with every round's speed and ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))

from data_pipeline import vm_hwm_kb  # noqa: E402  (this script's folder is on sys.path)
from workspace import work_folder  # noqa: E402
DEFAULT_DATA = REPOSITORY.parent / "shared" / "datasets" / "dogs-vs-cats" / "train"
MODELS = ("mlp", "conv1", "conv2", "conv2-wide", "conv2-fc512", "resnet9")
PATHS = ("tutorial", "cnnlab", "raw")
VALIDATION_IMAGES = 64


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            return next((set(line.split(":", 1)[1].split()) for line in info if line.startswith("flags")), set())
    except OSError:
        return set()


def matmul_ceiling(threads: int, dtype: str = "float32", size: int = 2048, repeats: int = 10) -> float:
    import torch

    torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    first, second = torch.randn(size, size).to(kind), torch.randn(size, size).to(kind)
    for _ in range(3):
        first @ second
    started = time.perf_counter()
    for _ in range(repeats):
        first @ second
    return round(repeats * 2 * size**3 / (time.perf_counter() - started) / 1e9, 1)


class EpochTimer:
    """Wall seconds of each epoch (Keras callback made lazily: Keras is imported in the child)."""

    def __new__(cls, batch_size: int | None = None):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_train_begin(self, logs=None):
                from cnnlab.training.train_step import automatic_micro_batch_size

                # What cnnlab's trainer chose for this model and batch (None: whole batches).
                self.micro_batch_size = batch_size and automatic_micro_batch_size(self.model, batch_size)

            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self.started)

        return Timer()


def child_cnnlab(model: str, cache: str, images: int, epochs: int) -> dict:
    from cnnlab.runs import Run, TrainConfig
    from cnnlab.training.trainer import train

    from cnnlab.models import get_model_spec

    timer = EpochTimer(get_model_spec(model).recipe.batch_size)
    with tempfile.TemporaryDirectory(prefix="cnnlab-speed-") as out, open(os.devnull, "w") as quiet:
        state = train(TrainConfig(model, cache, str(Path(out) / "run"), epochs=epochs, train_limit=images, any_input_size=True,
                                  val_limit=VALIDATION_IMAGES), show_progress=False, stream=quiet, callbacks=[timer])
        precision = Run(Path(out) / "run").precision
    return {"epoch_seconds": [round(s, 2) for s in timer.seconds], "images": images, "precision": precision,
            "micro_batch_size": timer.micro_batch_size, "trained_epochs": state["epochs_done"]}


def child_tutorial(model: str, cache: str, images: int, epochs: int) -> dict:
    """The tutorial's loop: np.array of every photo as floats, model.fit, stock Keras loss."""
    from cnnlab.backend import configure_keras

    configure_keras()
    import keras
    import numpy as np

    from cnnlab.data.reader import open_cache
    from cnnlab.models import build_model, get_model_spec
    from cnnlab.data.subset import subset

    data = open_cache(cache)
    recipe = get_model_spec(model).recipe
    train_rows = subset(data.indices("train"), data.labels, images, 0)
    val_rows = subset(data.indices("val"), data.labels, VALIDATION_IMAGES, 0)

    def arrays(rows):
        # uint8, as np.array(PIL image) gives the tutorial its pixels (Keras casts each batch);
        # a recipe that scales pixels to 0-1 needs them as floats.
        x = np.array(data.images[rows])
        if recipe.pixel_scale == "unit":
            x = x.astype(np.float32) / 255.0
        if keras.config.image_data_format() == "channels_first":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x, data.labels[rows].astype(np.float32)

    # The tutorial holds its whole data set in RAM whatever it trains on: the peak memory is
    # that of the tutorial's data, while the timed epochs use `images` of it.
    hold_all = not os.environ.get("CNNLAB_BENCH_HOLD_TIMED_ONLY")
    held = data.indices("train") if hold_all else train_rows
    (x_held, y_held), (x_val_held, y_val_held) = arrays(held), arrays(data.indices("val") if hold_all else val_rows)
    position = {row: index for index, row in enumerate(held)}
    chosen = np.array([position[row] for row in train_rows])
    x_train, y_train = x_held[chosen], y_held[chosen]
    val_position = {row: index for index, row in enumerate(data.indices("val") if hold_all else val_rows)}
    val_chosen = np.array([val_position[row] for row in val_rows])
    validation = (x_val_held[val_chosen], y_val_held[val_chosen])
    network = build_model(model, tuple(x_train.shape[1:]), 2)  # the same architecture, float32
    loss = "mse" if recipe.loss == "mse" else "binary_crossentropy"
    network.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate), loss=loss, metrics=["accuracy"])
    timer = EpochTimer()
    network.fit(x_train, y_train, batch_size=recipe.batch_size, epochs=epochs, validation_data=validation,
                callbacks=[timer], verbose=0)
    return {"epoch_seconds": [round(s, 2) for s in timer.seconds], "images": images, "precision": "float32",
            "images_held_in_ram": int(len(held) + len(x_val_held)),
            "data_in_ram_mb": round((x_held.nbytes + x_val_held.nbytes + x_train.nbytes) / 1e6, 1)}


def child_raw(model: str, cache: str, images: int, epochs: int, micro_batch: str, precision: str, variant: str) -> dict:
    from raw_torch_loop import Variant, train_raw

    return train_raw(model, cache, images, epochs, int(micro_batch) or None, precision, Variant.parse(variant))


def run_child(path: str, model: str, cache: str, images: int, epochs: int, *extra: str) -> dict:
    environment = dict(os.environ)
    if path in ("cnnlab", "raw"):
        from cnnlab.runtime import ALLOCATOR_ENVIRONMENT

        environment.update(ALLOCATOR_ENVIRONMENT)
    command = [sys.executable, __file__, "--child", path, model, cache, str(images), str(epochs), *extra]
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{path} {model} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def prepare_caches(data: str, work: Path, models: list[str], per_class: int) -> dict[str, str]:
    from cnnlab.data.cache import PrepareOptions, prepare
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.data.splits import SplitOptions
    from cnnlab.models import get_model_spec

    caches = {}
    for model in models:
        recipe = get_model_spec(model).recipe
        decode = DecodeOptions(recipe.input_width, recipe.input_height, recipe.fit)
        path = work / f"cache-{recipe.input_width}x{recipe.input_height}-{recipe.fit}-{per_class}"
        split = SplitOptions("tutorial", per_class, max(VALIDATION_IMAGES // 2, per_class // 4))  # the tutorial's 4:1
        prepare(data, path, PrepareOptions(decode, split), show_progress=False)
        caches[model] = str(path)
    return caches


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        path, model, cache, images, epochs = sys.argv[2:7]
        function = {"cnnlab": child_cnnlab, "tutorial": child_tutorial, "raw": child_raw}[path]
        result = function(model, cache, int(images), int(epochs), *sys.argv[7:])
        print(json.dumps({**result, "peak_rss_mb": round((vm_hwm_kb() or 0) / 1024, 1)}))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA") or str(DEFAULT_DATA))
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: the five tutorial models and resnet9)")
    parser.add_argument("--images", type=int, help="training images per epoch (default 1024; 64 with --quick)")
    parser.add_argument("--work", help="folder for the caches (default: a temporary one, removed at the end)")
    parser.add_argument("--quick", action="store_true", help="conv1 and resnet9-tiny on 64 photos: a smoke test, numbers mean nothing")
    parser.add_argument("--hold-timed-only", action="store_true", help="the tutorial path holds only the timed photos "
                        "in RAM, not the tutorial's whole data set")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated paths to time (default: all three)")
    parser.add_argument("--raw-variants", default="", help="comma-separated extra raw rows: foreach, fused, "
                        "channels-last, nchw, prefetch, or several joined by + (raw_torch_loop.Variant)")
    parser.add_argument("--train-per-class", type=int, help="training photos per class in the cache (default 2048, the "
                        "tutorial's; 64 with --quick)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the cnnlab and raw paths for --repeat-models, "
                        "run in turn; the median round is reported, with each round's speed (default 1)")
    parser.add_argument("--repeat-models", default="conv2,resnet9", help="comma-separated models that --repeats applies "
                        "to (default: conv2,resnet9, those with a goal against raw PyTorch)")
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        parser.error("--repeats: at least 1")
    with work_folder(arguments.work, "cnnlab-speed-") as work:
        measure(arguments, parser, work)


def measure(arguments, parser, work: Path) -> None:
    models = ["conv1", "resnet9-tiny"] if arguments.quick else [m for m in arguments.models.split(",") if m]
    images = arguments.images or (64 if arguments.quick else 1024)
    started = time.perf_counter()
    paths = [path for path in arguments.paths.split(",") if path]
    if "raw" in paths and "cnnlab" not in paths:
        parser.error("--paths: raw follows the cnnlab row's micro-batches and precision; time cnnlab too")
    variants = [variant for variant in arguments.raw_variants.split(",") if variant]
    repeat_models = {model for model in arguments.repeat_models.split(",") if model}
    amx = "amx_bf16" in cpu_flags()
    load_at_start = round(os.getloadavg()[0], 2)
    log("matrix-multiply ceiling")
    ceiling = {"float32_1_thread": matmul_ceiling(1), "float32_2_threads": matmul_ceiling(2),
               # Without AMX torch's CPU bfloat16 matrix product is emulated (~1 GFLOP/s on an AVX2
               # EPYC: the issue 18 note), and the ceiling alone would run for minutes.
               "bfloat16_2_threads": matmul_ceiling(2, "bfloat16") if amx else None}
    per_class = arguments.train_per_class or (64 if arguments.quick else 2048)
    if arguments.hold_timed_only:
        os.environ["CNNLAB_BENCH_HOLD_TIMED_ONLY"] = "1"  # read by the tutorial child
    caches = prepare_caches(arguments.data, work, models, per_class)
    from cnnlab.models import build_model, forward_flops

    # Each model's row is saved as soon as it is measured: an invocation that is cut (the heavy
    # tutorial models take minutes each) continues with the models it had not reached.
    saved = work / (f"rows-{images}-images{'-timed-only' if arguments.hold_timed_only else '-hold-all'}"
                    f"-{'-'.join(paths + variants)}-x{arguments.repeats}-v4.json")
    rows = json.loads(saved.read_text()) if saved.exists() else {}
    for model in models:
        if model in rows:
            log(f"{model}: measured before, reused ({saved})")
            continue
        flops = forward_flops(build_model(model))
        row = {"forward_gflop_per_image": round(flops / 1e9, 4), "images_per_epoch": images,
               "tutorial_holds": "timed photos" if arguments.hold_timed_only else "whole data set"}
        rounds = arguments.repeats if model in repeat_models else 1
        timed = [path for path in PATHS if path in paths] + [f"raw {variant}" for variant in variants]
        # Repeated rounds run cnnlab and the raw rows in turn (cnnlab, raw, cnnlab, raw, ...), so a
        # slow spell of the machine falls on both; the tutorial's path, minutes per model, runs once.
        schedule = [path for path in timed if path == "tutorial"] + \
            [path for _ in range(rounds) for path in timed if path != "tutorial"]
        measured: dict[str, list[dict]] = {path: [] for path in timed}
        for path in schedule:
            log(f"{model}: {path} path" + (f" (round {len(measured[path]) + 1} of {rounds})" if path != "tutorial" and rounds > 1 else ""))
            if path.startswith("raw"):
                cnnlab_row = measured["cnnlab"][0]
                extra = [str(cnnlab_row["micro_batch_size"] or 0), cnnlab_row["precision"], path[4:] or "default"]
                result = run_child("raw", model, caches[model], images, 2, *extra)
            else:
                result = run_child(path, model, caches[model], images, 2)
            measured[path].append({**result, "images_per_second": round(images / result["epoch_seconds"][-1], 1)})
        for path, results in measured.items():
            # The median round (the lower one of an even count) stands for the path, with its own
            # epoch times and memory; every round's speed stays in the row.
            median = sorted(results, key=lambda result: result["images_per_second"])[(len(results) - 1) // 2]
            speed = median["images_per_second"]
            row[path] = {**median, "images_per_second": round(speed, 1),
                         "achieved_gflops": round(3 * flops * speed / 1e9, 1),
                         "share_of_float32_ceiling": round(3 * flops * speed / 1e9 / ceiling["float32_2_threads"], 3)}
            if len(results) > 1:
                row[path]["rounds"] = len(results)
                row[path]["images_per_second_each_round"] = [r["images_per_second"] for r in results]
        for other in [path for path in row if path in ("tutorial", "raw") or path.startswith("raw ")]:
            name = other.replace(" ", "_").replace("+", "_")
            row[f"speed_ratio_cnnlab_over_{name}"] = round(row["cnnlab"]["images_per_second"] / row[other]["images_per_second"], 2)
            if rounds > 1 and other != "tutorial":
                row[f"speed_ratio_cnnlab_over_{name}_each_round"] = [
                    round(mine / theirs, 2) for mine, theirs in zip(row["cnnlab"]["images_per_second_each_round"],
                                                                   row[other]["images_per_second_each_round"])]
            row[f"memory_ratio_cnnlab_over_{name}"] = round(row["cnnlab"]["peak_rss_mb"] / row[other]["peak_rss_mb"], 2)
        rows[model] = row
        saved.write_text(json.dumps(rows))
        log(f"{model}: " + ", ".join(f"{key} {value}" for key, value in row.items() if key.startswith("speed_ratio")))
    machine = {"cpu_count": os.cpu_count(), "cpu_has_amx_bf16": amx,
               "load_average_1min_at_start": load_at_start, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
               "bfloat16": "measured (AMX)" if amx else "not measured: no AMX, torch's bfloat16 is emulated here"}
    print(json.dumps({"benchmark": "training_speed", "quick": arguments.quick, "images_per_epoch": images,
                      "machine": machine, "matmul_gflops": ceiling, "models": {model: rows[model] for model in models}, "total_seconds": round(time.perf_counter() - started, 1)},
                     indent=1))


if __name__ == "__main__":
    main()
