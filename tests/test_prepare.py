"""`prepare`: keeps exactly the good photos, reports the bad, never touches sources, reuses
unchanged work, rebuilds on changed options, and never leaves a half-written cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.data import cache as cache_module
from cnnlab.data.cache import MANIFEST_NAME, PrepareOptions, prepare, read_manifest
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.reader import open_cache
from cnnlab.data.splits import SplitOptions
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
