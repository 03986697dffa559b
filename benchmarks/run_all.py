"""`make bench`: every benchmark, one after another (never two at once: they would share the
cores and time each other), gathered into one JSON document on stdout.

    .venv/bin/python benchmarks/run_all.py            # the full suite, 41 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --quick    # smoke test (CI): every script runs, tiny samples

The benchmarks: data_pipeline.py (decode + resize, prepare's memory), training_speed.py
(matmul ceiling; cnnlab train vs the tutorial's code path per model), serving.py (predict vs
model.predict, HTTP latency), serve_load.py (the server's memory under bursts of worst-case
uploads) and modern_recipe.py (one seed of resnet9 end to end: accuracy,
time to 75/85/90% validation accuracy; the 3-seed figure is `modern_recipe.py` alone),
distributed_scaling.py (one process vs two torchrun workers) and cold_start.py (wall time and
peak memory of short commands and of `cnnlab predict` per engine, fresh processes) and
pretrained.py (EfficientNet-Lite0's offline ImageNet weights: zero-shot, frozen features + linear
head, one fine-tuning seed; the 3-seed figure is `pretrained.py` alone; needs the [pretrained]
extra). A
benchmark that fails is reported with its error and the others still run; the exit status is 1
if any failed. Quick mode asserts nothing about times: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SUITE = {
    "data_pipeline": (["data_pipeline.py"], ["--quick"]),
    "training_speed": (["training_speed.py", "--repeats", "3"], ["--quick"]),
    "serving": (["serving.py"], ["--requests", "10", "--photos", "64", "--rounds", "1"]),
    "serve_load": (["serve_load.py"], ["--quick"]),
    "modern_recipe": (["modern_recipe.py", "--seeds", "1", "--no-all-data"], ["--quick"]),
    "distributed_scaling": (["distributed_scaling.py"], ["--quick"]),
    "cold_start": (["cold_start.py"], ["--quick"]),
    "pretrained": (["pretrained.py", "--fine-tune-seeds", "1"], ["--quick"]),
}


def run(name: str, quick: bool) -> dict:
    script, quick_arguments = SUITE[name]
    command = [sys.executable, str(HERE / script[0]), *script[1:], *(quick_arguments if quick else [])]
    print(f"[bench] {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # stderr: live progress
    seconds = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        return {"error": f"exit status {result.returncode}", "seconds": seconds}
    try:
        return {**json.loads(result.stdout), "seconds": seconds}
    except json.JSONDecodeError as error:
        return {"error": f"output is not JSON ({error})", "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's smoke-test mode")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(SUITE)}")
    arguments = parser.parse_args()
    names = [name for name in (arguments.only.split(",") if arguments.only else SUITE) if name]
    unknown = [name for name in names if name not in SUITE]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITE)}")
    results = {name: run(name, arguments.quick) for name in names}
    json.dump({"suite": "cnnlab benchmarks", "quick": arguments.quick, "results": results}, sys.stdout, indent=1)
    print()
    return 1 if any("error" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
