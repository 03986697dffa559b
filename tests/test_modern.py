"""The modern recipe end to end on tiny synthetic data: it learns, through the real trainer
(augmentation on the training batches only, warm-up + cosine schedule per step) and the real
evaluation (flip TTA). Small enough for CI: 64 training images of 32x32, a few seconds."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from cnnlab import models
from cnnlab.training import trainer, training_data
from cnnlab.training.batches import CacheBatches
from cnnlab.backend import keras
from cnnlab.runs import TrainConfig
from cnnlab.training.evaluation import evaluate_run
from cnnlab.recipe.schedule import WarmupDecay
from synthetic import stripes_cache

EPOCHS, BATCH = 5, 8


def test_modern_models_are_registered_small_and_size_agnostic():
    assert models.model_names("modern") == ["resnet9", "resnet9-tiny", "mobilenetv3-transfer",
                                            "efficientnet-lite0-transfer", "efficientnet-lite0-linear",
                                            "efficientnet-lite0-linear-128"]
    for name in ("resnet9", "resnet9-tiny"):  # the transfer model: tests/test_transfer.py
        spec = models.get_model_spec(name)
        model = models.build_model(name)
        assert models.count_parameters(model) * 4 <= 5_000_000  # float32 weights: the 5 MB model file target
        assert not any(isinstance(layer, keras.layers.Flatten) for layer in model.layers)  # no giant dense layer
        assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
        assert isinstance(model.layers[-2], keras.layers.GlobalAveragePooling2D)
        assert spec.recipe.augment is not None and spec.recipe.schedule == "cosine" and spec.recipe.warmup_epochs > 0
        assert spec.recipe.label_smoothing == 0.1 and spec.recipe.pixel_scale == "unit"
        for shape in ((3, 12, 16), (3, 96, 96), (3, 125, 94)):  # any input size (global pooling)
            assert models.build_model(name, shape).output_shape == (None, 1)
    batch_norm = models.build_model("resnet9").get_layer("stem_bn")
    assert batch_norm.axis in (1, [1]) or list(batch_norm.axis) == [1]  # normalises channels_first channels


def test_the_modern_recipe_learns_stripes(tmp_path, monkeypatch):
    cache = stripes_cache(tmp_path / "data", per_class=48, size=32, val=16, test=16)
    built = []

    class RecordingBatches(CacheBatches):
        def __init__(self, *arguments, **keywords):
            super().__init__(*arguments, **keywords)
            built.append((self.shuffle, self.augment))

    monkeypatch.setattr(training_data, "CacheBatches", RecordingBatches)
    run = tmp_path / "run"
    keras.utils.set_random_seed(0)
    state = trainer.train(TrainConfig(model="resnet9-tiny", cache=str(cache), out=str(run), epochs=EPOCHS, any_input_size=True,
                                      batch_size=BATCH), stream=io.StringIO(), show_progress=False)
    recipe = models.get_model_spec("resnet9-tiny").recipe
    assert built == [(True, recipe.augment), (False, None)]  # augmentation for training only

    # The learning rate logged after each epoch is the schedule at the steps done so far.
    steps_per_epoch = 64 // BATCH
    schedule = WarmupDecay(recipe.learning_rate, round(recipe.warmup_epochs * steps_per_epoch),
                           EPOCHS * steps_per_epoch, decay="cosine")
    logged = [entry["learning_rate"] for entry in state["history"]]
    expected = [float(keras.ops.convert_to_numpy(schedule((epoch + 1) * steps_per_epoch))) for epoch in range(EPOCHS)]
    np.testing.assert_allclose(logged, expected, rtol=1e-5, atol=1e-9)
    assert logged[-1] == pytest.approx(0.0, abs=1e-9)  # annealed to the floor by the last step

    result = evaluate_run(run)
    assert result["test_time_flip"] is True
    assert json.loads((run / "config.json").read_text())["recipe"]["augment"]["flip"] == "alternating"
    # Chance is 0.5; the tiny network should get nearly every one of the 32 unseen images.
    for split in ("val", "test"):
        assert result["splits"][split]["accuracy_at_0.5"] >= 0.8, result["splits"][split]
