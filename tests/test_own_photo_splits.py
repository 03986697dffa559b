"""Issue 15, splits for anyone's folder: stratified by default, fractions or totals, one-line
errors for classes too small, and 20 photos per class trained end to end with the defaults."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys

import pytest

from cnnlab import cli
from cnnlab.data.cache import read_manifest
from cnnlab.errors import EXIT_USAGE
from conftest import real_photos


def _counts(manifest, split):
    return manifest["counts"][split]


def _class_folders(shared_photos, root, per_class: int, classes=("cats", "dogs", "others")):
    """Class folders of real photos: cats, dogs, and a third class of other cats and dogs."""
    photos = real_photos(shared_photos, per_class * 2)
    cats = [path for path in photos if path.name.startswith("cat.")]
    dogs = [path for path in photos if path.name.startswith("dog.")]
    members = {"cats": cats[:per_class], "dogs": dogs[:per_class],
               "others": cats[per_class:per_class + per_class // 2] + dogs[per_class:per_class + per_class - per_class // 2]}
    for name in classes:
        (root / name).mkdir(parents=True)
        for path in members[name]:
            shutil.copy(path, root / name / path.name)
    return root


def _cli(*arguments) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.run([str(argument) for argument in arguments])
    return status, out.getvalue(), err.getvalue()


# ---- the command line --------------------------------------------------------------------------------

def test_prepare_defaults_to_stratified_and_takes_fractions(small_kaggle_folder, tmp_path):
    status, out, err = _cli("prepare", small_kaggle_folder, "--out", tmp_path / "default", "--size", "16x12",
                            "--workers", 1)
    assert status == 0, err
    manifest = read_manifest(tmp_path / "default")
    assert manifest["split"]["kind"] == "stratified" and manifest["split"]["val"] == 0.1
    assert _counts(manifest, "val") == {"cat": 1, "dog": 1} and _counts(manifest, "train") == {"cat": 10, "dog": 10}
    status, _, err = _cli("prepare", small_kaggle_folder, "--out", tmp_path / "fraction", "--size", "16x12",
                          "--val", "0.25", "--test", "2", "--workers", 1)  # was "invalid int value: '0.25'"
    assert status == 0, err
    manifest = read_manifest(tmp_path / "fraction")
    assert _counts(manifest, "val") == {"cat": 3, "dog": 3} and _counts(manifest, "test") == {"cat": 1, "dog": 1}


def test_wrong_split_values_and_small_classes_are_one_line_errors(small_kaggle_folder, tmp_path):
    command = [sys.executable, "-m", "cnnlab", "prepare", str(small_kaggle_folder), "--out", str(tmp_path / "cache")]
    for flags, fragment in ((["--val", "1.5"], "a fraction must be between 0 and 1"),
                            (["--val", "a lot"], "neither a count"),
                            (["--split", "tutorial", "--val", "0.2"], "tutorial split takes whole numbers")):
        result = subprocess.run(command + flags, capture_output=True, text=True, timeout=120)
        assert result.returncode == EXIT_USAGE and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    for path in sorted(small_kaggle_folder.glob("dog.*.jpg"))[2:]:
        path.unlink()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_USAGE and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == ("cnnlab prepare: error: class 'dog' has 2 photos; the stratified split (--split stratified "
                             "--val 0.1 --test 0.1) needs at least 3 of them (1 train, 1 validation, 1 test) - add photos "
                             "or pass --test 0\n")
    assert not (tmp_path / "cache").exists()
    assert subprocess.run(command + ["--test", "0", "--size", "16x12"], capture_output=True, timeout=120).returncode == 0


def test_help_shows_every_default_and_explains_fractions_and_counts(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.run(["prepare", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: stratified", "(default: stratified 0.1; tutorial 512 per class)",
                    "(default: stratified all the rest; tutorial 2048 per class)", "(default: 0)", "(default: 94x125",
                    "(default: stretch)", "(default: off)", "(default: auto)", "(default: 0, one per core)"):
        assert default in text, default
    assert "a fraction F in (0, 1): that share of each class" in text and "a count N: a TOTAL over all classes" in text
    assert "are PER CLASS" in text


# ---- 20 photos per class, three classes, the defaults, end to end -------------------------------------

def test_twenty_photos_per_class_prepare_with_the_defaults_and_train(shared_photos, tmp_path):
    from cnnlab.runs import Run, TrainConfig
    from cnnlab.training.trainer import train

    photos = _class_folders(shared_photos, tmp_path / "photos", 20)
    status, out, err = _cli("prepare", photos, "--out", tmp_path / "cache", "--workers", 1)
    assert status == 0, err
    manifest = read_manifest(tmp_path / "cache")
    for split, count in (("val", 2), ("test", 2), ("train", 16)):
        assert _counts(manifest, split) == {"cats": count, "dogs": count, "others": count}
    config = TrainConfig(model="resnet9-tiny", cache=str(tmp_path / "cache"), out=str(tmp_path / "run"), epochs=1)
    state = train(config, stream=io.StringIO(), show_progress=False)
    assert state["finished"]
    run = Run.open(tmp_path / "run")
    assert run.classes == ["cats", "dogs", "others"] and run.data["split_hash"] == manifest["split_hash"]
    assert run.data["train_images"] == 48 and run.data["val_images"] == 6
