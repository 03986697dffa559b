"""benchmarks/performance_table.py: the README's performance section from one `make bench` document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from performance_table import performance_section  # noqa: E402


def training_row(tutorial: float, cnnlab: float, raw: float, precision: str = "float32") -> dict:
    return {"tutorial": {"images_per_second": tutorial, "peak_rss_mb": 1500.0},
            "cnnlab": {"images_per_second": cnnlab, "peak_rss_mb": 1200.0, "precision": precision,
                       "share_of_float32_ceiling": 0.298},
            "raw": {"images_per_second": raw, "peak_rss_mb": 1000.4},
            "speed_ratio_cnnlab_over_tutorial": round(cnnlab / tutorial, 2),
            "speed_ratio_cnnlab_over_raw": round(cnnlab / raw, 2)}


def document() -> dict:
    training = {"images_per_epoch": 1024, "matmul_gflops": {"float32_2_threads": 241.1},
                "machine": {"load_average_1min_at_start": 1.4, "load_average_1min_at_end": 1.9},
                "models": {"conv2": training_row(64.6, 157.1, 225.6),
                           "resnet9": training_row(140.5, 246.7, 267.4, "mixed_bfloat16")}}
    cold = {"repeats": 5, "run": "a throwaway resnet9",
            "results": {"models": {"wall_s_median": 0.114, "peak_rss_mb_median": 18.2},
                        "predict_many_onnx": {"wall_s_median": 4.59, "peak_rss_mb_median": 200.0, "photos": 1000,
                                              "photos_per_s": 217.7}}}
    return {"suite": "cnnlab benchmarks", "quick": False,
            "results": {"training_speed": training, "cold_start": cold,
                        "pretrained": {"error": "exit status 1", "seconds": 3.0}}}


def test_each_model_gets_its_measured_speeds_and_ratios_side_by_side():
    table = performance_section(document())
    conv2 = next(line for line in table.splitlines() if line.startswith("| conv2 |"))
    cells = [cell.strip() for cell in conv2.strip("|").split("|")]
    assert cells == ["conv2", "64.6", "157.1", "225.6", "**2.43x**", "**0.70x**", "30%", "1,500, 1,200, 1,000"]
    assert "| resnet9 (mixed_bfloat16) |" in table  # the precision it trained in is named
    assert "241.1 GFLOP/s" in table


def test_a_model_timed_in_rounds_shows_the_median_and_the_spread_of_its_ratio():
    measured = document()
    conv2 = measured["results"]["training_speed"]["models"]["conv2"]
    conv2["cnnlab"].update(rounds=3, images_per_second_each_round=[150.0, 157.1, 170.0])
    conv2["raw"].update(rounds=3, images_per_second_each_round=[180.0, 225.6, 160.0])
    conv2["speed_ratio_cnnlab_over_raw_each_round"] = [0.83, 0.7, 1.06]
    table = performance_section(measured)
    row = next(line for line in table.splitlines() if line.startswith("| conv2 (3 rounds) |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[5] == "**0.70x** (0.70-1.06)"
    assert "median round" in table
    assert "rounds" not in next(line for line in table.splitlines() if line.startswith("| resnet9"))
    assert "median round" not in performance_section(document())  # said only when some model had rounds


def test_short_commands_and_a_failed_or_missing_benchmark_are_said_not_filled_in():
    table = performance_section(document())
    assert "| `cnnlab models` | 0.11 s | 18 |" in table
    assert "| `cnnlab predict RUN` on 1,000 photos (ONNX Runtime) | 4.59 s, 217.7 photos/s | 200 |" in table
    assert "(pretrained: exit status 1)" in table
    assert "(modern_recipe: not in this run)" in table
    assert "efficientnet" not in table


def test_the_command_reads_a_document_and_warns_about_quick_numbers(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({**document(), "quick": True}))
    result = subprocess.run([sys.executable, str(BENCHMARKS / "performance_table.py"), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == performance_section(document())
    assert "quick" in result.stderr
