"""Transfer learning: the MobileNetV3Small model, and initial weights from a file or ImageNet.

No test downloads anything: the weights files are saved by the tests themselves, and the
ImageNet path is exercised with Keras' download function made to fail as it does offline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.models import build_model, count_parameters
from cnnlab.backend import keras
from cnnlab.models.transfer import BACKBONE_LAYER, apply_initial_weights, file_digest
from conftest import copy_real_photos
from training_helpers import quiet_train

SIZE = 32  # keras.applications' smallest input
MODEL = "mobilenetv3-transfer"


def shape():
    return (3, SIZE, SIZE) if keras.config.image_data_format() == "channels_first" else (SIZE, SIZE, 3)


def randomised(model: keras.Model, seed: int) -> keras.Model:
    """Give every weight distinctive values, so that a copy is recognisable."""
    generator = np.random.default_rng(seed)
    model.set_weights([generator.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def assert_same(first: list, second: list) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_transfer_model_is_mobilenetv3small_with_a_one_unit_head():
    model = build_model(MODEL, shape(), 2)
    reference = keras.applications.MobileNetV3Small(input_shape=shape(), include_top=False, weights=None, pooling="avg")
    features = reference.output_shape[-1]
    assert features == 576
    assert count_parameters(model) == count_parameters(reference) + features + 1
    assert model.output_shape == (None, 1)
    assert build_model(MODEL, shape(), 5).output_shape == (None, 5)


def test_backbone_weights_file_is_loaded_into_the_backbone(tmp_path):
    source = randomised(build_model(MODEL, shape(), 2), seed=1)
    path = tmp_path / "backbone.weights.h5"
    source.get_layer(BACKBONE_LAYER).save_weights(path)
    target = build_model(MODEL, shape(), 2)
    record = apply_initial_weights(target, str(path))
    assert record["loaded_into"] == BACKBONE_LAYER and record["sha256"] == file_digest(path)
    assert_same(target.get_layer(BACKBONE_LAYER).get_weights(), source.get_layer(BACKBONE_LAYER).get_weights())
    # The head is not part of the file: it keeps its own fresh initialisation.
    assert not np.array_equal(target.get_layer("output").get_weights()[0], source.get_layer("output").get_weights()[0])


def test_whole_model_weights_file_warm_starts_every_layer(tmp_path):
    source = randomised(build_model("resnet9-tiny", None, 2), seed=2)
    path = tmp_path / "run.weights.h5"
    source.save_weights(path)
    target = build_model("resnet9-tiny", None, 2)
    assert apply_initial_weights(target, str(path))["loaded_into"] == "model"
    assert_same(target.get_weights(), source.get_weights())


def test_weights_of_another_architecture_are_refused_in_one_line(tmp_path):
    path = tmp_path / "other.weights.h5"
    build_model("resnet9-tiny", None, 2).save_weights(path)
    with pytest.raises(ValueError, match="fit neither the whole model nor its backbone") as caught:
        apply_initial_weights(build_model(MODEL, shape(), 2), str(path))
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="no such file"):
        apply_initial_weights(build_model(MODEL, shape(), 2), str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="has no pretrained backbone"):
        apply_initial_weights(build_model("resnet9-tiny", None, 2), "imagenet")


def test_imagenet_offline_names_the_local_file_alternative(monkeypatch):
    from keras.src.applications import mobilenet_v3

    def offline(*arguments, **keywords):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] no network")

    monkeypatch.setattr(mobilenet_v3.file_utils, "get_file", offline)
    with pytest.raises(ValueError, match=r"could not get the ImageNet weights .*pass --init-weights PATH"):
        apply_initial_weights(build_model(MODEL, shape(), 2), "imagenet")


def test_training_starts_from_the_given_file_and_records_it(shared_photos, tmp_path):
    from cnnlab.data.cache import PrepareOptions, prepare
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.data.splits import SplitOptions
    from cnnlab.runs import TrainConfig
    from training_helpers import load_trained_model

    photos = copy_real_photos(shared_photos, tmp_path / "photos", 8)
    prepare(photos, tmp_path / "cache", PrepareOptions(DecodeOptions(SIZE, SIZE, "crop"),
                                                        SplitOptions("stratified", val=4, test=4), workers=1),
            show_progress=False)
    source = randomised(build_model(MODEL, shape(), 2), seed=3)
    path = tmp_path / "backbone.weights.h5"
    source.get_layer(BACKBONE_LAYER).save_weights(path)
    # A learning rate so small that one epoch leaves the trainable weights where they started.
    config = TrainConfig(MODEL, str(tmp_path / "cache"), str(tmp_path / "run"), epochs=1, batch_size=4, any_input_size=True,
                         learning_rate=1e-12, precision="float32", init_weights=str(path))
    quiet_train(config)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["initial_weights"]
    assert recorded == {"init_weights": str(path.resolve()), "sha256": file_digest(path), "loaded_into": BACKBONE_LAYER}
    trained, _ = load_trained_model(tmp_path / "run")
    for after, before in zip(trained.get_layer(BACKBONE_LAYER).trainable_weights,
                             source.get_layer(BACKBONE_LAYER).trainable_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(after), keras.ops.convert_to_numpy(before), atol=1e-6)
