"""The TensorFlow backend (the tutorial's own engine) trains the same models through cnnlab.

TensorFlow is an install extra: this test runs with the interpreter named by
CNNLAB_TENSORFLOW_PYTHON (`make test-tensorflow` builds `.venv-tf` and sets it; CI does), or
with the current one if it has TensorFlow, and skips otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest


def tensorflow_python() -> str | None:
    named = os.environ.get("CNNLAB_TENSORFLOW_PYTHON")
    if named:
        return named
    return sys.executable if importlib.util.find_spec("tensorflow") else None


def test_tutorial_model_trains_on_tensorflow(small_kaggle_folder, tmp_path):
    python = tensorflow_python()
    if python is None:
        pytest.skip("TensorFlow is not installed; run `make test-tensorflow` (installs the [tensorflow] extra)")
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cache, run = tmp_path / "cache", tmp_path / "run"
    prepared = subprocess.run([python, "-m", "cnnlab", "prepare", str(small_kaggle_folder), "--out", str(cache),
                               "--split", "tutorial", "--train", "8", "--val", "4", "--workers", "1"],
                              capture_output=True, text=True, env=environment, timeout=300)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    trained = subprocess.run([python, "-m", "cnnlab", "train", "conv1", "--any-input-size", "--cache", str(cache), "--out", str(run),
                              "--epochs", "2", "--pixels", "unit", "--lr", "1e-3"],
                             capture_output=True, text=True, env=environment, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "tensorflow" and config["image_data_format"] == "channels_last"
    assert config["parameters"] == 8_637_473  # the same architecture as on PyTorch
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in epochs] == [1, 2]
    assert all(entry["train_loss"] == entry["train_loss"] and entry["train_loss"] < 50 for entry in epochs)
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert 0.0 <= evaluation["splits"]["val"]["roc_auc"] <= 1.0
