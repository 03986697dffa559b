"""The training engine: a self-describing run folder, resume after kill -9, seeding, streamed
batches, progress lines, and every registered model training (best weights and early stopping:
tests/test_best_weights.py).

Everything runs on one tiny cache (24 real photos at 16x12: train 8, val 8, test 8) so the
whole file stays well within a minute on two cores.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnlab import cli
from cnnlab.models import model_names
from cnnlab.runtime import ALLOCATOR_ENVIRONMENT, REEXEC_MARKER
from cnnlab.runs import TrainConfig
from cnnlab.training.batches import CacheBatches
from cnnlab.training.trainer import EpochCommit, train
from training_helpers import (EPOCHS, HEIGHT, WIDTH, losses, make_config, model_weights, quiet_train, read_metrics,
                              same_weights)

METRIC_KEYS = {"epoch", "seconds", "train_loss", "train_mse", "train_accuracy", "val_loss", "val_mse",
               "val_accuracy", "learning_rate"}
# The per-epoch train losses and final weights of a resumed run are compared with an
# uninterrupted one at this tolerance. Measured here: they are bit-identical (difference 0.0)
# on CPU PyTorch; the tolerance only allows for reduction-order noise on other machines. A
# repeated or skipped epoch, a wrong batch order or a fresh optimizer differ by > 1e-3.
RESUME_RTOL, RESUME_ATOL = 1e-6, 1e-7


# ---- fixtures and helpers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tiny_cache, tmp_path_factory):
    """An uninterrupted seed-0 run: (run folder, final state, progress text)."""
    run = tmp_path_factory.mktemp("runs") / "finished"
    state, progress = quiet_train(make_config(tiny_cache, run))
    return run, state, progress


def without_seconds(history) -> list[dict]:
    return [{key: value for key, value in entry.items() if key != "seconds"} for entry in history]


# ---- 1. the run folder describes itself ------------------------------------------------------

def test_run_folder_describes_itself(finished_run, cache, tiny_cache):
    run, state, _ = finished_run
    config = json.loads((run / "config.json").read_text())
    assert TrainConfig.from_dict(config["train"]) == make_config(tiny_cache, run)
    assert config["recipe"]["learning_rate"] == 1e-3 and config["recipe"]["pixel_scale"] == "unit"
    assert config["recipe"]["batch_size"] == 4 and config["recipe"]["epochs"] == EPOCHS
    assert config["recipe"]["loss"] == "bce" and config["recipe"]["optimizer"] == "adam"  # conv1's own recipe
    assert config["input_shape"] == [3, HEIGHT, WIDTH]
    assert config["image_data_format"] == "channels_first"
    assert config["backend"] == "torch"
    assert config["parameters"] > 0

    assert json.loads((run / "classes.json").read_text()) == cache.classes == ["cat", "dog"]
    data = json.loads((run / "data.json").read_text())
    assert data["split_hash"] == cache.split_hash
    assert Path(data["cache"]) == tiny_cache.resolve()
    assert (data["train_images"], data["val_images"], data["test_images"]) == (8, 8, 8)
    versions = json.loads((run / "versions.json").read_text())
    assert {"python", "cnnlab", "keras", "torch", "numpy"} <= set(versions)

    metrics = read_metrics(run)
    assert [entry["epoch"] for entry in metrics] == list(range(1, EPOCHS + 1))
    for entry in metrics:
        assert set(entry) == METRIC_KEYS
        assert all(math.isfinite(entry[key]) for key in METRIC_KEYS)
        assert 0 <= entry["train_accuracy"] <= 1 and 0 <= entry["val_accuracy"] <= 1
        assert entry["learning_rate"] == pytest.approx(1e-3)
    assert metrics == state["history"]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]  # it learns the 8 training photos

    # Best = lowest validation loss in metrics.jsonl (first one on ties), and its weights file.
    val = losses(metrics, "val_loss")
    assert state["best_epoch"] == int(np.argmin(val)) + 1
    assert state["best_val_loss"] == min(val)
    assert state["finished"] is True and state["epochs_done"] == EPOCHS
    assert (run / "best.weights.h5").is_file() and (run / "last.weights.h5").is_file()
    assert same_weights(model_weights(run, "best"), model_weights(run, state["best_weights"].removesuffix(".weights.h5")))
    assert same_weights(model_weights(run, "last"), model_weights(run, state["last_weights"].removesuffix(".weights.h5")))
    # Only the checkpoints state.json names are kept.
    kept = {f"checkpoint/{path.name}" for path in (run / "checkpoint").iterdir()}
    assert kept == {state["best_weights"], state["last_weights"], state["last_optimizer"]}


# ---- 6. progress without a terminal ----------------------------------------------------------

def test_progress_without_a_terminal_prints_one_line_per_epoch(finished_run):
    _, _, progress = finished_run
    lines = progress.splitlines()
    assert len(lines) == EPOCHS
    assert "\r" not in progress and "\x1b" not in progress
    for epoch, line in enumerate(lines, start=1):
        assert line.startswith(f"conv1 epoch {epoch}/{EPOCHS}: ")
        assert " loss " in line and " val_loss " in line and "ETA" in line


# ---- 2. resume after kill -9 -----------------------------------------------------------------

def _cli_environment() -> dict:
    return {key: value for key, value in os.environ.items() if key not in ALLOCATOR_ENVIRONMENT and key != REEXEC_MARKER}


def test_resume_after_kill_9_matches_an_uninterrupted_run(finished_run, tiny_cache, tmp_path):
    reference_run, reference, _ = finished_run
    # Started the way a user does, with paths relative to its own working directory; resumed
    # below from pytest's directory with absolute paths (the run must not depend on the cwd).
    (tmp_path / "cache").symlink_to(tiny_cache.resolve(), target_is_directory=True)
    command = [sys.executable, "-m", "cnnlab", "train", "conv1", "--any-input-size", "--cache", "cache", "--out", "cut",
               "--epochs", str(EPOCHS), "--pixels", "unit", "--lr", "1e-3", "--batch-size", "4", "--no-evaluate"]
    process = subprocess.Popen(command, cwd=tmp_path, env=_cli_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = tmp_path / "cut"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if json.loads((run / "state.json").read_text())["epochs_done"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.005)
        assert process.poll() is None, f"training ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()
    killed = json.loads((run / "state.json").read_text())
    assert 1 <= killed["epochs_done"] < EPOCHS, "the kill came too late to test resuming; raise EPOCHS"
    assert not killed.get("finished")

    arguments = ["train", "conv1", "--any-input-size", "--cache", str(tiny_cache), "--out", str(run), "--epochs", str(EPOCHS),
                 "--pixels", "unit", "--lr", "1e-3", "--batch-size", "4", "--no-evaluate", "--resume"]
    assert cli.run(arguments) == 0

    state = json.loads((run / "state.json").read_text())
    metrics = read_metrics(run)
    assert [entry["epoch"] for entry in metrics] == list(range(1, EPOCHS + 1))  # each exactly once
    assert metrics == state["history"]
    assert state["finished"] is True and state["epochs_done"] == EPOCHS
    # Same seed, same batches, restored optimizer: the same training as without the kill.
    np.testing.assert_allclose(losses(metrics), losses(reference["history"]), rtol=RESUME_RTOL, atol=RESUME_ATOL)
    np.testing.assert_allclose(losses(metrics, "val_loss"), losses(reference["history"], "val_loss"),
                               rtol=RESUME_RTOL, atol=RESUME_ATOL)
    resumed, uninterrupted = model_weights(run, "last"), model_weights(reference_run, "last")
    assert len(resumed) == len(uninterrupted)
    for mine, theirs in zip(resumed, uninterrupted):
        np.testing.assert_allclose(mine, theirs, rtol=RESUME_RTOL, atol=RESUME_ATOL)
    assert state["best_epoch"] == reference["best_epoch"]


def test_an_existing_run_is_refused_without_resume(finished_run, tiny_cache, tmp_path, capsys):
    run, _, _ = finished_run
    before = (run / "state.json").read_bytes()
    arguments = ["train", "conv1", "--any-input-size", "--cache", str(tiny_cache), "--out", str(run), "--epochs", "1", "--no-evaluate"]
    assert cli.run(arguments) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert str(run) in error and "--resume" in error
    assert (run / "state.json").read_bytes() == before

    # A non-empty folder that is not a run is refused too, with or without --resume.
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    for extra in ([], ["--resume"]):
        assert cli.run(["train", "conv1", "--any-input-size", "--cache", str(tiny_cache), "--out", str(stranger), "--no-evaluate", *extra]) == 2
        error = capsys.readouterr().err
        assert len(error.strip().splitlines()) == 1 and str(stranger) in error
    assert sorted(path.name for path in stranger.iterdir()) == ["notes.txt"]


def test_resuming_a_finished_run_does_nothing(finished_run, tiny_cache, tmp_path):
    source, reference, _ = finished_run
    run = tmp_path / "copy"
    shutil.copytree(source, run)
    files = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in run.rglob("*") if path.is_file()}
    state, progress = quiet_train(make_config(tiny_cache, run), resume=True)
    assert state == reference
    assert progress == ""
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in run.rglob("*") if path.is_file()} == files


def test_resume_with_more_epochs_extends_a_finished_run(finished_run, tiny_cache, tmp_path):
    """`--resume --epochs N` continues a finished constant-learning-rate run, optimizer and all:
    its first epochs stay as they were and the configuration records the new length."""
    source, reference, _ = finished_run
    run = tmp_path / "copy"
    shutil.copytree(source, run)
    state, _ = quiet_train(make_config(tiny_cache, run, epochs=EPOCHS + 2), resume=True)
    assert state["epochs_done"] == EPOCHS + 2 and state["finished"]
    assert state["history"][:EPOCHS] == reference["history"]
    assert [entry["epoch"] for entry in read_metrics(run)] == list(range(1, EPOCHS + 3))
    stored = json.loads((run / "config.json").read_text())
    assert stored["train"]["epochs"] == EPOCHS + 2 and stored["recipe"]["epochs"] == EPOCHS + 2


@pytest.mark.parametrize("change, message", [
    (dict(epochs=EPOCHS - 2), "has already trained"),
    (dict(learning_rate=1e-2), "learning_rate"),
    (dict(model="conv2"), "model"),
])
def test_a_resume_that_would_change_the_run_is_refused(finished_run, tiny_cache, tmp_path, change, message):
    source, _, _ = finished_run
    run = tmp_path / "copy"
    shutil.copytree(source, run)
    with pytest.raises(ValueError, match=message):
        quiet_train(make_config(tiny_cache, run, **change), resume=True)


def test_resume_repairs_files_of_a_kill_right_after_the_last_commit(finished_run, tiny_cache, tmp_path, recwarn):
    """Killed after state.json committed the last epoch but before metrics.jsonl and the public
    weights were rewritten: no epoch is left to train, yet the folder must end complete."""
    source, reference, _ = finished_run
    run = tmp_path / "copy"
    shutil.copytree(source, run)
    state = json.loads((run / "state.json").read_text())
    for key in ("finished", "training_seconds"):
        state.pop(key)
    (run / "state.json").write_text(json.dumps(state))
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:-1]))
    (run / "last.weights.h5").unlink()
    (run / "best.weights.h5").unlink()

    resumed, progress = quiet_train(make_config(tiny_cache, run), resume=True)
    assert progress == ""  # nothing was trained again
    assert resumed["finished"] is True and resumed["history"] == reference["history"]
    assert read_metrics(run) == reference["history"]
    assert same_weights(model_weights(run, "last"), model_weights(source, "last"))
    assert same_weights(model_weights(run, "best"), model_weights(source, "best"))
    # The weights files hold no optimizer; loading one must not warn that it skipped the optimizer.
    assert not [warning for warning in recwarn if "Skipping variable loading" in str(warning.message)]


# ---- 4. seeding --------------------------------------------------------------------------------

def test_same_seed_same_metrics_and_batches_follow_seed_and_epoch(finished_run, tiny_cache, cache, tmp_path, monkeypatch):
    _, reference, _ = finished_run
    # Record the training batches fetched inside each epoch (Keras also peeks at one batch
    # before training to build the model's metrics; that one trains nothing).
    seen: list[tuple[int, tuple[int, ...]]] = []
    in_epoch: list[int] = []
    original_getitem, original_begin, original_end = CacheBatches.__getitem__, EpochCommit.on_epoch_begin, EpochCommit.on_epoch_end

    def recording_getitem(self, index):
        if self.shuffle and in_epoch:
            seen.append((in_epoch[0], tuple(int(row) for row in self.batch_rows(index))))
        return original_getitem(self, index)

    def on_epoch_begin(self, epoch, logs=None):
        original_begin(self, epoch, logs)
        in_epoch[:] = [epoch]

    def on_epoch_end(self, epoch, logs=None):
        in_epoch.clear()
        original_end(self, epoch, logs)

    monkeypatch.setattr(CacheBatches, "__getitem__", recording_getitem)
    monkeypatch.setattr(EpochCommit, "on_epoch_begin", on_epoch_begin)
    monkeypatch.setattr(EpochCommit, "on_epoch_end", on_epoch_end)
    # show_progress=True on a stream that is not a terminal: still one line per epoch.
    # The first 3 epochs do not depend on how many follow, so 3 suffice to compare.
    state, progress = quiet_train(make_config(tiny_cache, tmp_path / "again", epochs=3), show_progress=True)
    assert without_seconds(state["history"]) == without_seconds(reference["history"][:3])
    assert len(progress.splitlines()) == 3 and "\r" not in progress

    # What Keras trained on in epoch e is exactly CacheBatches' (seed 0, epoch e) order.
    train_rows = cache.indices("train")
    for epoch in range(3):
        rows = [row for seen_epoch, batch in seen if seen_epoch == epoch for row in batch]
        expected = CacheBatches(cache.images, cache.labels, train_rows, 2, 4, "unit", shuffle=True, seed=0, epoch=epoch)
        assert rows == [int(row) for row in expected.order]
    assert len(seen) == 3 * 2

    other, _ = quiet_train(make_config(tiny_cache, tmp_path / "other", epochs=1, seed=1))
    assert losses(other["history"]) != losses(reference["history"])[:1]


# ---- 8. every registered model trains --------------------------------------------------------

@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_trains_one_epoch(name, tiny_cache, tmp_path):
    config = TrainConfig(model=name, cache=str(tiny_cache), out=str(tmp_path / name), epochs=1, batch_size=8,
                         any_input_size=True)
    if name == "mobilenetv3-transfer":  # trains on 32x32 photos in tests/test_transfer.py
        with pytest.raises(ValueError, match="needs photos of at least 32x32 pixels, got 16x12"):
            quiet_train(config)
        return
    state, progress = quiet_train(config)
    assert state["epochs_done"] == 1 and state["finished"] is True
    (entry,) = read_metrics(tmp_path / name)
    for key in ("train_loss", "val_loss", "train_mse", "val_mse"):
        assert entry[key] is not None and math.isfinite(entry[key]), (key, entry)
    assert (tmp_path / name / "best.weights.h5").is_file()
    assert progress.startswith(f"{name} epoch 1/1: ")


# ---- configuration errors ----------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"patience": 0}, "--patience"),
    ({"train_limit": 0}, "--train-limit"),
    ({"model": "nope"}, "unknown model"),
    ({"learning_rate": -1.0}, "learning_rate"),
])
def test_bad_settings_are_value_errors_before_anything_is_written(tiny_cache, tmp_path, overrides, message):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train(make_config(tiny_cache, run, **overrides), stream=io.StringIO(), show_progress=False)
    assert not run.exists()
