"""Sharded caches: the same split, labels and pixels as an unsharded prepare; disjoint shards that
cover every photo; shards prepared one at a time complete to the same cache; incremental reuse."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cnnlab.cli import run
from cnnlab.data.cache import MANIFEST_NAME, PrepareOptions, prepare
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.reader import open_cache
from cnnlab.data.shards import prepare_sharded, shard_folder, shard_of
from cnnlab.data.splits import SplitOptions
from imagefiles import write_bad_files

OPTIONS = PrepareOptions(decode=DecodeOptions(16, 12), split=SplitOptions("stratified", val=6, test=4, seed=3), workers=1)
SHARDS = 3


@pytest.fixture
def photos(small_kaggle_folder):
    write_bad_files(small_kaggle_folder, "dog")  # skipped files must be sharded consistently too
    (small_kaggle_folder / "notes.txt").write_text("not a photo\n")
    return small_kaggle_folder


def _by_path(cache):
    rows = range(len(cache.labels))
    return {record["path"]: (int(cache.labels[row]), str(cache.splits[row]), np.asarray(cache.images[row]))
            for row, record in zip(rows, cache.manifest["records"])}


def test_sharded_and_unsharded_caches_agree_photo_by_photo(photos, tmp_path):
    unsharded = prepare(photos, tmp_path / "plain", OPTIONS, show_progress=False)
    sharded = prepare_sharded(photos, tmp_path / "sharded", OPTIONS, SHARDS, show_progress=False)
    plain, combined = open_cache(tmp_path / "plain"), open_cache(tmp_path / "sharded")

    assert combined.split_hash == plain.split_hash == unsharded.manifest["split_hash"]
    assert sharded.manifest["counts"] == unsharded.manifest["counts"]
    assert sharded.manifest["skipped"] == unsharded.manifest["skipped"]
    # Same row order as the unsharded cache, so row numbers (train limits, stored predictions) agree.
    assert [r["path"] for r in combined.manifest["records"]] == [r["path"] for r in plain.manifest["records"]]
    np.testing.assert_array_equal(combined.labels, plain.labels)
    np.testing.assert_array_equal(combined.splits, plain.splits)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(combined.indices(split), plain.indices(split))
    np.testing.assert_array_equal(np.asarray(combined.images), np.asarray(plain.images))
    rows = np.array([5, 0, len(plain.labels) - 1, 7])
    np.testing.assert_array_equal(combined.images[rows], plain.images[rows])
    np.testing.assert_array_equal(combined.images[2:9:3, :, :, 0], plain.images[2:9:3, :, :, 0])
    assert combined.images.shape == plain.images.shape
    assert combined.paths([0, 3]) == plain.paths([0, 3])


def test_shards_are_disjoint_cover_everything_and_follow_the_path_hash(photos, tmp_path):
    prepare_sharded(photos, tmp_path / "sharded", OPTIONS, SHARDS, show_progress=False)
    plain = _by_path(open_cache(prepare(photos, tmp_path / "plain", OPTIONS, show_progress=False).cache_dir))
    seen = {}
    for index in range(SHARDS):
        shard = open_cache(tmp_path / "sharded", shard=index)
        assert shard.root == tmp_path / "sharded" / shard_folder(index, SHARDS)
        assert shard.manifest["shard"] == {"index": index, "count": SHARDS}
        for path, (label, split, pixels) in _by_path(shard).items():
            assert path not in seen and shard_of(path, SHARDS) == index
            seen[path] = index
            assert (label, split) == plain[path][:2]
            np.testing.assert_array_equal(pixels, plain[path][2])
        # A shard keeps the unsharded order restricted to its photos.
        order = [r["path"] for r in shard.manifest["records"]]
        assert order == [path for path in plain if path in set(order)]
    assert set(seen) == set(plain)
    assert len(set(seen.values())) == SHARDS  # 24 photos over 3 shards: none empty
    with pytest.raises(ValueError, match="shard 3 does not exist"):
        open_cache(tmp_path / "sharded", shard=SHARDS)


def test_shards_prepared_separately_complete_to_the_same_cache(photos, tmp_path):
    at_once = prepare_sharded(photos, tmp_path / "at-once", OPTIONS, SHARDS, show_progress=False)
    for index in (2, 0, 1):
        partial = prepare_sharded(photos, tmp_path / "separately", OPTIONS, SHARDS, only=index, show_progress=False)
        assert partial.manifest is None and list(partial.shards) == [index]
        assert not (tmp_path / "separately" / MANIFEST_NAME).exists()
    completed = prepare_sharded(photos, tmp_path / "separately", OPTIONS, SHARDS, show_progress=False)
    # Nothing is decoded twice. (A shard prepared alone cannot know which photos of the shards
    # prepared after it fail to decode, so completing may move their replacements between
    # splits: those shards are written again from their own pixels.)
    assert sum(result.decoded for result in completed.shards.values()) == 0
    assert completed.shards[1].up_to_date  # prepared last, it knew every other shard's bad photos
    assert (tmp_path / "separately" / MANIFEST_NAME).read_bytes() == (tmp_path / "at-once" / MANIFEST_NAME).read_bytes()
    assert completed.manifest == at_once.manifest


def test_incremental_reprepare_of_a_shard_reuses_its_pixels(photos, tmp_path):
    out = tmp_path / "sharded"
    prepare_sharded(photos, out, OPTIONS, SHARDS, show_progress=False)
    before = _by_path(open_cache(out))
    changed = next(path for path in sorted(before) if path.startswith("cat."))
    index = shard_of(changed, SHARDS)
    stat = (photos / changed).stat()
    os.utime(photos / changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    again = prepare_sharded(photos, out, OPTIONS, SHARDS, only=index, show_progress=False)
    assert again.shards[index].decoded == 1
    assert again.shards[index].reused == again.shards[index].manifest["shape"][0] - 1
    with pytest.raises(ValueError, match="changed after the cache was completed"):
        open_cache(out)  # the top-level manifest still names the old pixels of that shard
    completed = prepare_sharded(photos, out, OPTIONS, SHARDS, show_progress=False)
    assert sum(result.decoded for result in completed.shards.values()) == 0
    after = _by_path(open_cache(out))
    assert after.keys() == before.keys()
    for path in before:
        np.testing.assert_array_equal(after[path][2], before[path][2])


def test_layouts_and_counts_are_never_mixed_in_one_folder(photos, tmp_path):
    prepare_sharded(photos, tmp_path / "sharded", OPTIONS, SHARDS, show_progress=False)
    with pytest.raises(ValueError, match="cache of 3 shards"):
        prepare(photos, tmp_path / "sharded", OPTIONS, show_progress=False)
    with pytest.raises(ValueError, match="3 shards, not 2"):
        prepare_sharded(photos, tmp_path / "sharded", OPTIONS, 2, show_progress=False)
    prepare(photos, tmp_path / "plain", OPTIONS, show_progress=False)
    with pytest.raises(ValueError, match="unsharded cache"):
        prepare_sharded(photos, tmp_path / "plain", OPTIONS, 2, show_progress=False)
    with pytest.raises(ValueError, match="not a sharded cache"):
        open_cache(tmp_path / "plain", shard=0)
    with pytest.raises(ValueError, match="--shard-index must be between 0 and 2"):
        prepare_sharded(photos, tmp_path / "other", OPTIONS, SHARDS, only=3, show_progress=False)


def test_the_cli_prepares_shards_and_completes(photos, tmp_path, capsys):
    common = [str(photos), "--out", str(tmp_path / "cache"), "--size", "16x12", "--split", "stratified",
              "--val", "6", "--test", "4", "--seed", "3", "--workers", "1"]
    assert run(["prepare", *common, "--shard-index", "1", "--num-shards", "2"]) == 0
    assert "to complete the top-level manifest" in capsys.readouterr().out
    assert run(["prepare", *common, "--shards", "2"]) == 0
    out = capsys.readouterr().out
    assert "in 2 shards" in out and "skipped dog.9001.jpg" in out
    top = json.loads((tmp_path / "cache" / MANIFEST_NAME).read_text())
    assert [entry["folder"] for entry in top["shards"]] == ["shard-000-of-002", "shard-001-of-002"]
    assert run(["prepare", *common, "--shard-index", "0"]) == 2
    assert "--shard-index needs --shards" in capsys.readouterr().err
