"""`prepare`: keeps exactly the good photos, reports the bad, never touches sources, reuses
unchanged work, rebuilds on changed options, and never leaves a half-written cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnlab.data import cache as cache_module
from cnnlab.data.cache import MANIFEST_NAME, PrepareOptions, prepare, read_manifest
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.reader import open_cache
from cnnlab.data.splits import SplitOptions
from cnnlab.errors import EXIT_SOME_INPUTS_FAILED, UserError
from imagefiles import write_bad_files, write_unusual_good_files

STRATIFIED_ALL_TRAIN = SplitOptions("stratified", val=4, test=2, seed=0)


def _digests(folder):
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_bad_files_are_skipped_and_reported_and_sources_untouched(small_kaggle_folder, tmp_path):
    bad = write_bad_files(small_kaggle_folder, "cat")
    awkward = write_unusual_good_files(small_kaggle_folder, "dog")
    (small_kaggle_folder / "notes.txt").write_text("not a photo")
    before = _digests(small_kaggle_folder)
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "prepare", str(small_kaggle_folder), "--out", str(tmp_path / "cache"),
         "--split", "stratified", "--val", "4", "--test", "4", "--workers", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path / "cache")
    kept = {record["path"] for record in manifest["records"]}
    good = {p.name for p in small_kaggle_folder.iterdir() if p.name not in bad and p.suffix != ".txt"}
    assert kept == good  # exactly the good ones: 24 real photos + 8 awkward ones
    assert len(kept) == 24 + len(awkward)
    reasons = {item["path"]: item["reason"] for item in manifest["skipped"]}
    assert set(reasons) == set(bad) | {"notes.txt"}
    for name, fragment in bad.items():
        assert fragment in reasons[name]
        assert name in result.stdout  # each bad file is listed for the user
    assert _digests(small_kaggle_folder) == before  # nothing deleted or modified
    cache = open_cache(tmp_path / "cache")
    assert cache.images.shape == (len(kept), 125, 94, 3)
    assert cache.images.dtype == np.uint8 and isinstance(cache.images, np.memmap)


def test_second_run_is_a_no_op_with_an_identical_manifest(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    first = prepare(small_kaggle_folder, out, PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1), show_progress=False)
    manifest_bytes = (out / MANIFEST_NAME).read_bytes()
    second = prepare(small_kaggle_folder, out, PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1), show_progress=False)
    assert first.decoded == 24 and second.up_to_date and second.decoded == 0
    assert (out / MANIFEST_NAME).read_bytes() == manifest_bytes


def test_only_new_or_changed_files_are_decoded(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    options = PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1)
    prepare(small_kaggle_folder, out, options, show_progress=False)
    old = open_cache(out)
    old_pixels = {record["path"]: np.array(old.images[row]) for row, record in enumerate(old.manifest["records"])}
    changed = sorted(small_kaggle_folder.glob("cat.*.jpg"))[0]
    donor = sorted(small_kaggle_folder.glob("dog.*.jpg"))[0]
    changed.write_bytes(donor.read_bytes())
    os.utime(changed, ns=(1, 1))
    (small_kaggle_folder / "cat.99999.jpg").write_bytes(donor.read_bytes())
    result = prepare(small_kaggle_folder, out, options, show_progress=False)
    assert result.decoded == 2 and result.reused == 23
    new = open_cache(out)
    for row, record in enumerate(new.manifest["records"]):
        if record["path"] not in (changed.name, "cat.99999.jpg"):
            np.testing.assert_array_equal(new.images[row], old_pixels[record["path"]])
    row = [r["path"] for r in new.manifest["records"]].index(changed.name)
    np.testing.assert_array_equal(new.images[row], old_pixels[donor.name])  # really re-decoded
    assert len(list(out.glob("images-*.npy"))) == 1  # the old pixel file was removed


def test_a_changed_option_rebuilds(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    prepare(small_kaggle_folder, out, PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1), show_progress=False)
    result = prepare(small_kaggle_folder, out, PrepareOptions(DecodeOptions(32, 32, "crop"), STRATIFIED_ALL_TRAIN, workers=1),
                     show_progress=False)
    assert result.decoded == 24 and result.reused == 0
    assert open_cache(out).images.shape == (24, 32, 32, 3)
    # A changed split alone reuses every pixel: only decode options matter for pixels.
    resplit = prepare(small_kaggle_folder, out,
                      PrepareOptions(DecodeOptions(32, 32, "crop"), SplitOptions("stratified", val=4, test=2, seed=9), workers=1),
                      show_progress=False)
    assert resplit.decoded == 0 and resplit.reused == 24 and not resplit.up_to_date
    assert resplit.manifest["split_hash"] != result.manifest["split_hash"]


def test_an_interrupted_prepare_leaves_the_old_cache_valid(small_kaggle_folder, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    options = PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1)
    prepare(small_kaggle_folder, out, options, show_progress=False)
    before = (out / MANIFEST_NAME).read_bytes()
    (small_kaggle_folder / "cat.99999.jpg").write_bytes(sorted(small_kaggle_folder.iterdir())[0].read_bytes())

    def crash(*args, **kwargs):
        yield from ()
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-decode

    monkeypatch.setattr(cache_module, "decode_in_parallel", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(small_kaggle_folder, out, options, show_progress=False)
    assert (out / MANIFEST_NAME).read_bytes() == before
    assert open_cache(out).images.shape[0] == 24
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]


def test_a_cache_without_its_pixels_is_not_valid(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    prepare(small_kaggle_folder, out, PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1), show_progress=False)
    pixel_file = next(out.glob("images-*.npy"))
    with open(pixel_file, "r+b") as handle:
        handle.truncate(pixel_file.stat().st_size - 10)
    assert read_manifest(out) is None
    with pytest.raises(ValueError, match="cnnlab prepare"):
        open_cache(out)
    result = prepare(small_kaggle_folder, out, PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1), show_progress=False)
    assert result.decoded == 24  # rebuilt from scratch rather than trusting a damaged cache
    assert json.loads((out / "prepare-report.json").read_text())["decoded"] == 24


def test_survey_lists_unreadable_files_from_headers_alone(small_kaggle_folder):
    from cnnlab.data.survey import survey

    bad = write_bad_files(small_kaggle_folder, "cat")
    awkward = write_unusual_good_files(small_kaggle_folder, "dog")
    report = survey(small_kaggle_folder)
    unreadable = {item["path"]: item["reason"] for item in report["unreadable"]}
    # The truncated JPEG has a valid header: only prepare's full decode can find it.
    assert set(unreadable) == set(bad) - {"cat.9002.jpg"}
    assert "bomb" in unreadable["cat.9004.jpg"] and "empty" in unreadable["cat.9001.jpg"]
    assert report["per_class"] == {"cat": 12 + len(bad), "dog": 12 + len(awkward)}
    assert {item["path"] for item in report["format_mismatches"]} >= {"dog.9101.jpg", "dog.9102.jpg", "dog.9103.jpg"}
    assert report["modes"]["RGB"] >= 24 and "CMYK" in report["modes"]


# ---- issue 17: --out must be cnnlab's; leftovers of killed runs; nothing usable ---------------------

REFUSED = "exists and is not a cnnlab cache; choose another --out"


def _snapshot(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _foreign_folder(folder):
    """A folder of someone else's files, with names a cache also uses."""
    folder.mkdir(parents=True)
    (folder / "images-001.npy").write_bytes(b"my own array")
    (folder / "images-0123456789abcdef.npy").write_bytes(b"named like a cache's, but not in a cache")
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, "files": ["a", "b"]}))
    (folder / "prepare-report.json").write_text("my notes")
    (folder / "photo.jpg").write_bytes(b"keep me")
    return folder


