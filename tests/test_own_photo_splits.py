"""Issue 15, splits for anyone's folder: stratified by default, fractions or totals, counts that
hold when photos fail to decode, one-line errors for classes too small, an existing cache never
re-split behind the user's back, and 20 photos per class trained end to end with the defaults."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys

import pytest

from cnnlab import cli
from cnnlab.data import cache as cache_module
from cnnlab.data.cache import MANIFEST_NAME, PrepareOptions, prepare, read_manifest
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.reader import open_cache
from cnnlab.data.shards import prepare_sharded
from cnnlab.data.splits import SplitOptions, assign_splits
from cnnlab.errors import EXIT_SOME_INPUTS_FAILED, EXIT_USAGE, UserError
from conftest import real_photos
from imagefiles import write_bad_files

SMALL = DecodeOptions(16, 12)


def _options(split: SplitOptions) -> PrepareOptions:
    return PrepareOptions(decode=SMALL, split=split, workers=1)


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
    config = TrainConfig(model="resnet9-tiny", cache=str(tmp_path / "cache"), out=str(tmp_path / "run"), epochs=1,
                         any_input_size=True)
    state = train(config, stream=io.StringIO(), show_progress=False)
    assert state["finished"]
    run = Run.open(tmp_path / "run")
    assert run.classes == ["cats", "dogs", "others"] and run.data["split_hash"] == manifest["split_hash"]
    assert run.data["train_images"] == 48 and run.data["val_images"] == 6


# ---- bad photos: skipped first, then split ---------------------------------------------------------

@pytest.fixture
def with_bad(small_kaggle_folder, tmp_path):
    """12 real photos per class plus 6 broken ones per class (18 found); and the same folder without them."""
    clean = tmp_path / "clean"
    shutil.copytree(small_kaggle_folder, clean)
    bad = {**write_bad_files(small_kaggle_folder, "cat"), **write_bad_files(small_kaggle_folder, "dog")}
    return small_kaggle_folder, clean, set(bad)


def test_bad_photos_are_replaced_so_validation_and_test_counts_hold(with_bad, tmp_path):
    photos, clean, bad = with_bad
    options = _options(SplitOptions("stratified", val=8, test=6, seed=1))
    paths = sorted(path.name for path in photos.iterdir())
    before = dict(zip(paths, assign_splits(paths, [p.split(".")[0] for p in paths], options.split)))
    assert {before[name] for name in bad} & {"val", "test"}  # without replacement, the counts would shrink

    first = prepare(photos, tmp_path / "cache", options, show_progress=False)
    manifest = first.manifest
    assert _counts(manifest, "val") == {"cat": 4, "dog": 4} and _counts(manifest, "test") == {"cat": 3, "dog": 3}
    assert _counts(manifest, "train") == {"cat": 5, "dog": 5}  # the other 12 - 7 good ones
    assert {item["path"] for item in manifest["skipped"]} == bad and first.decoded == 36
    assert manifest["split"]["per_class"] == {"cat": {"val": 4, "test": 3, "train": None},
                                              "dog": {"val": 4, "test": 3, "train": None}}
    # The same cache as a folder that never held the bad photos: split hash, row order, labels.
    without = prepare(clean, tmp_path / "clean-cache", options, show_progress=False).manifest
    assert manifest["split_hash"] == without["split_hash"]
    assert [(r["path"], r["split"]) for r in manifest["records"]] == [(r["path"], r["split"]) for r in without["records"]]
    cache = open_cache(tmp_path / "cache")
    assert [cache.splits[row] for row in range(len(cache.splits))] == [r["split"] for r in manifest["records"]]
    # Incremental: the next prepare knows the bad photos and finds the cache up to date.
    again = prepare(photos, tmp_path / "cache", options, show_progress=False)
    assert again.up_to_date and again.decoded == 0 and again.manifest == manifest


def test_fractions_and_a_fixed_training_count_hold_too(with_bad, tmp_path):
    photos, _, bad = with_bad
    by_fraction = prepare(photos, tmp_path / "fractions", _options(SplitOptions(val=0.2, test=0.1)),
                          show_progress=False).manifest
    # Shares of the 18 photos found per class (before decoding): 3.6 -> 4 and 1.8 -> 2, all usable ones.
    assert _counts(by_fraction, "val") == {"cat": 4, "dog": 4} and _counts(by_fraction, "test") == {"cat": 2, "dog": 2}
    assert _counts(by_fraction, "train") == {"cat": 6, "dog": 6}
    assert by_fraction["split"]["val"] == 0.2 and by_fraction["split"]["per_class"]["cat"]["val"] == 4

    fixed = _options(SplitOptions("stratified", train=8, val=6, test=4, seed=5))
    result = prepare(photos, tmp_path / "fixed", fixed, show_progress=False)
    assert _counts(result.manifest, "train") == {"cat": 4, "dog": 4}
    assert _counts(result.manifest, "val") == {"cat": 3, "dog": 3} and _counts(result.manifest, "test") == {"cat": 2, "dog": 2}
    reached = {item["path"] for item in result.manifest["skipped"]}
    assert reached <= bad and result.decoded == 18 + len(reached)  # only the photos the split reached
    assert prepare(photos, tmp_path / "fixed", fixed, show_progress=False).up_to_date


def test_a_sharded_cache_replaces_bad_photos_as_an_unsharded_one(with_bad, tmp_path):
    photos, _, _ = with_bad
    options = _options(SplitOptions("stratified", train=10, val=8, test=6, seed=1))
    plain = prepare(photos, tmp_path / "plain", options, show_progress=False).manifest
    sharded = prepare_sharded(photos, tmp_path / "sharded", options, 3, show_progress=False).manifest
    assert sharded["split_hash"] == plain["split_hash"] and sharded["counts"] == plain["counts"]
    assert [r["path"] for r in open_cache(tmp_path / "sharded").manifest["records"]] == [r["path"] for r in plain["records"]]


def test_an_interrupted_replacement_leaves_the_old_cache(small_kaggle_folder, tmp_path, monkeypatch):
    out, options = tmp_path / "cache", _options(SplitOptions("stratified", val=8, test=6, seed=1))
    prepare(small_kaggle_folder, out, options, show_progress=False)
    before = (out / MANIFEST_NAME).read_bytes()
    write_bad_files(small_kaggle_folder, "cat")  # new photos, some in validation or test until decoded
    write_bad_files(small_kaggle_folder, "dog")

    def interrupted(*arguments):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while rows were being moved

    monkeypatch.setattr(cache_module, "reorder_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(small_kaggle_folder, out, options, show_progress=False)
    assert (out / MANIFEST_NAME).read_bytes() == before and open_cache(out).images.shape[0] == 24
    assert not [path.name for path in out.iterdir() if path.name.endswith(".partial")]
    monkeypatch.undo()
    result = prepare(small_kaggle_folder, out, options, show_progress=False)
    assert result.decoded == 12 and result.reused == 24  # only the new files decoded
    old = json.loads(before)  # the bad photos change nothing but the list of skipped files
    assert result.manifest["records"] == old["records"] and result.manifest["split_hash"] == old["split_hash"]
    assert len(result.manifest["skipped"]) == 12


def test_a_class_left_too_small_by_bad_photos_is_reported_and_the_cache_kept(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    prepare(small_kaggle_folder, out, _options(SplitOptions()), show_progress=False)
    before = (out / MANIFEST_NAME).read_bytes()
    for path in sorted(small_kaggle_folder.glob("dog.*.jpg"))[:10]:
        path.write_bytes(b"")  # 2 usable dogs of 12 found: the default split needs 1 + 1 + 1
    with pytest.raises(UserError) as error:
        prepare(small_kaggle_folder, out, _options(SplitOptions()), show_progress=False)
    message = str(error.value)
    assert error.value.exit_code == EXIT_SOME_INPUTS_FAILED and "\n" not in message
    assert message.startswith("class 'dog' has 2 usable photos (10 of its 12 could not be decoded); ")
    assert "prepare-report.json" in message and "the cache was not changed" in message
    report = json.loads((out / "prepare-report.json").read_text())
    assert len(report["skipped"]) == 10 and report["summary"].startswith("no cache written")
    assert (out / MANIFEST_NAME).read_bytes() == before


def test_rows_are_reordered_in_place_and_dropped_rows_cut(tmp_path):
    import numpy as np

    from cnnlab.data.cache_io import finish_npy, reorder_rows

    rows = np.arange(7 * 2 * 3 * 3, dtype=np.uint8).reshape(7, 2, 3, 3)
    path = tmp_path / "rows.npy"
    with open(path, "wb") as output:
        output.write(b"\0" * 128 + rows.tobytes())
        finish_npy(output, rows.shape)
    order = [3, 0, 6, 1, 2]  # rows 4 and 5 dropped
    reorder_rows(path, order, (2, 3, 3))
    np.testing.assert_array_equal(np.load(path), rows[order])


# ---- an existing cache is re-split only when asked -----------------------------------------------------

def test_an_existing_cache_is_not_re_split_by_changed_defaults(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    tutorial = _options(SplitOptions("tutorial", train=8, val=4))
    first = prepare(small_kaggle_folder, out, tutorial, show_progress=False)
    with pytest.raises(UserError) as error:  # e.g. `cnnlab prepare DATA --out CACHE` as before the default changed
        prepare(small_kaggle_folder, out, _options(SplitOptions()), show_progress=False)
    assert str(error.value).startswith(f"--out {out} holds a cache split with --split tutorial --train 8 --val 4 "
                                       "--test 0, not the default --split stratified --val 0.1 --test 0.1; pass "
                                       "--split tutorial --train 8 --val 4 --test 0 to update it as it is")
    status, printed, err = _cli("prepare", small_kaggle_folder, "--out", out)  # the command line: one line, exit 2
    assert status == EXIT_USAGE and printed == "" and err.count("\n") == 1 and "--split tutorial --train 8" in err
    assert prepare(small_kaggle_folder, out, tutorial, show_progress=False).up_to_date
    resplit = prepare(small_kaggle_folder, out, _options(SplitOptions("stratified")), show_progress=False)
    assert resplit.decoded == 0 and resplit.manifest["split_hash"] != first.manifest["split_hash"]
    # The same for a cache prepared with the old stratified defaults (500 and 500), sharded too.
    old_defaults = _options(SplitOptions("stratified", val=4, test=2))
    prepare_sharded(small_kaggle_folder, tmp_path / "sharded", old_defaults, 2, show_progress=False)
    with pytest.raises(UserError, match="holds a cache split with --split stratified --val 4 --test 2"):
        prepare_sharded(small_kaggle_folder, tmp_path / "sharded", _options(SplitOptions()), 2, show_progress=False)
