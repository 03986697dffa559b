"""`cnnlab explain`: kernels, feature maps and Grad-CAM of a tiny conv1 trained on real photos;
the gradient against finite differences; the MLP and bad photos handled without a crash."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import run
from cnnlab.explain import saliency
from cnnlab.explain.introspect import ExplainConfig, Explainer, explain_run
from cnnlab.explain.model_figures import kernel_pictures
from cnnlab.backend import keras
from cnnlab.recipe.pixels import to_model_input
from training_helpers import load_trained_model
from training_helpers import HEIGHT, WIDTH, make_config, quiet_train

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def conv_run(tiny_cache, tmp_path_factory) -> Path:
    run_folder = tmp_path_factory.mktemp("explain-runs") / "conv1"
    quiet_train(make_config(tiny_cache, run_folder, epochs=1))
    return run_folder


@pytest.fixture(scope="module")
def photos(tiny_cache) -> list[Path]:
    """A cat and a dog from the folder the tiny cache was prepared from."""
    folder = tiny_cache.parent / "photos"
    return [sorted(folder.glob("cat.*.jpg"))[0], sorted(folder.glob("dog.*.jpg"))[0]]


@pytest.fixture(scope="module")
def explained(conv_run, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("explained")
    result = explain_run(ExplainConfig(str(conv_run), tuple(str(photo) for photo in photos), str(out)))
    return out, result, json.loads((out / "explain.json").read_text())


def test_writes_every_figure_and_the_summary(explained, conv_run, photos):
    out, result, summary = explained
    expected = ["kernels.png"] + [f"{photo.stem}-{kind}.png" for photo in photos for kind in ("features", "gradcam")]
    assert [path.name for path in result.written] == expected + ["explain.json"]
    for name in expected:
        assert (out / name).stat().st_size > 0
        with Image.open(out / name) as image:
            assert image.width > 100 and image.height > 100
    assert result.notes == [] and result.skipped == []
    assert summary["feature_layers"] == ["conv1"] and summary["grad_cam_layer"] == "conv1"
    assert summary["input"] == {"width": WIDTH, "height": HEIGHT, "fit": "stretch", "draft": True, "pixel_scale": "unit"}
    assert [record["files"] for record in summary["photos"]] == [expected[1:3], expected[3:5]]


def test_kernel_grid_has_one_cell_per_first_layer_filter(explained, conv_run):
    _, _, summary = explained
    model, _ = load_trained_model(conv_run)
    filters = model.get_layer("conv1").kernel.shape[-1]
    assert filters == 24  # the tutorial's conv1
    kernels = summary["kernels"]
    assert kernels["layer"] == "conv1" and kernels["count"] == filters and kernels["kernel_shape"] == [3, 3, 3]
    rows, columns = kernels["grid"]
    assert (rows - 1) * columns < filters <= rows * columns  # no empty row


def test_kernel_pictures_read_keras_layout():
    # Keras stores Conv2D kernels as (kh, kw, in, out) in both image data formats.
    layer = keras.layers.Conv2D(5, (3, 2))
    layer.build((None, 4, 9, 9) if keras.config.image_data_format() == "channels_first" else (None, 9, 9, 4))
    assert tuple(layer.kernel.shape) == (3, 2, 4, 5)
    weights = np.random.default_rng(0).normal(size=(3, 2, 3, 5))
    pictures = kernel_pictures(weights)
    assert pictures.shape == (5, 3, 2, 3)
    kernel = weights[..., 4]
    np.testing.assert_allclose(pictures[4], (kernel - kernel.min()) / (kernel.max() - kernel.min()))
    assert kernel_pictures(np.zeros((3, 3, 1, 2))).shape == (2, 3, 3)  # flat, grey: mid-grey, no division by 0
    assert np.all(kernel_pictures(np.zeros((3, 3, 1, 2))) == 0.5)


def test_probability_is_the_models_own_prediction(explained, conv_run, photos, cache):
    _, _, summary = explained
    model, config = load_trained_model(conv_run)
    rows = {Path(path).resolve(): row for row, path in enumerate(cache.paths(range(len(cache.labels))))}
    for photo, record in zip(photos, summary["photos"]):
        pixels = cache.images[rows[photo.resolve()]]  # exactly what training fed the model
        output = keras.ops.convert_to_numpy(model(to_model_input(pixels[None], config["recipe"]["pixel_scale"])))
        probability_of_class_1 = float(output[0, 0])
        assert np.isclose(record["probabilities"][cache.classes[1]], probability_of_class_1, rtol=1e-5, atol=1e-7)
        assert np.isclose(record["probabilities"][cache.classes[0]], 1 - probability_of_class_1, rtol=1e-5, atol=1e-7)
        predicted = int(probability_of_class_1 >= 0.5)
        assert record["predicted_index"] == predicted and record["predicted_class"] == cache.classes[predicted]
        assert np.isclose(record["probability"], max(probability_of_class_1, 1 - probability_of_class_1))


def test_heatmap_and_feature_maps_have_the_photos_shape(conv_run, photos, cache):
    model, _ = load_trained_model(conv_run)
    pixels = np.asarray(cache.images[0])
    explanation = Explainer(model).explain(pixels, "unit")
    assert explanation.heatmap.shape == (HEIGHT, WIDTH)
    assert explanation.heatmap.min() >= 0.0 and explanation.heatmap.max() <= 1.0
    assert explanation.cam_peak >= 0.0 and explanation.score >= 0.0  # the predicted class's logit is >= 0
    assert explanation.feature_maps["conv1"].shape == (24, HEIGHT - 2, WIDTH - 2)  # 3x3 'valid'
    pooled = Explainer(model, layer="pool1").explain(pixels, "unit")  # any layer with feature maps
    assert pooled.heatmap.shape == (HEIGHT, WIDTH)
    np.testing.assert_allclose(pooled.probabilities, explanation.probabilities)
    with pytest.raises(ValueError, match="layers with feature maps: conv1, pool1"):
        Explainer(model, layer="dense1")
    with pytest.raises(ValueError, match="no layer of that name"):
        Explainer(model, layer="conv9")


def test_grad_cam_arithmetic():
    features = np.array([[[1.0, 2.0], [0.0, 4.0]], [[3.0, 0.0], [1.0, 1.0]]])
    gradients = np.array([[[1.0, 1.0], [1.0, 1.0]], [[-2.0, 0.0], [0.0, 0.0]]])  # channel means 1 and -0.5
    expected = np.maximum(1.0 * features[0] - 0.5 * features[1], 0.0)
    np.testing.assert_allclose(saliency.grad_cam(features, gradients), expected)
    upsampled = saliency.heatmap(expected, 6, 4)
    assert upsampled.shape == (6, 4) and upsampled.min() >= 0 and upsampled.max() <= 1
    assert np.all(saliency.heatmap(np.zeros((2, 2)), 3, 3) == 0)  # nothing positive: no evidence, not nan


def test_score_is_the_predicted_classs_logit():
    sigmoid = keras.ops.convert_to_numpy(saliency.predicted_class_score(keras.ops.convert_to_tensor([[2.0], [-3.0]])))
    np.testing.assert_allclose(sigmoid, [2.0, 3.0])  # class 1's logit, and class 0's (-z)
    softmax = keras.ops.convert_to_numpy(saliency.predicted_class_score(keras.ops.convert_to_tensor([[1.0, 3.0, 2.0]])))
    np.testing.assert_allclose(softmax, [3.0])


def check_gradient_against_finite_differences() -> None:
    """d(score)/d(features) of a 1-channel conv feature map, by the backend's autodiff and by
    central differences through the same layers, in float64. Also run on TensorFlow, below.

    The layers after the features are convolutions only: Keras' PyTorch backend computes a
    float64 Dense layer's matmul in float32, too coarse for the differences.
    """
    keras.utils.set_random_seed(0)
    layers = keras.layers
    channels_first = keras.config.image_data_format() == "channels_first"
    shape = (1, 7, 6) if channels_first else (7, 6, 1)
    downstream = [layers.Conv2D(2, 2, activation="tanh", dtype="float64"),
                  layers.Conv2D(1, (4, 3), dtype="float64"),  # the 4x3 maps -> one logit
                  layers.Flatten(dtype="float64")]

    def tail(tensor):
        for layer in downstream:
            tensor = layer(tensor)
        return tensor

    inputs = keras.Input(shape, dtype="float64")
    features = layers.Conv2D(1, 3, activation="tanh", dtype="float64", name="features")(inputs)  # 5x4
    probe = keras.Model(inputs, [features, tail(features)])
    feature_input = keras.Input(tuple(features.shape[1:]), dtype="float64")
    tail_model = keras.Model(feature_input, tail(feature_input))  # the same layers, fed the features directly
    image = np.random.default_rng(1).normal(size=(1, *shape))

    def score(outputs):
        return saliency.predicted_class_score(outputs[1])

    def tail_score(features_array):
        logit = keras.ops.convert_to_numpy(tail_model(keras.ops.convert_to_tensor(features_array, dtype="float64")))
        return abs(float(logit[0, 0]))

    for bias in (5.0, -5.0):  # class 1 predicted (score z), then class 0 (score -z)
        downstream[1].bias.assign(np.array([bias]))
        outputs, gradient = saliency.score_gradient(probe, image, score, wrt=0)
        assert outputs[0].dtype == gradient.dtype == np.float64
        assert np.sign(outputs[1][0, 0]) == np.sign(bias)
        assert np.isclose(tail_score(outputs[0]), abs(outputs[1][0, 0]))
        numeric, step = np.zeros_like(outputs[0]), 1e-6
        for index in np.ndindex(numeric.shape):
            up, down = outputs[0].copy(), outputs[0].copy()
            up[index] += step
            down[index] -= step
            numeric[index] = (tail_score(up) - tail_score(down)) / (2 * step)
        assert np.abs(gradient).max() > 1e-2
        np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-9)


def test_gradient_matches_finite_differences():
    check_gradient_against_finite_differences()


def test_gradient_matches_finite_differences_on_tensorflow():
    python = os.environ.get("CNNLAB_TENSORFLOW_PYTHON") or (sys.executable if importlib.util.find_spec("tensorflow") else None)
    if python is None:
        pytest.skip("TensorFlow is not installed; run `make test-tensorflow` (installs the [tensorflow] extra)")
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([python, "-c", "import test_explain; test_explain.check_gradient_against_finite_differences(); "
                             "from cnnlab.models.registry import keras; print(keras.backend.backend())"],
                            capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "tensorflow"


def test_backends_without_gradient_code_get_a_clear_error(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="torch and tensorflow backends, not 'jax'"):
        saliency.check_gradient_backend()


def test_the_mlp_gets_predictions_and_a_clear_message(tiny_cache, photos, tmp_path, capsys):
    mlp = tmp_path / "mlp"
    quiet_train(make_config(tiny_cache, mlp, model="mlp", epochs=1))
    out = tmp_path / "out"
    assert run(["explain", str(mlp), str(photos[0]), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.split() == [str(out / "explain.json")]
    assert "no convolutional layers" in printed.err and "Grad-CAM" in printed.err
    assert sorted(path.name for path in out.iterdir()) == ["explain.json"]
    summary = json.loads((out / "explain.json").read_text())
    assert summary["kernels"] is None and summary["grad_cam_layer"] is None
    assert 0.0 <= summary["photos"][0]["probability"] <= 1.0 and summary["photos"][0]["files"] == []


def test_a_bad_photo_is_a_one_line_error(conv_run, photos, tmp_path, capsys):
    bad = tmp_path / "cat.999.jpg"
    bad.write_text("this is a text file, not a photo\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "cnnlab", "explain", str(conv_run), str(bad), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cat.999.jpg" in lines[0] and "not an image" in lines[0]
    assert not out.exists()  # nothing written when no photo is usable

    # With a usable photo beside it, the good one is explained and the bad one named and skipped.
    assert run(["explain", str(conv_run), str(photos[0]), str(bad), "--out", str(out), "--channels", "4"]) == 1
    printed = capsys.readouterr()
    assert len(printed.err.strip().splitlines()) == 1 and "cat.999.jpg" in printed.err
    assert (out / f"{photos[0].stem}-gradcam.png").stat().st_size > 0
    summary = json.loads((out / "explain.json").read_text())
    assert [item["path"] for item in summary["skipped"]] == [str(bad)] and len(summary["photos"]) == 1
    assert summary["feature_channels_shown"] == 4


def test_a_photo_whose_name_is_not_utf8_is_explained(conv_run, photos, tmp_path):
    """Matplotlib titles and explain.json used to crash on a name Python holds as surrogates."""
    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.fsdecode(bytes(folder) + b"/cat.\xff\xfe.jpg")
    shutil.copy(photos[0], odd)
    out = tmp_path / "out"
    result = explain_run(ExplainConfig(str(conv_run), (odd,), str(out)))
    summary = json.loads((out / "explain.json").read_text())
    assert summary["photos"][0]["image"].endswith("cat.\\xff\\xfe.jpg")
    assert result.skipped == [] and any(path.name.endswith("-gradcam.png") for path in result.written)
