"""Benchmark of cold starts: wall time and peak memory of short `cnnlab` commands, each in fresh
processes, and of `cnnlab predict` with each engine. Prints one JSON document on stdout;
progress goes to stderr.

    .venv/bin/python benchmarks/cold_start.py [--run RUN] [--data DIR] [--repeats 5] [--quick]

Every command runs `--repeats` times (5; 1 with --quick) as `python -m cnnlab ...` in a fresh
process, after one untimed run that fills the bytecode cache (as an installed package has one);
the median and every run are reported. Wall time is measured around the process (start-up,
the allocator's re-execution where a command has one, imports, work, exit); peak memory is the
process's ru_maxrss from os.wait4 (the maximum over its life, across the re-execution). This
script imports nothing heavy itself, so a child's peak is its own (on Linux, ru_maxrss of an
exec'd child starts at the launching process's peak: see the data_pipeline section of
benchmarks/README.md).

Commands: `--help`, `models`, `info --no-backend`, `download --help`, `survey` of a folder of
--survey-photos photos (symlinks to the shared ones, 200 by default), `survey` of the whole --data
folder (the 5,972 shared photos: the issue's target is 1 s) and `predict` with
`--engine onnx` and `--engine keras`, on one photo and on --many photos (1,000; 64 with --quick).
The first prediction after training (which makes the ONNX export with Keras) is timed once.
Without --run, a throwaway resnet9 is trained first (1 epoch on 128 photos at its 64x64 recipe
size, float32, in a temporary folder, in a child process): only speed is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets" / "dogs-vs-cats" / "train"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def child_environment(pycache: Path) -> dict:
    """This checkout's cnnlab first on the path, and a bytecode cache of the benchmark's own
    (some environments set PYTHONDONTWRITEBYTECODE, which would time compiling every module)."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    environment["PYTHONPYCACHEPREFIX"] = str(pycache)
    return environment


