"""cnnlab.runs.Run, the run folder's one owner: what it reads, how it refuses damaged or foreign
folders in one line, the lock that keeps a second trainer out, and diverged weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab import cli
from cnnlab.errors import UserError
from cnnlab.runs import Run, files
from conftest import real_photos
from training_helpers import make_config, quiet_train


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run-folder") / "conv1"
    quiet_train(make_config(tiny_cache, run, epochs=2))
    return run


@pytest.fixture
def copy_of(trained, tmp_path):
    def make(name: str = "copy") -> Path:
        destination = tmp_path / name
        shutil.copytree(trained, destination)
        return destination
    return make


def test_run_reads_what_training_wrote(trained, tiny_cache):
    run = Run.open(trained)
    assert run.model_name == "conv1" and run.classes == ["cat", "dog"]
    assert run.train_config == make_config(tiny_cache, trained, epochs=2)
    assert [entry["epoch"] for entry in run.history] == [1, 2]
    assert run.state["epochs_done"] == 2 and run.state["finished"]
    assert run.split_hash and Path(run.cache_path) == Path(tiny_cache).resolve()
    preprocessing = run.preprocessing()
    assert (preprocessing.decode.width, preprocessing.decode.height, preprocessing.pixel_scale) == (16, 12, "unit")
    model = run.build_model("last")
    assert model.name.startswith("conv1") and run.weights_megabytes() > 0


@pytest.mark.parametrize("make, message", [
    (lambda path: None, "does not exist"),
    (lambda path: path.mkdir(), "not a run folder (no config.json)"),
])
def test_open_refuses_what_is_not_a_run(tmp_path, make, message):
    make(tmp_path / "run")
    with pytest.raises(UserError) as caught:
        Run.open(tmp_path / "run")
    assert message in str(caught.value)


@pytest.mark.parametrize("name, content, message", [
    ("config.json", "{not json", "config.json: not valid JSON; the run folder is damaged"),
    ("config.json", "[1, 2]", "not a run's configuration"),
    ("classes.json", '"cat"', "not a list of two or more class names"),
    ("metrics.jsonl", '{"epoch": 1}\n{broken\n', "line 2 is not JSON"),
    ("evaluation.json", "{", "evaluation.json: not valid JSON"),
])
def test_a_damaged_file_is_one_line_through_the_command_line(copy_of, shared_photos, capsys, name, content, message):
    run = copy_of()
    (run / name).write_text(content)
    command = ["report", str(run), "--out", str(run.parent / "report")] if name in ("metrics.jsonl", "evaluation.json") \
        else ["predict", str(run), str(real_photos(shared_photos, 1)[0])]
    assert cli.run(command) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and "Traceback" not in error


@pytest.mark.parametrize("stored, expected", [(float("nan"), 0.5), (5.0, 0.5), (-1, 0.5), ("0.3", 0.5), (0.3, 0.3)])
def test_only_a_probability_is_used_as_the_threshold(copy_of, stored, expected):
    """A NaN threshold used to make /predict and /health answer 500; 5 labelled everything class 0."""
    run = copy_of()
    (run / "evaluation.json").write_text(json.dumps({"validation_threshold": stored}))  # NaN as Python writes it
    from cnnlab.inference.classifier import resolve_threshold

    threshold, source, notes = resolve_threshold(Run.open(run), ["cat", "dog"], None)
    assert threshold == expected
    assert (source == "validation") == (expected == 0.3) and (bool(notes) == (expected != 0.3))


def test_diverged_weights_are_refused_in_one_line(copy_of, shared_photos, capsys):
    """A run whose weights hold NaN (`--lr 1e6`) must not print labels with nan probabilities."""
    run = copy_of()
    model = Run.open(run).build_model()
    model.set_weights([np.full(weight.shape, np.nan, dtype="float32") for weight in model.get_weights()])
    files.save_weights(model, run / "best.weights.h5")
    photo = real_photos(shared_photos, 1)[0]
    assert cli.run(["predict", str(run), str(photo)]) == 2
    error = capsys.readouterr().err.strip()
    assert "training diverged" in error and "lower --lr" in error and "\n" not in error


def test_weights_of_another_model_are_one_short_line(copy_of, tiny_cache, tmp_path, capsys):
    other = tmp_path / "conv2"
    quiet_train(make_config(tiny_cache, other, model="conv2", epochs=1))
    run = copy_of()
    shutil.copy(other / "best.weights.h5", run / "best.weights.h5")
    assert cli.run(["evaluate", str(run)]) == 2
    error = capsys.readouterr().err.strip()
    assert "cannot load these weights into conv1" in error and len(error) < 400 and "\n" not in error


def test_an_out_that_cannot_be_a_folder_is_one_line(tiny_cache, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status = cli.run(["train", "conv1", "--any-input-size", "--cache", str(tiny_cache), "--out", str(blocker / "run"), "--epochs", "1"])
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert "cannot create or open this folder" in error and "\n" not in error
    assert blocker.read_text() == "not a folder"


LOCK_HOLDER = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_trainer_is_refused_and_a_killed_ones_lock_never_lingers(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        arguments = ["train", "conv1", "--any-input-size", "--cache", str(tiny_cache), "--out", str(run), "--epochs", "1", "--no-evaluate"]
        assert cli.run(arguments) == 2
        error = capsys.readouterr().err
        assert "another `cnnlab train` is writing this run folder" in error
        assert os.listdir(run) == []  # the refused trainer wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The kernel released the killed holder's lock: the same command now trains.
    assert cli.run(["train", "conv1", "--any-input-size", "--cache", str(tiny_cache), "--out", str(run), "--epochs", "1",
                    "--batch-size", "4", "--no-evaluate"]) == 0
    assert Run.open(run).state["epochs_done"] == 1


def test_a_refused_start_leaves_no_folder_behind(tmp_path, capsys):
    """A start refused before anything is written (here: no cache at --data) leaves no empty --out."""
    out = tmp_path / "new-run"
    status = cli.run(["train", "conv1", "--any-input-size", "--cache", str(tmp_path / "no-cache"), "--out", str(out), "--epochs", "1"])
    assert status == 2 and not out.exists()
    assert "no-cache" in capsys.readouterr().err
