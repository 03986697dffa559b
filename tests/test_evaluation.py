"""`evaluate_run`: metrics checked against scikit-learn/SciPy on independently re-computed
predictions, the validation threshold carried to test, and weights loaded without pickles."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics as skm

from cnnlab import cli
from cnnlab.data.cache import PrepareOptions, prepare
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.reader import open_cache
from cnnlab.data.splits import SplitOptions
from cnnlab.models import build_model, get_model_spec
from cnnlab.runs import files as run_folder
from cnnlab.runs import TrainConfig
from cnnlab.training.evaluation import evaluate_run
from training_helpers import load_trained_model
from cnnlab.training.trainer import train
from conftest import copy_real_photos

WIDTH, HEIGHT = 16, 12
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _prepare(photos: Path, out: Path, seed: int = 0) -> Path:
    options = PrepareOptions(decode=DecodeOptions(WIDTH, HEIGHT),
                             split=SplitOptions("stratified", val=8, test=8, seed=seed), workers=1)
    prepare(photos, out, options, show_progress=False)
    return out


@pytest.fixture(scope="module")
def workspace(shared_photos, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluation")
    photos = copy_real_photos(shared_photos, root / "photos", 12)
    _prepare(photos, root / "cache")
    return root


@pytest.fixture(scope="module")
def trained(workspace) -> Path:
    """A 3-epoch conv1 run trained with paths relative to `workspace` (as a user types them);
    the tests evaluate it from pytest's own working directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workspace)
        config = TrainConfig(model="conv1", cache="cache", out="run", epochs=3, batch_size=4, any_input_size=True,
                             learning_rate=1e-3, pixel_scale="unit")
        train(config, stream=io.StringIO(), show_progress=False)
    return workspace / "run"


def independent_probabilities(run: Path, cache, split: str) -> tuple[np.ndarray, np.ndarray]:
    """P(class 1) recomputed without cnnlab's batching: fresh model, best weights, whole split."""
    config = json.loads((run / "config.json").read_text())
    model = build_model(config["train"]["model"], tuple(config["input_shape"]), 2)
    model.load_weights(run / "best.weights.h5")
    rows = cache.indices(split)
    pixels = np.asarray(cache.images[rows], dtype=np.float32) / 255.0  # the run's 'unit' pixels
    probabilities = model.predict(pixels.transpose(0, 3, 1, 2), verbose=0)[:, 0].astype(np.float64)
    return cache.labels[rows], probabilities


def test_metrics_agree_with_sklearn_on_repredicted_probabilities(trained, workspace):
    result = evaluate_run(trained)  # from another directory than the one it was trained in
    cache = open_cache(workspace / "cache")
    assert result["model"] == "conv1" and result["classes"] == ["cat", "dog"]
    state = json.loads((trained / "state.json").read_text())
    assert result["best_epoch"] == state["best_epoch"] and result["epochs_done"] == 3
    assert json.loads((trained / "evaluation.json").read_text()) == result
    for split in ("val", "test"):
        labels, probabilities = independent_probabilities(trained, cache, split)
        assert len(set(np.round(probabilities, 6))) > 1, "constant predictions make a weak oracle"
        report = result["splits"][split]
        assert report["num_examples"] == len(labels) == 8
        assert report["num_positive"] == int(labels.sum())
        assert report["mean_squared_error"] == pytest.approx(skm.mean_squared_error(labels, probabilities), rel=1e-5)
        assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probabilities), abs=1e-9)
        assert report["log_loss"] == pytest.approx(skm.log_loss(labels, probabilities, labels=[0, 1]), rel=1e-5)
        assert report["pearson_correlation"] == pytest.approx(scipy.stats.pearsonr(labels, probabilities)[0], rel=1e-4)
        assert report["accuracy_at_0.5"] == skm.accuracy_score(labels, probabilities > 0.5)


def test_the_validation_threshold_is_chosen_on_val_and_applied_to_test(trained, workspace):
    result = evaluate_run(trained, write=False)
    cache = open_cache(workspace / "cache")
    threshold = result["validation_threshold"]
    assert threshold is not None and 0.0 <= threshold <= 1.0
    val_labels, val_probabilities = independent_probabilities(trained, cache, "val")
    # Oracle (the one-standard-error rule, by brute force): of the cuts whose validation accuracy
    # is within one binomial standard error of the best, the one nearest to 0.5.
    distinct = np.unique(np.concatenate(([0.0], val_probabilities, [1.0])))
    cuts = np.unique(np.append((distinct[1:] + distinct[:-1]) / 2, 0.5))
    scores = np.array([skm.accuracy_score(val_labels, val_probabilities > cut) for cut in cuts])
    best = scores.max()
    acceptable = cuts[scores >= best - np.sqrt(best * (1 - best) / len(val_labels)) - 1e-12]
    assert threshold == pytest.approx(min(acceptable, key=lambda cut: (abs(cut - 0.5), cut)))
    assert result["splits"]["val"]["accuracy_at_validation_threshold"] == skm.accuracy_score(
        val_labels, val_probabilities > threshold)
    # The same threshold, unchanged, scores test.
    test_labels, test_probabilities = independent_probabilities(trained, cache, "test")
    test = result["splits"]["test"]
    assert test["validation_threshold"] == threshold
    assert test["accuracy_at_validation_threshold"] == skm.accuracy_score(test_labels, test_probabilities > threshold)
    assert test["balanced_accuracy_at_validation_threshold"] == pytest.approx(
        skm.balanced_accuracy_score(test_labels, test_probabilities > threshold))


