"""`cnnlab export --format keras` of the modern models (resnet9, resnet9-tiny), whose training
graph uses cnnlab's speed layers (ChannelsLastMemory, FastBatchNormalization): the .keras file
must load in plain Keras, in a process where cnnlab cannot even be imported (the README promises
exported files need neither cnnlab nor its code), and predict what the run's model predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cnnlab.cli import run
from cnnlab.inference import export_formats
from cnnlab.models.layers import ChannelsLastMemory, FastBatchNormalization
from training_helpers import make_config, quiet_train

# Run in a fresh interpreter (-I: no PYTHONPATH, no user site) with every sys.path entry that
# holds a `cnnlab` package removed (an editable install adds one through a .pth file).
PLAIN_KERAS_SCRIPT = r"""
import importlib.util, json, os, sys
sys.path[:] = [entry for entry in sys.path if not os.path.isdir(os.path.join(entry or ".", "cnnlab"))]
assert importlib.util.find_spec("cnnlab") is None, "cnnlab is importable"
import numpy as np
import keras
model = keras.saving.load_model(sys.argv[1])
inputs = np.load(sys.argv[2])
outputs = keras.ops.convert_to_numpy(model(inputs, training=False))
np.save(sys.argv[3], np.asarray(outputs))
print(json.dumps(sorted({type(layer).__module__.split(".")[0] for layer in model.layers})))
"""


@pytest.fixture(scope="module")
def modern_run(tiny_cache, tmp_path_factory):
    """resnet9-tiny trained one epoch on the tiny real-photo cache (its batch norms have moved)."""
    out = tmp_path_factory.mktemp("keras-export") / "resnet9-tiny"
    quiet_train(make_config(tiny_cache, out, model="resnet9-tiny", epochs=1))
    return out


def load_in_plain_keras(path, inputs: np.ndarray, scratch) -> tuple[np.ndarray, list[str]]:
    np.save(scratch / "inputs.npy", inputs)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    environment["KERAS_BACKEND"] = "torch"
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN_KERAS_SCRIPT, str(path), str(scratch / "inputs.npy"),
                           str(scratch / "outputs.npy")], env=environment, cwd=scratch, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(scratch / "outputs.npy"), json.loads(done.stdout.strip().splitlines()[-1])


def test_the_keras_export_of_resnet9_tiny_loads_without_cnnlab_and_matches(modern_run, tmp_path):
    import cnnlab
    from cnnlab.backend import keras
    from cnnlab.inference.export import float32_model
    from cnnlab.runs import Run
    from cnnlab.recipe.pixels import to_model_input

    classifier = cnnlab.load(modern_run)
    assert any(isinstance(layer, ChannelsLastMemory) for layer in classifier.model.layers)
    assert any(isinstance(layer, FastBatchNormalization) for layer in classifier.model.layers)
    out = tmp_path / "model.keras"
    assert run(["export", str(modern_run), "--format", "keras", "--out", str(out)]) == 0
    pixels = np.random.default_rng(0).integers(0, 256, (6, classifier.options.height, classifier.options.width, 3))
    inputs = to_model_input(pixels.astype(np.uint8), classifier.pixel_scale)
    # The run's own weights computing in float32: with precision "auto" on a CPU with AMX the run
    # trains and predicts in bfloat16, and every export is its float32 copy (export.float32_model).
    original = float32_model(classifier.model, Run.open(modern_run))
    expected = np.asarray(keras.ops.convert_to_numpy(original(inputs, training=False)))
    outputs, modules = load_in_plain_keras(out, inputs, tmp_path)
    assert modules == ["keras"]
    config = json.loads(zipfile.ZipFile(out).read("config.json"))
    assert "cnnlab" not in json.dumps(config)  # no class of ours named anywhere in the saved graph
    assert export_formats.read_keras_metadata(out)["model"] == "resnet9-tiny"
    assert outputs.shape == expected.shape
    np.testing.assert_allclose(outputs, expected, atol=1e-4)


def test_the_stock_copy_computes_what_the_model_computes(modern_run):
    import cnnlab
    from cnnlab.backend import keras
    from cnnlab.inference.export import float32_model
    from cnnlab.runs import Run
    from cnnlab.models.layers import OURS, stock_keras_model

    classifier = cnnlab.load(modern_run)
    model = float32_model(classifier.model, Run.open(modern_run))
    stock = stock_keras_model(model)
    assert not any(isinstance(layer, OURS) for layer in stock.layers)  # every layer class of cnnlab's
    batch_norms = [layer for layer in stock.layers if isinstance(layer, keras.layers.BatchNormalization)]
    originals = [layer for layer in model.layers if isinstance(layer, FastBatchNormalization)]
    assert len(batch_norms) == len(originals) > 0
    for copy, original in zip(batch_norms, originals):
        assert copy.name == original.name and copy.epsilon == original.epsilon and copy.momentum == original.momentum
        for got, want in zip(copy.get_weights(), original.get_weights()):
            np.testing.assert_array_equal(got, want)
    inputs = np.random.default_rng(1).uniform(0, 1, (4, *model.inputs[0].shape[1:])).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stock(inputs, training=False)),
                               keras.ops.convert_to_numpy(model(inputs, training=False)), atol=1e-5)
