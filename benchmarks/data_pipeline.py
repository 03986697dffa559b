"""Benchmark of the data pipeline: decode speed, pixel agreement with the tutorial, and the
peak memory of `prepare` at two data-set sizes. Prints one JSON document on stdout; progress
goes to stderr. See benchmarks/README.md for what each field means.

    .venv/bin/python benchmarks/data_pipeline.py [--data DIR] [--images N] [--quick]

Times on a shared machine are noisy, so every configuration is measured in the same run,
interleaved over several rounds, and compared by ratios (per round, then the median).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets" / "dogs-vs-cats" / "train"
TUTORIAL_SIZE = (94, 125)  # width, height, as the tutorial passes it to Image.resize
TUTORIAL = "tutorial_pil_resize"
SERIAL = "cnnlab_draft_1_worker"


def megabytes(kilobytes: int | None) -> float | None:
    return None if kilobytes is None else round(kilobytes / 1024, 1)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA") or str(DEFAULT_DATA),
                        help="folder of photos (default: $CNNLAB_DATA or ../shared/datasets/dogs-vs-cats/train)")
    parser.add_argument("--images", type=int, default=None, help="decode-rate sample size (default 1000; 100 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per decode configuration (default 3; 1 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the parallel decode and prepare (default 2)")
    parser.add_argument("--quick", action="store_true", help="small samples, < 1 minute: a smoke test, not a measurement")
    args = parser.parse_args(argv)
    args.images = args.images or (100 if args.quick else 1000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.images < 1 or args.repeats < 1 or args.workers < 1:
        parser.error("--images, --repeats and --workers must be positive")
    return args


def machine_info() -> dict:
    import numpy
    import PIL
    from PIL import features

    import cnnlab

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(), "cpus_usable": usable, "cpu": platform.processor() or platform.machine(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(), "platform": platform.platform(),
        "pillow": PIL.__version__, "pillow_libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
        "numpy": numpy.__version__, "cnnlab": cnnlab.__version__,
    }


def evenly_spaced(items: list, count: int) -> list:
    """`count` items spread over the whole list (so both classes and all sizes are sampled)."""
    if count >= len(items):
        return list(items)
    return [items[index * len(items) // count] for index in range(count)]


def warm_file_cache(paths: list[str]) -> float:
    """Read every file once so the timed passes measure decoding, not the disk. Returns MB."""
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += len(handle.read())
    return total / 1e6


def tutorial_pass(paths: list[str]):
    import numpy as np
    from PIL import Image

    for path in paths:
        try:
            yield np.array(Image.open(path).resize(TUTORIAL_SIZE))
        except Exception as error:  # the tutorial has no error handling: count, don't crash
            yield error


def cnnlab_pass(paths: list[str], draft: bool, workers: int):
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.data.parallel import decode_in_parallel

    for pixels, _md5, _reason in decode_in_parallel(paths, DecodeOptions(draft=draft), workers):
        yield pixels


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (the pool's workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def timed(results) -> tuple[list, float, float, float]:
    """Drain a pass: (results, wall seconds, seconds to the first result, CPU seconds)."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    items, first = [], None
    for item in results:
        items.append(item)
        if first is None:
            first = time.perf_counter() - started
    return items, time.perf_counter() - started, first or 0.0, cpu_seconds() - cpu_started


