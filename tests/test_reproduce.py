"""`cnnlab reproduce` end to end on a tiny sample: the files and the table it writes."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from cnnlab.experiments.reproduce import ReproduceConfig, reproduce
from cnnlab.published import PUBLISHED
from cnnlab.report.results_table import reading


@pytest.fixture(scope="module")
def tiny_reproduction(shared_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    config = ReproduceConfig(str(shared_photos), str(out), quick=True, models=("mlp", "conv1"),
                             baselines=("majority", "pixel-trees"), train_per_class=16, val_per_class=8,
                             test_per_class=8, max_epochs=1, workers=1, modern=("resnet9-tiny",))
    log = io.StringIO()
    summary = reproduce(config, stream=log, show_progress=False)
    return out, config, summary, log.getvalue()


def test_writes_every_stage_and_a_results_table(tiny_reproduction):
    out, _, summary, log = tiny_reproduction
    for name in ("survey.json", "cache/manifest.json", "results.json", "results.md", "reproduce-config.json",
                 "runs/mlp/best.weights.h5", "runs/conv1/metrics.jsonl", "runs/conv1/evaluation.json",
                 "baselines/majority.json", "baselines/pixel-trees.json"):
        assert (out / name).exists(), name
    assert summary["images"] == {"train": 32, "val": 16, "test": 16}
    markdown = (out / "results.md").read_text()
    assert [row["model"] for row in summary["rows"]] == ["mlp", "conv1", "resnet9-tiny", "majority", "pixel-trees"]
    # The modern model trains on the same photos, decoded at its own input size.
    modern_data = json.loads((out / "runs/resnet9-tiny/data.json").read_text())
    tutorial_data = json.loads((out / "runs/conv1/data.json").read_text())
    assert modern_data["split_hash"] == tutorial_data["split_hash"]
    assert modern_data["decode"]["width"] == 64 and tutorial_data["decode"]["width"] == 94
    assert "**resnet9-tiny** (modern recipe, 412,913 parameters, " in markdown
    assert "minutes of training): test accuracy" in markdown
    assert "[3.3] train resnet9-tiny" in log
    assert "QUICK MODE" in markdown
    assert "| conv1 | 8,637,473 | 1 |" in markdown  # tutorial shape: parameters as published architecture
    assert "(0.36)" in markdown and "(0.15)" in markdown  # conv1's published MSE and Pearson beside ours
    assert "## Reading" in markdown and "**conv1**" in markdown
    assert "[3.2] train conv1" in log and "ETA" in log


def test_each_stage_records_its_wall_time_and_the_peak_memory_so_far(tiny_reproduction):
    out, _, summary, log = tiny_reproduction
    stages = summary["stages"]
    assert [stage["name"] for stage in stages] == [
        "survey and caches", "train and evaluate mlp", "train and evaluate conv1", "train and evaluate resnet9-tiny",
        "baseline majority", "baseline pixel-trees"]
    assert not any(stage["reused"] for stage in stages)
    assert all(stage["seconds"] > 0 for stage in stages[:4])  # the majority baseline can take under 0.05 s
    assert sum(stage["seconds"] for stage in stages) <= summary["wall_seconds"]
    peaks = [stage["peak_resident_mb"] for stage in stages]
    assert peaks == sorted(peaks) and peaks[0] > 50  # this process's peak so far: it only rises
    assert "## Where this invocation's time and memory went" in (out / "results.md").read_text()
    assert "process peak memory so far" in log


def test_results_match_the_run_evaluations(tiny_reproduction):
    out, _, summary, _ = tiny_reproduction
    evaluation = json.loads((out / "runs/conv1/evaluation.json").read_text())
    row = next(row for row in summary["rows"] if row["model"] == "conv1")
    assert row["val_mse"] == pytest.approx(evaluation["splits"]["val"]["mean_squared_error"])
    assert row["published"] == PUBLISHED["conv1"]
    majority = next(row for row in summary["rows"] if row["model"] == "majority")
    assert majority["val_accuracy_at_0.5"] == pytest.approx(0.5)  # balanced split: majority is chance


def test_running_again_reuses_everything_and_other_settings_are_refused(tiny_reproduction):
    out, config, summary, _ = tiny_reproduction
    log = io.StringIO()
    again = reproduce(config, stream=log, show_progress=False)
    assert "done before, reused" in log.getvalue()
    assert all(stage["reused"] for stage in again["stages"][1:])  # every model and baseline came from disk
    assert [row["val_mse"] for row in again["rows"]] == [row["val_mse"] for row in summary["rows"]]
    changed = ReproduceConfig(config.data, config.out, quick=True, models=("mlp",), train_per_class=20,
                              val_per_class=8, test_per_class=8, max_epochs=1)
    with pytest.raises(ValueError, match="other settings"):
        reproduce(changed, stream=io.StringIO(), show_progress=False)


def test_reading_states_agreement_and_difference():
    rows = [{"model": "conv2", "published": PUBLISHED["conv2"], "val_mse": 0.34, "val_pearson": 0.05,
             "val_tutorial_best_accuracy": 0.61, "val_auc": 0.6, "val_accuracy_at_0.5": 0.55}]
    sentence = reading(rows)[0]
    assert "MSE 0.34 agrees with the published 0.33" in sentence
    assert "Pearson 0.05 is below the published 0.21" in sentence
    assert "accuracy 0.61 agrees with the published 0.61" in sentence


def test_cli_reproduce_help_mentions_time_and_quick():
    result = subprocess.run([sys.executable, "-m", "cnnlab", "reproduce", "--help"], capture_output=True, text=True, timeout=60)
    assert "--quick" in result.stdout and "Resumable" in result.stdout


def test_compare_puts_runs_and_reproductions_in_one_table(tiny_reproduction, capsys):
    from cnnlab.cli import run
    from cnnlab.experiments.compare import collect, render

    out, _, summary, _ = tiny_reproduction
    rows = collect([str(out), str(out / "runs" / "conv1")])
    assert [row["model"] for row in rows] == ["mlp", f"conv1 ({out / 'runs' / 'conv1'})", "resnet9-tiny", "majority",
                                              "pixel-trees", f"conv1 ({out / 'runs' / 'conv1'})"]
    reproduced = next(row for row in summary["rows"] if row["model"] == "conv1")
    assert rows[-1]["val_mse"] == pytest.approx(reproduced["val_mse"])  # the run's own evaluation, same figures
    text = render(rows)
    assert text.index("| mlp |") < text.index("| resnet9-tiny |") < text.index("| majority |")  # tutorial, modern, baselines
    assert "different splits" not in text  # every row comes from the same split
    assert run(["compare", str(out / "runs" / "conv1"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["model"] == "conv1"
    assert run(["compare", str(out / "cache")]) == 2
    assert "neither a run folder" in capsys.readouterr().err
