"""The modern recipe's training options: the warm-up + decay schedule, the optimizer a recipe
builds (the tutorial's unchanged), weight averaging (EMA) in the trainer, and flip test-time
augmentation in evaluation. Runs on a synthetic cache: no shared photos needed."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest

from cnnlab import models
from cnnlab.data.reader import open_cache
from cnnlab.models.modern import build_resnet9
from cnnlab.training.batches import CacheBatches
from cnnlab.backend import keras
from cnnlab.runs import TrainConfig
from cnnlab.training.evaluation import predict_probabilities
from training_helpers import load_trained_model
from cnnlab.recipe.schedule import WarmupDecay
from cnnlab.recipe.torch_adam import adam
from cnnlab.training.trainer import EpochCommit, train
from synthetic import stripes_cache

SIZE = 16


def values(schedule, steps) -> np.ndarray:
    return np.array([float(keras.ops.convert_to_numpy(schedule(step))) for step in steps])


# ---- the schedule ------------------------------------------------------------------------------

def test_warmup_rises_linearly_to_the_peak_then_cosine_reaches_the_floor():
    schedule = WarmupDecay(0.1, warmup_steps=10, total_steps=110, decay="cosine", floor=0.001)
    warmup = values(schedule, range(11))
    np.testing.assert_allclose(warmup, 0.1 * np.arange(1, 12) / 11, rtol=1e-6)  # step 10 is the peak
    assert warmup[0] < 0.01  # about 0, but the first update is not wasted at exactly 0
    np.testing.assert_allclose(np.diff(warmup), 0.1 / 11, rtol=1e-5)  # a straight line
    decay = values(schedule, range(10, 151))
    # Half a cosine from the peak (step 10) to the floor (step 110), then the floor.
    expected = 0.001 + (0.1 - 0.001) * 0.5 * (1 + np.cos(np.pi * np.clip((np.arange(10, 151) - 10) / 100, 0, 1)))
    np.testing.assert_allclose(decay, expected, rtol=1e-5, atol=1e-8)
    assert decay[0] == pytest.approx(0.1) and decay[100] == pytest.approx(0.001) and decay[-1] == pytest.approx(0.001)
    assert np.all(np.diff(decay) <= 1e-9)  # never rises after the warm-up
    assert values(schedule, [60])[0] == pytest.approx((0.1 + 0.001) / 2, rel=1e-5)  # halfway: the midpoint


def test_linear_and_constant_decays_and_edge_cases():
    linear = WarmupDecay(1.0, warmup_steps=0, total_steps=4, decay="linear")
    np.testing.assert_allclose(values(linear, range(6)), [1.0, 0.75, 0.5, 0.25, 0.0, 0.0], atol=1e-7)
    constant = WarmupDecay(1.0, warmup_steps=3, total_steps=10, decay="constant")
    np.testing.assert_allclose(values(constant, [0, 1, 2, 3, 9, 20]), [0.25, 0.5, 0.75, 1.0, 1.0, 1.0], rtol=1e-6)
    # A warm-up as long as the whole run: no division by zero, the peak at its end.
    whole = WarmupDecay(1.0, warmup_steps=4, total_steps=4)
    assert np.all(np.isfinite(values(whole, range(6)))) and values(whole, [4])[0] == pytest.approx(1.0)
    for arguments, message in [((0.0, 1, 10), "peak"), ((1.0, -1, 10), "warmup"), ((1.0, 1, 0), "total"),
                               ((1.0, 1, 10, "step"), "decay"), ((1.0, 1, 10, "cosine", 2.0), "floor")]:
        with pytest.raises(ValueError, match=message):
            WarmupDecay(*arguments)


def test_schedule_serialises_and_drives_an_optimizer():
    schedule = WarmupDecay(0.01, warmup_steps=2, total_steps=8, decay="linear", floor=0.001)
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(rebuilt, WarmupDecay) and rebuilt.get_config() == schedule.get_config()
    np.testing.assert_allclose(values(rebuilt, range(10)), values(schedule, range(10)))
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    assert keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)).get_config() == optimizer.get_config()


# ---- the optimizer a recipe builds ---------------------------------------------------------

def _without_name(optimizer) -> dict:
    config = optimizer.get_config()
    config.pop("name")
    return config


@pytest.mark.parametrize("name", ["mlp", "conv1", "conv2", "conv2-wide", "conv2-fc512"])
def test_tutorial_recipes_build_the_same_optimizer_as_before(name):
    recipe = models.get_model_spec(name).recipe
    before = keras.optimizers.Adam(learning_rate=recipe.learning_rate, weight_decay=None)  # the pre-issue-4 code
    for steps in (None, 64):
        optimizer = recipe.make_optimizer(steps)
        # Keras' Adam itself, or on PyTorch its subclass with the leaner update (cnnlab.recipe.torch_adam).
        assert isinstance(optimizer, type(before))
        assert type(optimizer) is type(adam(learning_rate=recipe.learning_rate))
        assert _without_name(optimizer) == _without_name(before)
    assert recipe.make_learning_rate(64) == recipe.learning_rate and not isinstance(recipe.make_learning_rate(64), WarmupDecay)
    assert recipe.augment is None and recipe.ema == 0.0 and recipe.tta_flip is False


def test_a_scheduled_recipe_places_its_schedule_in_steps():
    recipe = models.Recipe(loss="bce", optimizer="sgd", learning_rate=0.2, batch_size=8, epochs=5,
                           warmup_epochs=1.5, schedule="cosine", ema=0.9)
    optimizer = recipe.make_optimizer(steps_per_epoch=10)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, WarmupDecay)
    assert (schedule.peak_learning_rate, schedule.warmup_steps, schedule.total_steps, schedule.decay) == (0.2, 15, 50, "cosine")
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9
    assert recipe.make_optimizer().get_config()["learning_rate"] == pytest.approx(0.2)  # no steps: plain rate
    with pytest.raises(ValueError, match="schedule"):
        dataclasses.replace(recipe, schedule="step")
    with pytest.raises(ValueError, match="ema"):
        dataclasses.replace(recipe, ema=1.0)
    with pytest.raises(ValueError, match="warmup"):
        dataclasses.replace(recipe, warmup_epochs=-1)
    with pytest.raises(ValueError, match="augmentation"):
        dataclasses.replace(recipe, augment={"mirror": True})


# ---- EMA in the trainer ----------------------------------------------------------------------

EMA_RECIPE = models.Recipe(loss="bce", optimizer="adam", learning_rate=1e-2, batch_size=4, epochs=2,
                           pixel_scale="unit", input_width=SIZE, input_height=SIZE, ema=0.8)


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return stripes_cache(tmp_path_factory.mktemp("stripes"), per_class=14, size=SIZE, val=8, test=8)


def register_tiny_model(name: str, recipe: models.Recipe) -> str:
    """A tiny batch-norm network under `name`, trained with `recipe`."""
    def build(input_shape, num_classes):
        return build_resnet9(name, input_shape, num_classes, stem_width=4, widths=(8, 8))

    return models.register(models.ModelSpec(name=name, description="test", build=build, recipe=recipe,
                                            family="modern")).name


@pytest.fixture
def ema_model():
    """The tiny network registered with EMA_RECIPE for the duration of a test."""
    yield register_tiny_model("test-ema", EMA_RECIPE)
    models.unregister("test-ema")


@pytest.fixture
def recorded_steps(monkeypatch):
    """The model's raw weights after every training step: (epoch, trainable, non-trainable)."""
    steps: list[tuple[int, list[np.ndarray], list[np.ndarray]]] = []

    def on_train_batch_end(self, batch, logs=None):
        steps.append((self.train_batches.epoch, [np.array(w) for w in self.model.trainable_weights],
                      [np.array(w) for w in self.model.non_trainable_weights]))

    monkeypatch.setattr(EpochCommit, "on_train_batch_end", on_train_batch_end, raising=False)
    return steps


