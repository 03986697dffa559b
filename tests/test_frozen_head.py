"""head_fit 'logistic' (efficientnet-lite0-linear): the frozen backbone's features computed once
and scikit-learn's logistic regression as the output layer, checked against an independent
LogisticRegression; the pretrained row of `reproduce`; inference batches bounded by their
layer outputs. The run comes from conftest's linear_run (skips without the [pretrained] extra)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.models import build_model
from cnnlab.models import efficientnet_lite as lite


def test_the_linear_run_is_scikit_learns_logistic_regression(linear_run):
    """An independent LogisticRegression, fitted by this test on the run's own frozen features
    with the C the run chose, has the output layer's coefficients and the run's probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from cnnlab.data.reader import open_cache
    from cnnlab.recipe.pixels import to_model_input
    from cnnlab.runs import Run

    run = Run.open(linear_run)
    state = json.loads((linear_run / "state.json").read_text())
    strength = state["head_fit"]["regularisation_C"]
    assert strength in (0.1, 1.0, 10.0)
    model = run.build_model()
    extractor = keras.Model(model.input, model.get_layer("output").input)
    cache = open_cache(run.data["cache"])
    dog = cache.classes.index("dog")

    def features(split):
        rows = np.sort(cache.indices(split))
        pixels = to_model_input(cache.images[rows], "unit")
        return (np.asarray(keras.ops.convert_to_numpy(extractor(pixels, training=False)), np.float64),
                (cache.labels[rows] == dog).astype(int), pixels)

    train_features, train_labels, _ = features("train")
    val_features, val_labels, val_pixels = features("val")
    oracle = LogisticRegression(C=strength, max_iter=3000, random_state=0).fit(train_features, train_labels)
    kernel, bias = model.get_layer("output").get_weights()
    np.testing.assert_allclose(kernel[:, 0], oracle.coef_[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bias, oracle.intercept_, rtol=1e-4, atol=1e-5)
    probabilities = np.asarray(keras.ops.convert_to_numpy(model(val_pixels, training=False)))[:, 0]
    np.testing.assert_allclose(probabilities, oracle.predict_proba(val_features)[:, 1], atol=1e-5)
    # One committed epoch whose validation loss is the regression's cross-entropy on validation.
    history = [json.loads(line) for line in (linear_run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1 and state["epochs_done"] == 1 and state["finished"]
    assert history[0]["val_loss"] == pytest.approx(log_loss(val_labels, oracle.predict_proba(val_features)), rel=1e-4)
    assert history[0]["val_accuracy"] == pytest.approx(float(np.mean(oracle.predict(val_features) == val_labels)))


def test_a_finished_logistic_run_resumes_without_fitting_again(linear_run):
    from cnnlab.runs import TrainConfig
    from training_helpers import quiet_train

    before = (linear_run / "best.weights.h5").read_bytes()
    stored = json.loads((linear_run / "config.json").read_text())["train"]
    state, _ = quiet_train(TrainConfig.from_dict(stored), resume=True)
    assert state["epochs_done"] == 1
    assert (linear_run / "best.weights.h5").read_bytes() == before


def test_logistic_head_refuses_a_backbone_that_trains():
    from cnnlab.training.frozen_head import feature_extractor

    model = build_model("efficientnet-lite0-transfer", (3, 64, 64))
    with pytest.raises(UserError, match="trains .* weights outside it; use head_fit 'gradient'"):
        feature_extractor(model)


def test_head_fit_is_checked():
    from cnnlab.models import get_model_spec

    recipe = get_model_spec("efficientnet-lite0-linear").recipe
    assert recipe.head_fit == "logistic" and recipe.epochs == 1
    with pytest.raises(UserError, match="unknown head_fit 'newton'"):
        dataclasses.replace(recipe, head_fit="newton")


def test_reproduce_adds_the_pretrained_row_only_where_the_extra_is_installed(monkeypatch):
    from cnnlab.experiments.reproduce import ReproduceConfig

    monkeypatch.setattr(lite, "offline_weights_installed", lambda: True)
    assert ReproduceConfig("photos", "out").modern == ("resnet9", "efficientnet-lite0-linear")
    monkeypatch.setattr(lite, "offline_weights_installed", lambda: False)
    assert ReproduceConfig("photos", "out").modern == ("resnet9",)


def test_inference_batches_keep_layer_outputs_within_their_budget():
    """Keras keeps every layer output of a functional call alive: evaluate's fixed batch of 256
    photos held 22 GB through EfficientNet-Lite0 at 224 and was killed for memory."""
    from cnnlab.models.activations import INFERENCE_BYTES, activation_bytes_per_image, inference_batch_size

    lite0 = build_model("efficientnet-lite0-linear")
    photos = inference_batch_size(lite0)
    assert 1 <= photos <= 16 and photos * activation_bytes_per_image(lite0) <= INFERENCE_BYTES
    assert inference_batch_size(build_model("conv2")) >= 128  # the tutorial's models keep large batches
