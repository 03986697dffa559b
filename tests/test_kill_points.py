"""kill -9 at seeded random moments of `cnnlab train`, then the same command again: the run ends
exactly as an uninterrupted one (each epoch once, the same weights) and no half-written file
of the killed process is left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnlab.runs.checkpoints import TEMPORARY_NAME
from training_helpers import load_trained_model

EPOCHS = 5
KILL_SEED = 20261130
KILL_POINTS = 3


def train_command(cache: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", "train", "conv1", "--any-input-size", "--cache", str(cache), "--out", str(out),
            "--epochs", str(EPOCHS), "--pixels", "unit", "--lr", "1e-3", "--batch-size", "4", "--no-evaluate",
            *extra]


def leftovers(run: Path) -> list[str]:
    return sorted(str(path.relative_to(run)) for path in run.rglob(".*") if TEMPORARY_NAME.match(path.name))


@pytest.fixture(scope="module")
def reference(tiny_cache, tmp_path_factory):
    """An uninterrupted run, and how long its process took (to place the kills inside it)."""
    out = tmp_path_factory.mktemp("kill-reference") / "run"
    started = time.monotonic()
    subprocess.run(train_command(tiny_cache, out), check=True, capture_output=True, timeout=600)
    return out, time.monotonic() - started


# Slow (30 s): kills at random moments; the default run keeps test_training's kill -9 and resume.
@pytest.mark.slow
def test_kill_9_at_random_moments_then_the_same_command_finishes_the_same_run(reference, tiny_cache, tmp_path):
    reference_run, seconds = reference
    expected = json.loads((reference_run / "metrics.jsonl").read_text().splitlines()[-1])
    generator = random.Random(KILL_SEED)
    run = tmp_path / "run"
    killed_at = []
    for _ in range(KILL_POINTS):
        delay = generator.uniform(0.3, 1.0) * seconds
        process = subprocess.Popen(train_command(tiny_cache, run, "--resume"), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            killed_at.append(round(delay, 1))
    result = subprocess.run(train_command(tiny_cache, run, "--resume"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]

    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in metrics] == list(range(1, EPOCHS + 1)), f"killed at {killed_at} s"
    assert metrics[-1]["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-4, abs=1e-6)
    for mine, theirs in zip(load_trained_model(run, "last")[0].get_weights(),
                            load_trained_model(reference_run, "last")[0].get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    assert leftovers(run) == []
    state = json.loads((run / "state.json").read_text())
    referenced = {Path(state[key]).name for key in ("last_weights", "best_weights", "last_optimizer")}
    assert {path.name for path in (run / "checkpoint").iterdir()} == referenced
    assert killed_at, "every process finished before its kill; the test killed nothing"
