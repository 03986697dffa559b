"""`reproduce --seeds N`: each model trained with N seeds, each metric's mean and spread, and a
verdict on the tutorial's published figure; the summary arithmetic, then a tiny run end to end."""

from __future__ import annotations

import io
import json
import math

import pytest

from cnnlab.errors import UserError
from cnnlab.experiments.reproduce import ReproduceConfig, reproduce
from cnnlab.experiments.seeds import run_name, seed_spread, spread_markdown, summarise, verdict


def test_summary_is_mean_sample_deviation_and_range_with_undefined_values_counted_out():
    summary = summarise([0.2, 0.4, float("nan"), 0.6, None])
    assert summary["mean"] == pytest.approx(0.4) and summary["std"] == pytest.approx(0.2)  # n - 1 = 2
    assert (summary["min"], summary["max"], summary["n"], summary["undefined"]) == (0.2, 0.6, 3, 2)
    assert summarise([0.3])["std"] is None and summarise([None])["mean"] is None


def test_a_published_figure_is_seed_noise_within_two_deviations_and_a_gap_beyond():
    three = summarise([0.30, 0.35, 0.40])  # mean 0.35, sd 0.05
    assert verdict(three, 0.44)["call"] == "within seed noise"
    assert verdict(three, 0.284)["call"] == "within seed noise"  # -1.3 SD
    gap = verdict(three, 0.20)
    assert gap["call"] == "a gap beyond seed noise" and gap["standard_deviations_away"] == pytest.approx(-3.0)
    assert verdict(summarise([0.3, 0.4]), 0.9)["call"] == "too few seeds to tell"


def test_spread_per_model_and_its_markdown():
    rows = [{"model": "conv2", "published": {"mse": 0.284, "pearson": 0.267, "accuracy": 0.616},
             "val_mse": mse, "val_pearson": pearson, "val_tutorial_best_accuracy": 0.6}
            for mse, pearson in ((0.36, 0.10), (0.34, 0.14), (0.35, 0.12))]
    spread = seed_spread({"conv2": rows}, [0, 1, 2])
    assert spread["conv2"]["seeds"] == [0, 1, 2]
    assert spread["conv2"]["val_mse"]["mean"] == pytest.approx(0.35)
    assert spread["conv2"]["verdicts"]["val_mse"]["call"] == "a gap beyond seed noise"  # 0.284 is 6.6 SD below
    text = spread_markdown(spread)
    assert "## Across 3 seeds" in text and "| conv2 | 0, 1, 2 | 0.350 ± 0.010 |" in text
    assert "val MSE: published 0.284, -6.6 SD from the mean, a gap beyond seed noise" in text


def test_the_first_seed_keeps_the_models_run_folder():
    assert run_name("conv2", 0, 0) == "conv2" and run_name("conv2", 2, 0) == "conv2-seed2"


def test_seeds_below_one_are_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--seeds must be a whole number >= 1"):
        reproduce(ReproduceConfig(str(tmp_path), str(tmp_path / "out"), seeds=0), stream=io.StringIO())
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def two_seeds(shared_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce-seeds")
    config = ReproduceConfig(str(shared_photos), str(out), quick=True, models=("conv1",), baselines=(),
                             train_per_class=8, val_per_class=8, test_per_class=4, max_epochs=1, workers=1,
                             modern=(), seed=5, seeds=2)
    log = io.StringIO()
    return out, config, reproduce(config, stream=log, show_progress=False), log.getvalue()


def test_each_seed_trains_its_own_run_and_the_spread_is_theirs(two_seeds):
    out, _, summary, log = two_seeds
    evaluations = [json.loads((out / "runs" / name / "evaluation.json").read_text()) for name in ("conv1", "conv1-seed6")]
    assert [json.loads((out / "runs" / name / "config.json").read_text())["train"]["seed"]
            for name in ("conv1", "conv1-seed6")] == [5, 6]
    mse = [evaluation["splits"]["val"]["mean_squared_error"] for evaluation in evaluations]
    assert mse[0] != mse[1]  # other initial weights and batch order
    spread = summary["seed_spread"]["conv1"]
    assert summary["seeds"] == [5, 6] and spread["seeds"] == [5, 6]
    assert spread["val_mse"]["values"] == pytest.approx(mse)
    assert spread["val_mse"]["mean"] == pytest.approx(sum(mse) / 2)
    assert spread["val_mse"]["std"] == pytest.approx(abs(mse[0] - mse[1]) / math.sqrt(2))
    assert [row["model"] for row in summary["rows"]] == ["conv1"]  # the main table: the first seed
    assert summary["rows"][0]["val_mse"] == pytest.approx(mse[0])
    assert "## Across 2 seeds" in (out / "results.md").read_text()
    assert "seed 6)" in log


def test_a_rerun_with_fewer_seeds_reuses_the_first_seeds_run_and_drops_the_spread(two_seeds):
    out, config, _, _ = two_seeds
    log = io.StringIO()
    again = reproduce(ReproduceConfig(**{**config.__dict__, "seeds": 1}), stream=log, show_progress=False)
    assert log.getvalue().count("done before, reused") == 1 and "seed_spread" not in again
    assert json.loads((out / "results.json").read_text())["seeds"] == [5]