def test_ema_runs_validate_and_keep_the_averaged_weights(stripes, ema_model, recorded_steps, tmp_path):
    run = tmp_path / "run"
    state = train(TrainConfig(model=ema_model, cache=str(stripes), out=str(run), any_input_size=True), stream=io.StringIO(), show_progress=False)
    assert state["epochs_done"] == 2 and len(recorded_steps) == 2 * 3  # 12 training photos in batches of 4

    # Keras' EMA, recomputed from the raw weights after each step: the first step copies them,
    # then average = 0.8 average + 0.2 weights.
    averages, by_epoch = None, {}
    for epoch, trainable, non_trainable in recorded_steps:
        averages = trainable if averages is None else [0.8 * a + 0.2 * w for a, w in zip(averages, trainable)]
        by_epoch[epoch] = (averages, trainable, non_trainable)
    for which, epoch in (("best", state["best_epoch"] - 1), ("last", 1)):
        model, _ = load_trained_model(run, which)
        expected, raw, raw_statistics = by_epoch[epoch]
        saved = [np.array(w) for w in model.trainable_weights]
        for mine, theirs in zip(saved, expected):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
        assert max(np.abs(s - r).max() for s, r in zip(saved, raw)) > 1e-3  # not the raw weights
        for mine, theirs in zip(model.non_trainable_weights, raw_statistics):  # batch-norm statistics: live
            np.testing.assert_array_equal(np.array(mine), theirs)

    # The validation loss that chose the best epoch is the loss of the weights that were saved.
    cache = open_cache(stripes)
    model, _ = load_trained_model(run, "best")
    inputs, targets = CacheBatches(cache.images, cache.labels, cache.indices("val"), 2, 128, "unit", shuffle=False)[0]
    loss = float(keras.ops.convert_to_numpy(EMA_RECIPE.make_loss(2)(targets, model(inputs, training=False))))
    assert loss == pytest.approx(state["best_val_loss"], rel=1e-5)


