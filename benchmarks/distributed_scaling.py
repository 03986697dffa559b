"""Multi-worker scaling: `cnnlab train` as one process vs two torchrun workers on this machine.
Prints one JSON document on stdout; progress on stderr.

    .venv/bin/python benchmarks/distributed_scaling.py           # conv2 and resnet9, 1,024 photos
    .venv/bin/python benchmarks/distributed_scaling.py --quick   # smoke test, numbers mean nothing

For each model, three fresh runs of `cnnlab train` (2 epochs, the same photos, recipe and global
batch) time their second epoch from metrics.jsonl:
- one process, 2 threads (cnnlab's default on 2 cores);
- one process, 1 thread (what a single worker of the next run gets);
- two workers: `torchrun --standalone --nproc-per-node 2 ... --distributed`, 1 thread each,
  gloo all-reducing the gradients every step.
Images/s counts training photos; `scaling` is two workers / one process with 2 threads, and
`parallel_efficiency` is two workers / (2 x one process with 1 thread).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from training_speed import DEFAULT_DATA, prepare_caches  # noqa: E402
from workspace import work_folder  # noqa: E402

MODELS = ("conv2", "resnet9")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def train_command(model: str, cache: str, out: Path, images: int, epochs: int, distributed: bool) -> list[str]:
    arguments = ["-m", "cnnlab", "train", model, "--any-input-size", "--cache", cache, "--out", str(out), "--epochs", str(epochs),
                 "--train-limit", str(images), "--val-limit", "64", "--no-evaluate"]
    if not distributed:
        return [sys.executable, *arguments]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            *arguments, "--distributed"]


def timed_run(model: str, cache: str, out: Path, images: int, epochs: int, threads: int, distributed: bool) -> dict:
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = train_command(model, cache, out, images, epochs, distributed)
    started = time.perf_counter()
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    from cnnlab.runs import Run
    history = Run(out).history
    warm = history[-1]["seconds"]
    return {"epoch_seconds": [entry["seconds"] for entry in history], "images_per_second": round(images / warm, 1),
            "final_train_loss": history[-1]["train_loss"], "wall_seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA") or str(DEFAULT_DATA))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--images", type=int, help="training photos per epoch (default 1024; 64 with --quick)")
    parser.add_argument("--work", help="folder for caches and runs (default: a temporary one, removed at the end)")
    parser.add_argument("--quick", action="store_true", help="conv1 on 64 photos: a smoke test")
    arguments = parser.parse_args()
    models = ["conv1"] if arguments.quick else [name for name in arguments.models.split(",") if name]
    images = arguments.images or (64 if arguments.quick else 1024)
    with work_folder(arguments.work, "cnnlab-scaling-") as work:
        measure(arguments, models, images, work)


def measure(arguments, models: list[str], images: int, work: Path) -> None:
    started = time.perf_counter()
    caches = prepare_caches(arguments.data, work, models, max(images // 2, 32))
    rows = {}
    for model in models:
        row = {}
        for name, threads, distributed in (("one_process_2_threads", 2, False), ("one_process_1_thread", 1, False),
                                           ("two_workers_1_thread_each", 1, True)):
            out = work / f"run-{model}-{name}-{time.time_ns()}"
            log(f"{model}: {name}")
            row[name] = timed_run(model, caches[model], out, images, 2, threads, distributed)
        two = row["two_workers_1_thread_each"]["images_per_second"]
        row["scaling_two_workers_over_one_process"] = round(two / row["one_process_2_threads"]["images_per_second"], 2)
        row["parallel_efficiency"] = round(two / (2 * row["one_process_1_thread"]["images_per_second"]), 2)
        rows[model] = row
        log(f"{model}: two workers {row['scaling_two_workers_over_one_process']}x one process")
    print(json.dumps({"benchmark": "distributed_scaling", "quick": arguments.quick, "images_per_epoch": images,
                      "cpu_count": os.cpu_count(), "models": rows,
                      "total_seconds": round(time.perf_counter() - started, 1)}, indent=1))


if __name__ == "__main__":
    main()
