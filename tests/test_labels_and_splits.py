"""Label inference from both layouts, class order, and split disjointness/coverage/stability."""

from __future__ import annotations

import pytest

from cnnlab.data.labels import class_order, find_labelled_files, natural_key
from cnnlab.data.splits import ClassCounts, SplitOptions, assign_splits, parse_split_value, plan_splits, split_manifest_hash
from cnnlab.errors import UserError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_kaggle_names_give_labels_in_numeric_order(tmp_path):
    for name in ("cat.10.jpg", "cat.2.jpg", "dog.1.jpg", "notes.txt", "README"):
        _touch(tmp_path / name)
    found = find_labelled_files(tmp_path)
    assert found.layout == "kaggle"
    assert found.paths == ["cat.2.jpg", "cat.10.jpg", "dog.1.jpg"]
    assert found.labels == ["cat", "cat", "dog"]
    assert {item["path"] for item in found.ignored} == {"notes.txt", "README"}


def test_class_folders_ignore_hidden_folders_and_recurse(tmp_path):
    _touch(tmp_path / "zebra" / "a.jpg")
    _touch(tmp_path / "apple" / "sub" / "b.png")
    _touch(tmp_path / "apple" / ".ipynb_checkpoints" / "c.jpg")
    _touch(tmp_path / ".ipynb_checkpoints" / "d.jpg")
    _touch(tmp_path / "apple" / "readme.txt")
    found = find_labelled_files(tmp_path)
    assert found.layout == "folders"
    assert found.class_names() == ["apple", "zebra"]
    assert dict(zip(found.paths, found.labels)) == {"apple/sub/b.png": "apple", "zebra/a.jpg": "zebra"}
    assert found.ignored == [{"path": "apple/readme.txt", "reason": "not an image file extension"}]


def test_layout_can_be_forced_and_errors_name_the_fix(tmp_path):
    _touch(tmp_path / "train" / "cat.1.jpg")
    with pytest.raises(ValueError, match="pass --data .*train"):
        find_labelled_files(tmp_path)  # one class folder: the user meant the folder below
    found = find_labelled_files(tmp_path / "train", layout="kaggle")
    assert found.labels == ["cat"]
    with pytest.raises(ValueError, match="not a folder"):
        find_labelled_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="layout"):
        find_labelled_files(tmp_path, layout="csv")


def test_class_order_default_tutorial_and_explicit():
    assert class_order(["dog", "cat", "cat"]) == ["cat", "dog"]
    assert class_order(["dog", "cat"], tutorial=True) == ["dog", "cat"]  # cat = 1 as in the tutorial
    assert class_order(["a", "b", "c"], tutorial=True) == ["a", "b", "c"]
    assert class_order(["a", "b"], ["b", "a"]) == ["b", "a"]
    with pytest.raises(ValueError, match="exactly once"):
        class_order(["a", "b"], ["a", "c"])


def test_natural_key_orders_numbers_numerically():
    assert sorted(["cat.10.jpg", "cat.9.jpg", "cat.100.jpg"], key=natural_key) == ["cat.9.jpg", "cat.10.jpg", "cat.100.jpg"]


def _kaggle_files(per_class: int, classes=("cat", "dog")):
    paths = [f"{label}.{number}.jpg" for label in classes for number in range(per_class)]
    return paths, [path.split(".")[0] for path in paths]


def test_tutorial_split_takes_first_and_last_by_id():
    paths, labels = _kaggle_files(30)
    split = assign_splits(paths, labels, SplitOptions("tutorial", train=20, val=5))
    by_path = dict(zip(paths, split))
    assert [p for p in paths if by_path[p] == "train" and p.startswith("cat")] == [f"cat.{i}.jpg" for i in range(20)]
    assert [p for p in paths if by_path[p] == "val" and p.startswith("cat")] == [f"cat.{i}.jpg" for i in range(25, 30)]
    assert sum(s is None for s in split) == 10  # ids 20-24 of each class are unused
    with_test = dict(zip(paths, assign_splits(paths, labels, SplitOptions("tutorial", train=20, val=5, test=3))))
    assert [p for p in paths if with_test[p] == "test" and p.startswith("dog")] == ["dog.20.jpg", "dog.21.jpg", "dog.22.jpg"]
    assert {p for p in paths if with_test[p] == "val"} == {p for p in paths if by_path[p] == "val"}
    with pytest.raises(ValueError, match="needs 35 per class"):
        assign_splits(paths, labels, SplitOptions("tutorial", train=30, val=5))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stratified_split_is_disjoint_balanced_and_covers_everything(seed):
    paths, labels = _kaggle_files(50, ("a", "b", "c"))
    split = assign_splits(paths, labels, SplitOptions("stratified", val=15, test=30, seed=seed))
    assert None not in split  # train defaults to all the rest: full coverage
    for name, per_class in (("val", 5), ("test", 10), ("train", 35)):
        for label in "abc":
            assert sum(1 for s, l in zip(split, labels) if s == name and l == label) == per_class