def timed(command: list[str], environment: dict) -> dict:
    """One fresh process: wall seconds, peak RSS in MB and exit status."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    error = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "exit": process.returncode, "stderr": error}


def measure(name: str, arguments: list[str], environment: dict, repeats: int, warm: bool = True) -> dict:
    command = [sys.executable, "-m", "cnnlab", *arguments]
    if warm:
        timed(command, environment)  # fills the bytecode cache; untimed
    runs = [timed(command, environment) for _ in range(repeats)]
    failed = [run for run in runs if run["exit"] not in (0, 1)]
    if failed:
        raise RuntimeError(f"{name}: exit status {failed[0]['exit']}: {failed[0]['stderr'][-500:]}")
    walls = [round(run["wall_s"], 3) for run in runs]
    peaks = [round(run["peak_rss_mb"], 1) for run in runs]
    result = {"command": "cnnlab " + " ".join(arguments), "wall_s_median": round(statistics.median(walls), 3),
              "wall_s_runs": walls, "peak_rss_mb_median": round(statistics.median(peaks), 1),
              "peak_rss_mb_runs": peaks}
    log(f"{name}: median {result['wall_s_median']} s, {result['peak_rss_mb_median']} MB")
    return result


def photos_in(folder: Path, count: int) -> list[Path]:
    paths = sorted(folder.glob("*.jpg"), key=lambda path: path.name)
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def linked_folder(photos: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for path in photos:
        os.symlink(path.resolve(), folder / path.name)
    return folder


def throwaway_run(data: Path, root: Path, environment: dict) -> Path:
    """A resnet9 trained for one epoch on 128 photos, by `cnnlab prepare` and `cnnlab train`."""
    photos = linked_folder(photos_in(data, 128), root / "train-photos")
    steps = [["prepare", str(photos), "--out", str(root / "cache"), "--size", "64x64", "--fit", "crop",
              "--split", "stratified", "--val", "16", "--test", "16", "--workers", "1"],
             ["train", "resnet9", "--cache", str(root / "cache"), "--out", str(root / "run"), "--epochs", "1",
              "--precision", "float32", "--no-evaluate"]]
    for step in steps:
        subprocess.run([sys.executable, "-m", "cnnlab", *step], check=True, env=environment,
                       stdout=subprocess.DEVNULL)
    return root / "run"


def remove_onnx_export(run: Path, environment: dict) -> None:
    """Delete the run's ONNX export, so that the next prediction makes it. In a child: the run
    folder's names live in cnnlab.runs.files, whose import (NumPy) would raise this process's
    peak and with it every later child's ru_maxrss."""
    code = ("import sys\nfrom cnnlab.runs import Run, files\nrun = Run.open(sys.argv[1])\n"
            "for name in (files.ONNX_EXPORT, files.ONNX_RECORD):\n    (run.path / name).unlink(missing_ok=True)\n")
    subprocess.run([sys.executable, "-c", code, str(run)], check=True, env=environment)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a trained run (default: a throwaway resnet9)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("CNNLAB_DATA") or DEFAULT_DATA),
                        help="folder of photos (default: $CNNLAB_DATA, else the shared Dogs vs. Cats photos)")
    parser.add_argument("--repeats", type=int, help="fresh processes per command (default 5; --quick: 1)")
    parser.add_argument("--survey-photos", type=int, default=200, help="photos in the surveyed folder")
    parser.add_argument("--many", type=int, help="photos in the batch prediction (default 1000; --quick: 64)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and photos: a smoke test")
    arguments = parser.parse_args()
    repeats = arguments.repeats or (1 if arguments.quick else 5)
    many = arguments.many or (64 if arguments.quick else 1000)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnlab-cold-") as temporary:
        root = Path(temporary)
        environment = child_environment(root / "pycache")
        run = arguments.run or throwaway_run(arguments.data, root, environment)
        one = photos_in(arguments.data, 1)[0]
        surveyed = linked_folder(photos_in(arguments.data, arguments.survey_photos), root / "survey")
        batch = linked_folder(photos_in(arguments.data, many), root / "many")
        machine = {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
                   "load_average_1min_at_start": round(os.getloadavg()[0], 2), "python": platform.python_version(),
                   "bytecode_cache": "warmed (PYTHONPYCACHEPREFIX in a temporary folder)"}
        results = {}
        for name, command in (("help", ["--help"]), ("models", ["models"]), ("info_no_backend", ["info", "--no-backend"]),
                              ("download_help", ["download", "--help"]), ("survey", ["survey", str(surveyed)]),
                              ("survey_data", ["survey", str(arguments.data)])):
            results[name] = measure(name, command, environment, repeats)
        results["survey"]["photos"] = len(list(surveyed.iterdir()))
        results["survey_data"]["photos"] = len(os.listdir(arguments.data))

        # The first prediction after training makes the export (with Keras); timed once.
        remove_onnx_export(run, environment)
        results["predict_first_after_training"] = measure("predict_first_after_training",
                                                          ["predict", str(run), str(one)], environment, 1, warm=False)
        for engine in ("onnx", "keras"):
            results[f"predict_one_{engine}"] = measure(f"predict_one_{engine}",
                                                       ["predict", str(run), str(one), "--engine", engine],
                                                       environment, repeats)
        for engine in ("onnx", "keras"):
            result = measure(f"predict_{many}_{engine}", ["predict", str(run), str(batch), "--engine", engine],
                             environment, max(1, min(repeats, 3)), warm=False)
            result["photos"] = many
            result["photos_per_s"] = round(many / result["wall_s_median"], 1)
            results[f"predict_many_{engine}"] = result
        machine["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    summary = {"benchmark": "cold_start", "quick": arguments.quick, "repeats": repeats, "machine": machine,
               "run": str(arguments.run) if arguments.run else "throwaway resnet9 (1 epoch, 128 photos, float32)",
               "results": results, "total_s": round(time.perf_counter() - started, 1)}
    json.dump(summary, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