def test_an_ema_run_resumes_exactly(stripes, ema_model, tmp_path, monkeypatch):
    """Cut after epoch 1's commit, when the checkpoint holds the averaged weights in the model
    and the raw ones in the optimizer: the resumed run must continue from the raw ones."""
    models.unregister(ema_model)
    register_tiny_model(ema_model, dataclasses.replace(EMA_RECIPE, epochs=3))
    reference = train(TrainConfig(model=ema_model, cache=str(stripes), out=str(tmp_path / "whole"), any_input_size=True),
                      stream=io.StringIO(), show_progress=False)

    class Cut(Exception):
        pass

    original = EpochCommit.on_epoch_end

    def cut_after_the_first_commit(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise Cut

    monkeypatch.setattr(EpochCommit, "on_epoch_end", cut_after_the_first_commit)
    cut_run = tmp_path / "cut"
    with pytest.raises(Cut):
        train(TrainConfig(model=ema_model, cache=str(stripes), out=str(cut_run), any_input_size=True), stream=io.StringIO(), show_progress=False)
    monkeypatch.setattr(EpochCommit, "on_epoch_end", original)
    resumed = train(TrainConfig(model=ema_model, cache=str(stripes), out=str(cut_run), any_input_size=True), resume=True,
                    stream=io.StringIO(), show_progress=False)

    assert resumed["epochs_done"] == 3
    for key in ("train_loss", "val_loss", "learning_rate"):
        np.testing.assert_allclose([e[key] for e in resumed["history"]], [e[key] for e in reference["history"]],
                                   rtol=1e-6, atol=1e-7)
    for which in ("best", "last"):
        mine, _ = load_trained_model(cut_run, which)
        theirs, _ = load_trained_model(tmp_path / "whole", which)
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---- flip test-time augmentation -------------------------------------------------------------

def test_flip_tta_is_the_mean_of_the_image_and_its_mirror(stripes):
    cache = open_cache(stripes)
    keras.utils.set_random_seed(0)
    model = build_resnet9("tta", (3, SIZE, SIZE), 2, stem_width=4, widths=(8,))
    rows = cache.indices("test")
    plain, _ = predict_probabilities(model, cache, rows, "unit", batch_size=5)
    both, speed = predict_probabilities(model, cache, rows, "unit", batch_size=5, tta_flip=True)
    inputs, _ = CacheBatches(cache.images, cache.labels, rows, 2, len(rows), "unit", shuffle=False)[0]
    mirrored = np.array(keras.ops.convert_to_numpy(model(inputs[:, :, :, ::-1].copy(), training=False)))[:, 0]
    np.testing.assert_allclose(plain, np.array(keras.ops.convert_to_numpy(model(inputs, training=False)))[:, 0], rtol=1e-5)
    np.testing.assert_allclose(both, (plain + mirrored) / 2, rtol=1e-5, atol=1e-7)
    assert np.abs(both - plain).max() > 1e-6  # the mirror image really changed the predictions
    assert both.shape == (len(rows),) and math.isfinite(speed)


def test_config_json_records_the_new_recipe_fields(stripes, ema_model, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(model=ema_model, cache=str(stripes), out=str(run), any_input_size=True, epochs=1), stream=io.StringIO(), show_progress=False)
    recipe = json.loads((run / "config.json").read_text())["recipe"]
    assert recipe["ema"] == 0.8 and recipe["schedule"] == "constant" and recipe["augment"] is None
    assert models.Recipe(**recipe) == dataclasses.replace(EMA_RECIPE, epochs=1)  # reads back as the same recipe