@pytest.mark.parametrize("shards", [None, 2])
def test_prepare_refuses_a_folder_that_is_not_a_cache_and_touches_nothing(small_kaggle_folder, tmp_path, shards):
    out = _foreign_folder(tmp_path / "mine")
    before = _snapshot(out)
    command = [sys.executable, "-m", "cnnlab", "prepare", str(small_kaggle_folder), "--out", str(out)]
    result = subprocess.run(command + (["--shards", str(shards)] if shards else []), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and REFUSED in result.stderr and str(out) in result.stderr
    assert _snapshot(out) == before


def test_prepare_writes_into_new_empty_or_cnnlab_folders(small_kaggle_folder, tmp_path):
    options = PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1)
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new" / "cache", tmp_path / "empty"):
        prepare(small_kaggle_folder, out, options, show_progress=False)
        prepare(small_kaggle_folder, out, options, show_progress=False)  # a cache now: written again
    with pytest.raises(UserError, match="is not a folder"):
        (tmp_path / "file").write_text("x")
        prepare(small_kaggle_folder, tmp_path / "file", options, show_progress=False)


def _dead_process_id() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_dead_runs_are_removed_and_those_of_live_runs_kept(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    # Only what a first prepare killed before its manifest leaves: still cnnlab's folder.
    out.mkdir()
    dead, alive = _dead_process_id(), os.getppid()
    leftovers = [f".images-{dead}.npy.partial", f".manifest.json.{dead}.partial", f".prepare-report.json.{dead}.partial"]
    for name in leftovers + [f".images-{alive}.npy.partial", "images-00000000000000ff.npy"]:
        (out / name).write_bytes(b"\0" * 100)
    prepare(small_kaggle_folder, out, PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1), show_progress=False)
    names = {path.name for path in out.iterdir()}
    assert not names & set(leftovers)
    assert f".images-{alive}.npy.partial" in names  # another prepare may be writing it
    assert "images-00000000000000ff.npy" not in names  # a pixel file no manifest names
    assert open_cache(out).images.shape[0] == 24