def test_stratified_split_is_seeded_and_stable_when_files_are_added():
    paths, labels = _kaggle_files(40)
    options = SplitOptions("stratified", train=20, val=10, test=10, seed=3)
    first = dict(zip(paths, assign_splits(paths, labels, options)))
    reversed_paths = list(reversed(paths))
    again = dict(zip(reversed_paths, assign_splits(reversed_paths, list(reversed(labels)), options)))
    assert first == again  # independent of listing order
    other_seed = dict(zip(paths, assign_splits(paths, labels, SplitOptions("stratified", 20, 10, 10, seed=4))))
    assert other_seed != first
    more_paths, more_labels = _kaggle_files(41)
    grown = dict(zip(more_paths, assign_splits(more_paths, more_labels, SplitOptions("stratified", None, 10, 10, seed=3))))
    # Validation and test membership depends only on each file's own hash rank: one new file
    # per class moves at most one file per class out of val/test.
    moved = [p for p in paths if first[p] in ("val", "test") and grown[p] != first[p]]
    assert len(moved) <= 2


def test_stratified_split_rejects_impossible_requests():
    paths, labels = _kaggle_files(10)
    with pytest.raises(ValueError, match=r"class 'cat' has 10 photos; .* needs at least 11 of them \(5 train, 3 validation, 3 test\)"):
        assign_splits(paths, labels, SplitOptions("stratified", train=10, val=6, test=6))
    with pytest.raises(ValueError, match=">= 0"):
        SplitOptions("stratified", val=-2).resolved()
    for bad in (1.0, 1.5, 0.0, -0.1):
        with pytest.raises(ValueError, match="a fraction must be between 0 and 1"):
            SplitOptions("stratified", val=bad).resolved()
    with pytest.raises(ValueError, match="tutorial split takes whole numbers per class"):
        SplitOptions("tutorial", val=0.2).resolved()
    with pytest.raises(ValueError, match="add up to more than all the photos"):
        SplitOptions(val=0.5, test=0.5).resolved()


def _count(assignment, labels, split, label):
    return sum(1 for s, l in zip(assignment, labels) if s == split and l == label)


def test_defaults_are_stratified_with_a_tenth_for_validation_and_test():
    assert SplitOptions().resolved() == SplitOptions("stratified", None, 0.1, 0.1, 0)
    assert SplitOptions("tutorial").resolved() == SplitOptions("tutorial", 2048, 512, 0, 0)  # unchanged
    assert not SplitOptions().chosen() and SplitOptions(seed=0).chosen()


def test_fractions_are_shares_of_each_class_rounded_half_up_at_least_one():
    sizes = {"a": 25, "b": 4, "c": 10, "d": 3}
    paths = [f"{label}.{number}.jpg" for label, size in sizes.items() for number in range(size)]
    labels = [path.split(".")[0] for path in paths]
    plan = plan_splits(paths, labels, SplitOptions(val=0.1, test=0.2))
    expected = {"a": (3, 5, 17), "b": (1, 1, 2), "c": (1, 2, 7), "d": (1, 1, 1)}  # 2.5 -> 3, 0.4 -> 1, 0.6 -> 1
    for label, (val, test, train) in expected.items():
        assert [_count(plan.assignment, labels, name, label) for name in ("val", "test", "train")] == [val, test, train]
        assert plan.counts[label] == ClassCounts(val=val, test=test, train=None)
    assert plan.record(SplitOptions(val=0.1, test=0.2).resolved())["per_class"]["a"] == {"val": 3, "test": 5, "train": None}
    fixed_train = plan_splits(paths, labels, SplitOptions(train=0.5, val=0.1, test=0.1)).assignment
    assert _count(fixed_train, labels, "train", "a") == 13 and _count(fixed_train, labels, None, "a") == 6


def test_counts_are_totals_shared_equally_the_first_classes_taking_the_remainder():
    paths, labels = _kaggle_files(10, ("a", "b", "c"))
    split = assign_splits(paths, labels, SplitOptions("stratified", train=7, val=5, test=3))
    assert [_count(split, labels, "val", label) for label in "abc"] == [2, 2, 1]
    assert [_count(split, labels, "test", label) for label in "abc"] == [1, 1, 1]
    assert [_count(split, labels, "train", label) for label in "abc"] == [3, 2, 2]


def test_a_class_too_small_for_the_split_is_one_line_naming_it_its_count_and_the_fix():
    paths = [f"cats/{n}.jpg" for n in range(20)] + ["dogs/1.jpg", "dogs/2.jpg"]
    labels = [path.split("/")[0] for path in paths]
    with pytest.raises(UserError) as error:
        assign_splits(paths, labels, SplitOptions())
    assert str(error.value) == ("class 'dogs' has 2 photos; the stratified split (--split stratified --val 0.1 "
                                "--test 0.1) needs at least 3 of them (1 train, 1 validation, 1 test) - add photos or "
                                "pass --test 0")
    assert error.value.exit_code == 2
    split = assign_splits(paths, labels, SplitOptions(test=0))
    assert [s for s, label in zip(split, labels) if label == "dogs"].count("train") == 1