def measure_decode(paths: list[str], repeats: int, workers: int) -> tuple[dict, dict]:
    """Time every configuration once per round, rotating the order each round."""
    parallel = f"cnnlab_draft_{workers}_workers"
    configs = {
        TUTORIAL: ("np.array(Image.open(p).resize((94, 125))), one process", lambda: tutorial_pass(paths)),
        SERIAL: ("decode_file, DecodeOptions() (draft on), 1 process", lambda: cnnlab_pass(paths, True, 1)),
        parallel: (f"decode_in_parallel(..., workers={workers}), draft on, 'spawn' pool start-up included",
                   lambda: cnnlab_pass(paths, True, workers)),
        "cnnlab_exact_1_worker": ("decode_file, DecodeOptions(draft=False), 1 process", lambda: cnnlab_pass(paths, False, 1)),
    }
    if workers > 1 and len(paths) < 64:
        log(f"note: decode_in_parallel decodes fewer than 64 files in-process, so {parallel} measures no pool")
    for tutorial_or_ours in (tutorial_pass(paths[:1]), cnnlab_pass(paths[:1], True, 1)):
        list(tutorial_or_ours)  # imports and Pillow's plugin registry load outside the timed passes
    names = list(configs)
    runs = {name: [] for name in names}  # (wall, first, cpu) per round
    outputs = {}
    for round_number in range(repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            result, wall, first, cpu = timed(configs[name][1]())
            runs[name].append((wall, first, cpu))
            outputs.setdefault(name, result)  # first round's pixels, for the agreement check
            log(f"round {round_number + 1}/{repeats} {name}: {len(paths) / wall:.0f} img/s, {cpu / wall:.2f} CPU s per s")
    report = {}
    for name in names:
        walls = [wall for wall, _, _ in runs[name]]
        rates = [len(paths) / wall for wall in walls]
        # Paired per round: tutorial and ours ran under the same background load.
        ratios = [runs[TUTORIAL][i][0] / walls[i] for i in range(repeats)]
        failed = sum(1 for item in outputs[name] if item is None or isinstance(item, Exception))
        report[name] = {
            "how": configs[name][0], "images_per_s": round(statistics.median(rates), 1),
            "rounds_images_per_s": [round(rate, 1) for rate in rates],
            "ratio_vs_tutorial": round(statistics.median(ratios), 3),
            "cpu_s_per_wall_s": round(statistics.median(cpu / wall for wall, _, cpu in runs[name]), 2),
            "failed_images": failed,
        }
    if len(paths) > 1:  # the pool's rate once its workers are up, and what starting them cost
        report[parallel]["speedup_vs_1_worker"] = round(statistics.median(
            runs[SERIAL][i][0] / runs[parallel][i][0] for i in range(repeats)), 3)
        report[parallel]["first_result_s"] = round(statistics.median(first for _, first, _ in runs[parallel]), 3)
        report[parallel]["images_per_s_after_first_result"] = round(statistics.median(
            (len(paths) - 1) / (wall - first) for wall, first, _ in runs[parallel]), 1)
    return report, outputs


def pixel_agreement(tutorial: list, ours: list, exact: list) -> dict:
    """Mean absolute error (grey levels, 0-255) per image, then its mean and max over images."""
    import numpy as np

    draft_errors, exact_errors, not_compared = [], [], 0
    for reference, draft_pixels, exact_pixels in zip(tutorial, ours, exact):
        # The tutorial keeps a photo's own mode: a greyscale JPEG comes back (125, 94), not RGB.
        if not isinstance(reference, np.ndarray) or reference.shape != (TUTORIAL_SIZE[1], TUTORIAL_SIZE[0], 3) \
                or draft_pixels is None or exact_pixels is None:
            not_compared += 1
            continue
        reference = reference.astype(np.int16)
        draft_errors.append(float(np.abs(draft_pixels.astype(np.int16) - reference).mean()))
        exact_errors.append(float(np.abs(exact_pixels.astype(np.int16) - reference).mean()))
    summary = {"images_compared": len(draft_errors), "images_not_compared": not_compared}
    for name, errors in (("draft_vs_tutorial", draft_errors), ("exact_vs_tutorial", exact_errors)):
        summary[f"{name}_mae_mean"] = round(statistics.fmean(errors), 3) if errors else None
        summary[f"{name}_mae_max"] = round(max(errors), 3) if errors else None
    if draft_errors:
        summary["draft_vs_tutorial_mae_p95"] = round(float(np.percentile(draft_errors, 95)), 3)
    return summary


def vm_hwm_kb(pid="self") -> int | None:
    """Peak RSS of one address space (Linux): unlike ru_maxrss, never inherited across exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), None)
    except OSError:
        return None


def watch_children(peaks: dict, stop: threading.Event) -> None:
    """Sample the VmHWM of this process's children (the pool) until `stop`; it only grows."""
    me = os.getpid()
    while not stop.wait(0.1):
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == me and (peak := vm_hwm_kb(entry)):
                peaks[entry] = max(peaks.get(entry, 0), peak)


def child_main(argv: list[str]) -> int:
    """`_child import` or `_child prepare DATA CACHE VAL TEST WORKERS`: one JSON line out."""
    if argv[0] == "import":
        import cnnlab.data.cache  # noqa: F401 - the fixed cost every prepare pays

        print(json.dumps({"self_hwm_kb": vm_hwm_kb()}))
        return 0
    from cnnlab.data.cache import MANIFEST_NAME, PrepareOptions, prepare
    from cnnlab.data.splits import SplitOptions

    data, cache, val, test, workers = argv[1:6]
    peaks, stop = {}, threading.Event()
    watcher = threading.Thread(target=watch_children, args=(peaks, stop), daemon=True)
    watcher.start()
    options = PrepareOptions(split=SplitOptions("stratified", val=int(val), test=int(test)), workers=int(workers))
    result = prepare(data, cache, options, show_progress=False)
    stop.set()
    watcher.join()
    print(json.dumps({
        "prepare_s": result.seconds, "images": result.manifest["shape"][0], "decoded": result.decoded,
        "skipped": len(result.skipped), "manifest_bytes": (result.cache_dir / MANIFEST_NAME).stat().st_size,
        "self_hwm_kb": vm_hwm_kb(), "workers_hwm_kb": max(peaks.values(), default=None), "children_seen": len(peaks),
    }))
    return 0


def launcher_main(argv: list[str]) -> int:
    """Run argv and print its wait4 ru_maxrss. A small process must launch the measured one:
    Linux's ru_maxrss of an exec'd child starts at its launcher's own peak RSS."""
    process = subprocess.Popen(argv)
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({"exit_code": process.returncode, "maxrss_kb": usage.ru_maxrss}), flush=True)
    return 0