def test_a_prepare_killed_mid_run_is_cleaned_up_by_the_next(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    script = (
        "import sys, time\n"
        "from cnnlab.data import cache\n"
        "from cnnlab.data.splits import SplitOptions\n"
        "decode = cache.decode_in_parallel\n"
        "def slowly(*arguments, **options):\n"
        "    for result in decode(*arguments, **options):\n"
        "        time.sleep(0.5)\n"
        "        yield result\n"
        "cache.decode_in_parallel = slowly\n"
        "cache.prepare(sys.argv[1], sys.argv[2], cache.PrepareOptions(split=SplitOptions('stratified', val=4, test=2),"
        " workers=1), show_progress=False)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(small_kaggle_folder), str(out)])
    partial = out / f".images-{process.pid}.npy.partial"
    try:
        for _ in range(600):
            if partial.exists() and partial.stat().st_size > 128:
                break
            time.sleep(0.05)
        assert partial.exists(), "the prepare never started writing"
    finally:
        process.kill()  # SIGKILL: no cleanup of its own
        process.wait()
    assert partial.exists() and not (out / MANIFEST_NAME).exists()
    prepare(small_kaggle_folder, out, PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1), show_progress=False)
    assert not [path.name for path in out.iterdir() if path.name.endswith(".partial")]
    assert open_cache(out).images.shape[0] == 24


def _unusable_folder(folder):
    folder.mkdir(parents=True)
    for label in ("cat", "dog"):
        (folder / f"{label}.1.jpg").write_bytes(b"")
        (folder / f"{label}.2.jpg").write_bytes(b"<html>not found</html>")
        (folder / f"{label}.3.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    return folder


def test_prepare_stops_when_not_one_photo_can_be_used(tmp_path):
    photos = _unusable_folder(tmp_path / "photos")
    options = PrepareOptions(split=SplitOptions("stratified", val=2, test=2), workers=1)
    with pytest.raises(UserError) as error:
        prepare(photos, tmp_path / "cache", options, show_progress=False)
    message = str(error.value)
    assert error.value.exit_code == EXIT_SOME_INPUTS_FAILED and "\n" not in message
    assert "none of the 6 photos" in message and "cat.1.jpg: empty file (0 bytes)" in message
    report = json.loads((tmp_path / "cache" / "prepare-report.json").read_text())
    assert len(report["skipped"]) == 6 and "no cache written" in report["summary"]
    assert not (tmp_path / "cache" / MANIFEST_NAME).exists() and not list((tmp_path / "cache").glob("*.npy"))

    result = subprocess.run([sys.executable, "-m", "cnnlab", "prepare", str(photos), "--out", str(tmp_path / "cache"),
                             "--split", "stratified", "--val", "2", "--test", "2"], capture_output=True, text=True,
                            timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("cnnlab prepare: error:")]
    assert result.returncode == EXIT_SOME_INPUTS_FAILED and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and "none of the 6 photos" in errors[0]  # the other line is the progress bar


def test_a_usable_cache_survives_a_run_where_every_photo_fails(small_kaggle_folder, tmp_path):
    out = tmp_path / "cache"
    options = PrepareOptions(split=STRATIFIED_ALL_TRAIN, workers=1)
    prepare(small_kaggle_folder, out, options, show_progress=False)
    manifest = (out / MANIFEST_NAME).read_bytes()
    for path in small_kaggle_folder.iterdir():
        path.write_bytes(b"")  # e.g. a sync that emptied every file
    with pytest.raises(UserError, match="none of the 24 photos"):
        prepare(small_kaggle_folder, out, options, show_progress=False)
    assert (out / MANIFEST_NAME).read_bytes() == manifest and open_cache(out).images.shape[0] == 24


def test_a_sharded_prepare_stops_when_not_one_photo_can_be_used(tmp_path):
    from cnnlab.data.shards import prepare_sharded

    photos = _unusable_folder(tmp_path / "photos")
    with pytest.raises(UserError) as error:
        prepare_sharded(photos, tmp_path / "cache", PrepareOptions(split=SplitOptions("stratified", val=2, test=2),
                                                                   workers=1), 2, show_progress=False)
    assert error.value.exit_code == EXIT_SOME_INPUTS_FAILED and "none of the 6 photos" in str(error.value)
    assert not (tmp_path / "cache" / MANIFEST_NAME).exists()
