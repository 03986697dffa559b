"""Training speed: cnnlab's `train` beside the tutorial's own code path, per model, plus the
machine's matrix-multiply ceiling. Prints one JSON document on stdout; progress on stderr.

    .venv/bin/python benchmarks/training_speed.py            # every tutorial model + resnet9
    .venv/bin/python benchmarks/training_speed.py --quick    # smoke test, ~1 minute

For each model, two fresh processes train two epochs on the same photos with the same model,
recipe and batch size; the second (warm) epoch is timed:
- `cnnlab`: cnnlab.training.trainer.train, as `cnnlab train` runs it: batches streamed from the
  memory-mapped uint8 cache, checkpoints every epoch, the tuned allocator (runtime.py), the
  recipe's precision and layers;
- `tutorial`: the tutorial's way: its whole data set in RAM as NumPy arrays (4,096 training and
  1,024 validation photos, uint8 as `np.array(PIL image)` gives them; float32 for a model whose
  recipe scales pixels to 0-1), Keras' stock loss, `model.fit(x, y, batch_size)`, glibc's
  default allocator, float32. `--hold-timed-only` holds only the timed photos instead.
Images/s counts training images (validation is limited to 64 photos in both). Achieved GFLOP/s
is the analytic forward FLOPs x 3 (forward + backward) x images/s; peak RSS is the process's
VmHWM from /proc. Ratios are cnnlab / tutorial, from the same invocation.
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
DEFAULT_DATA = REPOSITORY.parent / "shared" / "datasets" / "dogs-vs-cats" / "train"
MODELS = ("mlp", "conv1", "conv2", "conv2-wide", "conv2-fc512", "resnet9")
VALIDATION_IMAGES = 64


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


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


def run_child(path: str, model: str, cache: str, images: int, epochs: int) -> dict:
    environment = dict(os.environ)
    if path == "cnnlab":
        from cnnlab.runtime import ALLOCATOR_ENVIRONMENT

        environment.update(ALLOCATOR_ENVIRONMENT)
    command = [sys.executable, __file__, "--child", path, model, cache, str(images), str(epochs)]
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
        function = child_cnnlab if path == "cnnlab" else child_tutorial
        result = function(model, cache, int(images), int(epochs))
        print(json.dumps({**result, "peak_rss_mb": round((vm_hwm_kb() or 0) / 1024, 1)}))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA") or str(DEFAULT_DATA))
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: the five tutorial models and resnet9)")
    parser.add_argument("--images", type=int, help="training images per epoch (default 1024; 64 with --quick)")
    parser.add_argument("--work", help="folder for the caches (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="conv1 and resnet9-tiny on 64 photos: a smoke test, numbers mean nothing")
    parser.add_argument("--hold-timed-only", action="store_true", help="the tutorial path holds only the timed photos "
                        "in RAM, not the tutorial's whole data set")
    parser.add_argument("--train-per-class", type=int, help="training photos per class in the cache (default 2048, the "
                        "tutorial's; 64 with --quick)")
    arguments = parser.parse_args()
    models = ["conv1", "resnet9-tiny"] if arguments.quick else [m for m in arguments.models.split(",") if m]
    images = arguments.images or (64 if arguments.quick else 1024)
    work = Path(arguments.work or tempfile.mkdtemp(prefix="cnnlab-speed-"))
    started = time.perf_counter()
    log("matrix-multiply ceiling")
    ceiling = {"float32_1_thread": matmul_ceiling(1), "float32_2_threads": matmul_ceiling(2),
               "bfloat16_2_threads": matmul_ceiling(2, "bfloat16")}
    per_class = arguments.train_per_class or (64 if arguments.quick else 2048)
    if arguments.hold_timed_only:
        os.environ["CNNLAB_BENCH_HOLD_TIMED_ONLY"] = "1"  # read by the tutorial child
    caches = prepare_caches(arguments.data, work, models, per_class)
    from cnnlab.models import build_model, forward_flops

    # Each model's row is saved as soon as it is measured: an invocation that is cut (the heavy
    # tutorial models take minutes each) continues with the models it had not reached.
    saved = work / f"rows-{images}-images{'-timed-only' if arguments.hold_timed_only else '-hold-all'}-v2.json"
    rows = json.loads(saved.read_text()) if saved.exists() else {}
    for model in models:
        if model in rows:
            log(f"{model}: measured before, reused ({saved})")
            continue
        flops = forward_flops(build_model(model))
        row = {"forward_gflop_per_image": round(flops / 1e9, 4), "images_per_epoch": images,
               "tutorial_holds": "timed photos" if arguments.hold_timed_only else "whole data set"}
        for path in ("tutorial", "cnnlab"):
            log(f"{model}: {path} path")
            result = run_child(path, model, caches[model], images, 2)
            warm = result["epoch_seconds"][-1]
            speed = images / warm
            row[path] = {**result, "images_per_second": round(speed, 1),
                         "achieved_gflops": round(3 * flops * speed / 1e9, 1),
                         "share_of_float32_ceiling": round(3 * flops * speed / 1e9 / ceiling["float32_2_threads"], 3)}
        row["speed_ratio_cnnlab_over_tutorial"] = round(row["cnnlab"]["images_per_second"] / row["tutorial"]["images_per_second"], 2)
        row["memory_ratio_cnnlab_over_tutorial"] = round(row["cnnlab"]["peak_rss_mb"] / row["tutorial"]["peak_rss_mb"], 2)
        rows[model] = row
        saved.write_text(json.dumps(rows))
        log(f"{model}: {row['speed_ratio_cnnlab_over_tutorial']}x speed, {row['memory_ratio_cnnlab_over_tutorial']}x memory")
    print(json.dumps({"benchmark": "training_speed", "quick": arguments.quick, "images_per_epoch": images,
                      "matmul_gflops": ceiling, "models": {model: rows[model] for model in models}, "total_seconds": round(time.perf_counter() - started, 1)},
                     indent=1))


if __name__ == "__main__":
    main()