def test_photos_that_do_not_decode_are_passed_over_and_the_counts_hold():
    paths, labels = _kaggle_files(30)
    options = SplitOptions("stratified", val=8, test=6, seed=2)
    clean = dict(zip(paths, assign_splits(paths, labels, options)))
    bad = {position for position, path in enumerate(paths) if clean[path] in ("val", "test")}
    bad = set(sorted(bad)[::3])  # some validation and test photos of both classes
    plan = plan_splits(paths, labels, options, frozenset(bad))
    for label in ("cat", "dog"):
        assert [_count(plan.assignment, labels, name, label) for name in ("val", "test")] == [4, 3]
    assert all(plan.assignment[position] is None for position in bad) and plan.passed_over == sorted(bad)
    # Exactly the split of the folder without those photos, as if they had never been there.
    kept = [position for position in range(len(paths)) if position not in bad]
    without = assign_splits([paths[p] for p in kept], [labels[p] for p in kept], options)
    assert [plan.assignment[p] for p in kept] == without
    # With a fixed training count, the split reaches further into the seeded order.
    fixed = plan_splits(paths, labels, SplitOptions("stratified", train=20, val=8, test=6, seed=2), frozenset(bad))
    assert [_count(fixed.assignment, labels, "train", label) for label in ("cat", "dog")] == [10, 10]
    short = [f"cat.{n}.jpg" for n in range(3)] + [f"dog.{n}.jpg" for n in range(5)]
    with pytest.raises(UserError, match=r"class 'cat' has 2 usable photos \(1 of its 3 could not be decoded\)") as error:
        plan_splits(short, [p.split(".")[0] for p in short], SplitOptions(), frozenset({0}))
    assert error.value.exit_code == 1


def test_split_values_parse_as_counts_or_fractions():
    assert parse_split_value("500") == 500 and isinstance(parse_split_value("500"), int)
    assert parse_split_value("0.2") == 0.2 and parse_split_value("0") == 0
    for text in ("a fifth", "nan", "inf", ""):
        with pytest.raises(UserError, match="neither a count"):
            parse_split_value(text)


def test_split_hash_depends_on_content_not_order():
    entries = [("a.jpg", "cat", "train"), ("b.jpg", "dog", "val")]
    assert split_manifest_hash(entries) == split_manifest_hash(list(reversed(entries)))
    assert split_manifest_hash(entries) != split_manifest_hash([("a.jpg", "cat", "val"), ("b.jpg", "dog", "val")])


# Computed by the code before names that are not UTF-8 were handled (issue 17): the split and
# shard of every valid name, and so every existing cache's split hash, must never change.
GOLDEN_NAMES = [f"{label}.{number}.jpg" for label in ("cat", "dog") for number in range(20)] + ["dog/é.ü.jpg", "cat/naïve.1.jpg"]
GOLDEN_SPLIT_HASH = "e06bde925764eff39fdd966b2e47ddc23c22f5bf4d504709eafaa99dab808702"
GOLDEN_SHARDS = [1, 3, 0, 2, 0, 3, 2, 0, 2, 0, 3, 0, 3, 0, 1, 2, 0, 0, 3, 2, 0, 1, 1, 0, 2, 2, 1, 1, 0, 3, 1, 0, 1, 2,
                 1, 2, 0, 1, 0, 1, 3, 2]


def test_splits_and_shards_of_valid_names_never_change():
    from cnnlab.data.shards import shard_of

    labels = [name.split("/")[0].split(".")[0] for name in GOLDEN_NAMES]
    assignment = assign_splits(GOLDEN_NAMES, labels, SplitOptions("stratified", val=4, test=4, seed=3))
    triples = [(name, label, split) for name, label, split in zip(GOLDEN_NAMES, labels, assignment) if split]
    assert split_manifest_hash(triples) == GOLDEN_SPLIT_HASH
    assert [shard_of(name, 4) for name in GOLDEN_NAMES] == GOLDEN_SHARDS


def test_names_that_are_not_utf8_are_split_and_sharded_by_their_bytes(tmp_path):
    import os

    from cnnlab.data.shards import shard_of

    for raw in (b"cat.\xff\xfe.jpg", b"cat.1.jpg", b"cat.2.jpg", b"cat.3.jpg", b"dog.1.jpg", b"dog.2.jpg", b"dog.3.jpg",
                b"dog.\xe9.jpg", b"notes-\xff.txt"):
        (tmp_path / os.fsdecode(raw)).write_bytes(b"x")
    found = find_labelled_files(tmp_path)
    assert os.fsdecode(b"cat.\xff\xfe.jpg") in found.paths
    assert found.ignored == [{"path": "notes-\\xff.txt", "reason": "not an image file extension"}]
    assignment = assign_splits(found.paths, found.labels, SplitOptions("stratified", val=2, test=2))
    assert sorted(split for split in assignment) == ["test"] * 2 + ["train"] * 4 + ["val"] * 2
    assert shard_of(os.fsdecode(b"cat.\xff\xfe.jpg"), 4) in range(4)
    again = assign_splits(list(reversed(found.paths)), list(reversed(found.labels)), SplitOptions("stratified", val=2, test=2))
    assert list(reversed(again)) == assignment  # a function of each name's bytes, not of the order