def test_loading_weights_and_optimizer_never_unpickles(trained, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    load_calls = []
    original_load = np.load

    def checked_load(*args, **kwargs):
        load_calls.append(kwargs.get("allow_pickle", False))
        return original_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", checked_load)

    state = json.loads((trained / "state.json").read_text())
    for weights_file in (trained / "best.weights.h5", trained / "last.weights.h5", trained / state["last_weights"]):
        assert weights_file.name.endswith(".weights.h5")
        assert weights_file.read_bytes()[:8] == HDF5_SIGNATURE  # plain HDF5 arrays, no code
    best, _ = load_trained_model(trained, "best")
    last, _ = load_trained_model(trained, "last")
    assert len(best.get_weights()) == len(last.get_weights()) > 0

    optimizer_file = trained / state["last_optimizer"]
    assert optimizer_file.suffix == ".npz"
    with original_load(optimizer_file, allow_pickle=False) as stored:
        assert all(stored[key].dtype != object for key in stored.files)
        arrays = {key: stored[key] for key in stored.files if key != "names"}
    optimizer = get_model_spec("conv1").recipe.make_optimizer()
    run_folder.load_optimizer(optimizer, last, optimizer_file)
    restored = [np.asarray(variable) for variable in optimizer.variables]
    assert len(restored) == len(arrays)
    for value, key in zip(restored, sorted(arrays)):
        np.testing.assert_array_equal(value, arrays[key])
    assert int(restored[0]) == 3 * 2  # Adam's step count: 3 epochs x 2 batches

    evaluate_run(trained, write=False)
    assert load_calls and not any(load_calls)  # every np.load refused pickles


def test_evaluate_refuses_a_cache_with_another_split(trained, workspace, tmp_path, capsys):
    other = _prepare(workspace / "photos", tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="split hash differs"):
        evaluate_run(trained, str(other), write=False)
    capsys.readouterr()
    assert cli.run(["evaluate", str(trained), "--data", str(other)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error


def test_evaluate_command_prints_the_same_json(trained, capsys):
    assert cli.run(["evaluate", str(trained), "--json", "--split", "test"]) == 0
    printed = json.loads(capsys.readouterr().out)
    # Validation is scored too, for the threshold that test is scored with.
    assert list(printed["splits"]) == ["val", "test"]
    assert printed["validation_threshold"] == evaluate_run(trained, write=False)["validation_threshold"]
    again = evaluate_run(trained, splits=("test",), write=False)["splits"]["test"]
    for report in (printed["splits"]["test"], again):
        report.pop("inference_images_per_second")  # a timing, the only field allowed to differ
    assert printed["splits"]["test"] == again


def test_a_folder_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        load_trained_model(tmp_path)


def test_a_test_only_evaluation_keeps_the_validation_threshold_and_splits(trained):
    full = evaluate_run(trained)
    again = evaluate_run(trained, splits=("test",))
    assert again["validation_threshold"] == pytest.approx(full["validation_threshold"])
    assert again["splits"]["test"]["accuracy_at_validation_threshold"] == pytest.approx(
        full["splits"]["test"]["accuracy_at_validation_threshold"])
    stored = json.loads((trained / "evaluation.json").read_text())
    assert set(stored["splits"]) == {"val", "test"} and stored["validation_threshold"] is not None


def test_evaluation_records_no_graph_for_a_backward_pass():
    """Without torch.no_grad, every layer's output of a 256-photo batch stayed alive for a backward
    pass that never comes: a resnet9 evaluation peaked at 3.3 GB (benchmarks/README.md, issue 18)."""
    from cnnlab.backend import keras
    from cnnlab.training.evaluation import predict_probabilities
    from synthetic import stripes_cache

    if keras.backend.backend() != "torch":
        pytest.skip("only PyTorch records a graph outside a gradient tape")
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as folder:
        cache = open_cache(stripes_cache(Path(folder), per_class=6, size=16, val=4, test=4))
        model = build_model("resnet9-tiny", (3, 16, 16), 2)
        recorded = []
        layer = model.get_layer("stem_conv")
        original = layer.call

        def recording(inputs, *arguments, **keywords):
            outputs = original(inputs, *arguments, **keywords)
            recorded.append((torch.is_grad_enabled(), outputs.requires_grad))
            return outputs

        layer.call = recording
        probabilities, _ = predict_probabilities(model, cache, cache.indices("val"), "unit", tta_flip=True)
    assert probabilities.shape == (len(cache.indices("val")),)
    assert recorded and all(entry == (False, False) for entry in recorded)