def run_child(*arguments: str) -> tuple[dict, float, int]:
    """Run `_child ...` in a fresh interpreter under a small launcher; return its JSON, the wall
    seconds and the peak RSS (KB) over the child and every worker it reaped."""
    script = str(Path(__file__).resolve())
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, script, "_launch", sys.executable, script, "_child", *arguments],
                               stdout=subprocess.PIPE, check=True)
    wall = time.perf_counter() - started
    lines = completed.stdout.decode().strip().splitlines()
    launched = json.loads(lines[-1])
    if launched["exit_code"] != 0 or len(lines) < 2:
        raise RuntimeError(f"benchmark child {arguments[0]} failed with exit code {launched['exit_code']}")
    return json.loads(lines[-2]), wall, launched["maxrss_kb"]


def subset(found, count: int) -> list[str]:
    """`count` photos, the same number from each class, spread over each class's files."""
    by_class: dict[str, list[str]] = {}
    for path, label in zip(found.paths, found.labels):
        by_class.setdefault(label, []).append(path)
    if count >= len(found.paths):
        return list(found.paths)
    per_class = count // len(by_class)
    return [path for paths in by_class.values() for path in evenly_spaced(paths, per_class)]


def measure_prepare(found, sizes: list[int], workers: int) -> dict:
    classes = len(set(found.labels))
    baseline, _, baseline_kb = run_child("import")
    runs = []
    for size in sizes:
        chosen = subset(found, size)
        per_class_held_out = max(1, len(chosen) // classes // 10)  # 10% val, 10% test
        held_out = per_class_held_out * classes
        work = Path(tempfile.mkdtemp(prefix="cnnlab-bench-"))
        try:
            photos = work / "photos"
            for relative in chosen:  # symlinks: the photos are never copied
                link = photos / relative
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path(found.root).resolve() / relative)
            log(f"prepare {len(chosen)} photos with {workers} workers (fresh process)")
            child, wall, peak_kb = run_child("prepare", str(photos), str(work / "cache"),
                                             str(held_out), str(held_out), str(workers))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        runs.append({
            "photos": len(chosen), "images_cached": child["images"], "skipped": child["skipped"],
            "val": held_out, "test": held_out,
            "prepare_s": round(child["prepare_s"], 2), "images_per_s": round(child["decoded"] / child["prepare_s"], 1),
            "process_wall_s": round(wall, 2),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "parent_peak_rss_mb": megabytes(child["self_hwm_kb"]),
            "worker_peak_rss_mb": megabytes(child["workers_hwm_kb"]),
            "child_processes_seen": child["children_seen"],  # the workers + multiprocessing's resource tracker
            "manifest_bytes": child["manifest_bytes"],
        })
        log(f"  {runs[-1]['prepare_s']} s, peak RSS {runs[-1]['peak_rss_mb']} MB, manifest {child['manifest_bytes']:,} B")
    small, large = runs[0], runs[-1]
    thousands = (large["photos"] - small["photos"]) / 1000
    growth = {}
    if thousands > 0:
        growth = {
            "peak_rss_growth_mb_per_1000_images": round((large["peak_rss_mb"] - small["peak_rss_mb"]) / thousands, 2),
            "parent_rss_growth_mb_per_1000_images": None if small["parent_peak_rss_mb"] is None else
                round((large["parent_peak_rss_mb"] - small["parent_peak_rss_mb"]) / thousands, 2),
            "manifest_growth_mb_per_1000_images": round((large["manifest_bytes"] - small["manifest_bytes"]) / 1e6 / thousands, 3),
            "pixel_bytes_per_1000_images_mb": round(1000 * TUTORIAL_SIZE[0] * TUTORIAL_SIZE[1] * 3 / 1e6, 1),
        }
    return {
        "workers": workers, "split": "stratified, val = test = 10% (class-balanced)",
        "rss_note": "peak_rss_mb: ru_maxrss from os.wait4 on a fresh child started by a small launcher = the max "
                    "over the prepare process and its reaped workers (not their sum); parent_peak_rss_mb is the "
                    "prepare process's VmHWM, worker_peak_rss_mb the largest worker VmHWM (sampled every 0.1 s)",
        "import_only_peak_rss_mb": round(baseline_kb / 1024, 1),
        "import_only_parent_rss_mb": megabytes(baseline["self_hwm_kb"]),
        "runs": runs, **growth,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        from cnnlab.data.labels import find_labelled_files
    except ImportError as error:
        print(f"data_pipeline: cannot import cnnlab ({error}); run with .venv/bin/python after `make setup`", file=sys.stderr)
        return 2
    try:
        found = find_labelled_files(args.data)
    except ValueError as error:
        print(f"data_pipeline: {error} (or set CNNLAB_DATA)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    machine = machine_info()
    root = Path(found.root)
    sample = [str(root / p) for p in evenly_spaced(found.paths, args.images)]
    sizes = [200, 500] if args.quick else [1000, len(found.paths)]
    sizes = sorted({min(size, len(found.paths)) for size in sizes})
    # Every file that is timed later: the decode sample and the largest prepare subset.
    warmed = warm_file_cache(sorted(set(sample) | {str(root / p) for p in subset(found, max(sizes))}))
    log(f"{len(found.paths)} photos in {root}; warmed {warmed:.0f} MB; decode sample {len(sample)} x {args.repeats} rounds")
    decode, outputs = measure_decode(sample, args.repeats, args.workers)
    agreement = pixel_agreement(outputs[TUTORIAL], outputs[SERIAL], outputs["cnnlab_exact_1_worker"])
    del outputs
    prepare_report = measure_prepare(found, sizes, args.workers)
    machine["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    document = {
        "benchmark": "data_pipeline", "quick": args.quick,
        "note": "--quick: smoke test on tiny samples; its times mean nothing" if args.quick else
                "full run; compare ratios, not absolute rates, across machines",
        "machine": machine,
        "data": {"dir": str(root), "layout": found.layout, "photos": len(found.paths)},
        "decode": {"sample_images": len(sample), "rounds": args.repeats, "size_wxh": "94x125",
                   "file_cache_warmed_mb": round(warmed, 1), "configs": decode},
        "pixel_agreement": agreement,
        "prepare": prepare_report,
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":  # required: the 'spawn' worker pool re-imports this module
    if sys.argv[1:2] == ["_launch"]:
        sys.exit(launcher_main(sys.argv[2:]))
    if sys.argv[1:2] == ["_child"]:
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
