"""The README's performance section, written from one `make bench` document.

    .venv/bin/python benchmarks/run_all.py > bench.json          # `make bench`, 41 minutes here
    .venv/bin/python benchmarks/performance_table.py bench.json  # Markdown on stdout

Every figure in the output comes from that one document, so the ratios side by side were
measured in the same run on the same machine. A benchmark missing from the document (or one that
failed) is left out with a line that says so, never filled in from elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TRAINING_PATHS = ("tutorial", "cnnlab", "raw")
COLD_COMMANDS = {
    "help": "`cnnlab --help`",
    "models": "`cnnlab models`",
    "info_no_backend": "`cnnlab info --no-backend`",
    "download_help": "`cnnlab download --help`",
    "survey": "`cnnlab survey` ({photos} photos)",
    "survey_data": "`cnnlab survey` (all {photos} photos)",
    "predict_one_onnx": "`cnnlab predict RUN one.jpg` (ONNX Runtime, the default)",
    "predict_one_keras": "`cnnlab predict RUN one.jpg --engine keras`",
    "predict_many_onnx": "`cnnlab predict RUN` on {photos} photos (ONNX Runtime)",
    "predict_many_keras": "`cnnlab predict RUN` on {photos} photos (Keras)",
    "predict_first_after_training": "first `predict` after training (writes `best.onnx`)",
}


def number(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def training_table(result: dict) -> list[str]:
    ceiling = result["matmul_gflops"]["float32_2_threads"]
    lines = [f"Training, images per second of the second (warm) epoch on {result['images_per_epoch']:,} photos; "
             f"the same model, batches and recipe on each path; float32 matrix-product ceiling "
             f"{number(ceiling)} GFLOP/s on 2 threads (load {result['machine']['load_average_1min_at_start']} at the "
             f"start, {result['machine']['load_average_1min_at_end']} at the end):", "",
             "| model | tutorial's code path | cnnlab | raw PyTorch | cnnlab / tutorial | cnnlab / raw | "
             "cnnlab's share of the ceiling | peak MB: tutorial, cnnlab, raw |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model, row in result["models"].items():
        speeds = [number(row.get(path, {}).get("images_per_second")) for path in TRAINING_PATHS]
        peaks = ", ".join(number(row.get(path, {}).get("peak_rss_mb"), 0) for path in TRAINING_PATHS)
        precision = row.get("cnnlab", {}).get("precision", "float32")
        # bfloat16 work against the float32 ceiling: its share can pass what float32 could reach.
        rounds = row.get("cnnlab", {}).get("rounds", 1)
        notes = ([] if precision == "float32" else [precision]) + ([f"{rounds} rounds"] if rounds > 1 else [])
        name = f"{model} ({', '.join(notes)})" if notes else model
        share = row.get("cnnlab", {}).get("share_of_float32_ceiling")
        lines.append(f"| {name} | {' | '.join(speeds)} | {ratio(row, 'tutorial')} | {ratio(row, 'raw')} | "
                     f"{'-' if share is None else f'{share:.0%}'} | {peaks} |")
    if any(row.get("cnnlab", {}).get("rounds", 1) > 1 for row in result["models"].values()):
        lines += ["", "A model with rounds was timed that many times on the cnnlab and raw paths, in turn; its "
                  "speeds are the median round's, and the range after its cnnlab / raw ratio spans the rounds."]
    return lines


def ratio(row: dict, other: str) -> str:
    value = row.get(f"speed_ratio_cnnlab_over_{other}")
    if value is None:
        return "-"
    each_round = row.get(f"speed_ratio_cnnlab_over_{other}_each_round")
    spread = f" ({min(each_round):.2f}-{max(each_round):.2f})" if each_round else ""
    return f"**{value:.2f}x**{spread}"


def cold_start_table(result: dict) -> list[str]:
    lines = [f"Short commands, median of {result['repeats']} fresh processes, wall time and peak resident memory; "
             f"RUN is a {result['run']}:", "", "| command | wall | peak MB |", "|---|---:|---:|"]
    for name, label in COLD_COMMANDS.items():
        row = result["results"].get(name)
        if row:
            extra = f", {number(row['photos_per_s'])} photos/s" if "photos_per_s" in row else ""
            photos = f"{row['photos']:,}" if "photos" in row else ""
            lines.append(f"| {label.format(photos=photos)} | {row['wall_s_median']:.2f} s{extra} | "
                         f"{number(row['peak_rss_mb_median'], 0)} |")
    return lines


def percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def modern_table(result: dict) -> list[str]:
    row = result["rows"]["tutorial_size_train"]
    seeds = ", ".join(str(seed["seed"]) for seed in row["seeds"])
    return [f"`{result['model']}`, the modern recipe on {row['train_images']:,} training photos (seed {seeds}): "
            f"**{percent(row['test_accuracy_mean'])}** test accuracy on {row['test_images']:,} photos in "
            f"{row['train_and_evaluate_wall_seconds_mean']:.0f} s of training and evaluation."]


def pretrained_table(result: dict) -> list[str]:
    lines = ["Offline pretrained EfficientNet-Lite0 (prepare, train and evaluate, end to end):", "",
             "| model | test accuracy | end to end |", "|---|---:|---:|"]
    for key in ("frozen_features_linear_head_quick", "frozen_features_linear_head"):
        row = result.get(key)
        if row:
            lines.append(f"| `{row['model']}` | {percent(row['test_accuracy_at_validation_threshold'])} | "
                         f"{row['end_to_end_seconds']:.0f} s |")
    fine_tuned = result.get("fine_tuned")
    if fine_tuned:
        seeds = len(fine_tuned["seeds"])
        lines.append(f"| `efficientnet-lite0-transfer` ({seeds} seed{'s' if seeds > 1 else ''}) | "
                     f"{percent(fine_tuned['test_accuracy_mean'])} | {fine_tuned['end_to_end_seconds_mean']:.0f} s |")
    return lines


def decoding_table(result: dict) -> list[str]:
    decode = result["decode"]
    configs = decode["configs"]
    tutorial = configs["tutorial_pil_resize"]["images_per_s"]
    parts = [f"the tutorial's PIL `resize` {tutorial:.0f}"]
    for key, label in (("cnnlab_draft_1_worker", "cnnlab, 1 process"), ("cnnlab_draft_2_workers", "cnnlab, 2 processes")):
        if key in configs:
            parts.append(f"{label} {configs[key]['images_per_s']:.0f} (**{configs[key]['ratio_vs_tutorial']:.2f}x**)")
    return [f"Decoding and resizing to {decode['size_wxh']}, photos per second ({decode['sample_images']:,} photos): "
            + "; ".join(parts) + "."]


def serving_table(result: dict) -> list[str]:
    latency, batch = result["http_single_photo_latency"], result["batch"]
    return [f"`cnnlab serve` ({result['run']['model']}): one photo per HTTP request p50 {latency['p50_ms']:.1f} ms, "
            f"p95 {latency['p95_ms']:.1f} ms; `cnnlab.load(RUN).predict` {batch['library_predict_images_per_s']:.0f} "
            f"photos/s from JPEG files, against Keras' `model.predict` {batch['plain_model_predict_images_per_s']:.0f} "
            f"on photos already decoded."]


SECTIONS = {"data_pipeline": decoding_table, "training_speed": training_table, "serving": serving_table,
            "cold_start": cold_start_table, "modern_recipe": modern_table, "pretrained": pretrained_table}


def performance_section(document: dict) -> str:
    results = document["results"]
    lines = []
    for name, table in SECTIONS.items():
        result = results.get(name)
        if result is None or "error" in result:
            lines += [f"({name}: {'not in this run' if result is None else result['error']})", ""]
            continue
        lines += table(result) + [""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("document", type=Path, help="the JSON `make bench` printed (benchmarks/run_all.py)")
    arguments = parser.parse_args()
    document = json.loads(arguments.document.read_text())
    if document.get("quick"):
        print("note: a --quick document; its numbers mean nothing", file=sys.stderr)
    sys.stdout.write(performance_section(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
