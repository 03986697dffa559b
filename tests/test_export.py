"""`cnnlab export`: a tiny conv1 trained on real photos is exported to ONNX and .keras; each file is
reloaded by its own runtime and, fed only what its metadata says, agrees with `cnnlab.load(RUN)`.
A mismatching export fails with one line and leaves nothing; savedmodel without TensorFlow says
how to install it (and runs where TensorFlow is, as `make test-tensorflow` does)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import cnnlab
from cnnlab.cli import export as cli_export
from cnnlab.cli import run
from cnnlab.data.decode import DecodeOptions, decode_file
from cnnlab.inference import export, export_formats, savedmodel
from serving_helpers import cache_photos, train_tiny_run


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    return train_tiny_run(tiny_cache, tmp_path_factory.mktemp("export-runs") / "conv1")


@pytest.fixture(scope="module")
def photos(tiny_cache):
    return cache_photos(tiny_cache)


def inputs_from_metadata(metadata: dict, photos) -> np.ndarray:
    """What a consumer with only the metadata feeds the exported model: decode, scale, lay out."""
    spec = metadata["input"]
    options = DecodeOptions(spec["width"], spec["height"], spec["fit"], spec["draft"])
    pixels = np.stack([decode_file(str(path), options)[0] for path in photos]).astype(np.float32)
    if spec["pixel_scale"] == "unit":
        pixels /= 255.0
    assert spec["layout"] == "channels_first" and spec["channel_order"] == "RGB"
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def labels_from_metadata(metadata: dict, outputs: np.ndarray) -> list[str]:
    classes, threshold = metadata["classes"], metadata["threshold"]
    return [classes[int(p > threshold)] for p in outputs[:, 0]]


def expected(run_folder, photos) -> tuple[np.ndarray, list[str]]:
    predictions = cnnlab.load(run_folder).predict([str(path) for path in photos])
    return (np.array([prediction.probabilities["dog"] for prediction in predictions]),
            [prediction.label for prediction in predictions])


def test_onnx_export_carries_its_preprocessing_and_matches_the_run(trained, photos, tmp_path, capsys):
    import onnx
    import onnxruntime

    out = tmp_path / "model.onnx"
    assert run(["export", str(trained), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity on 16 photos" in printed and "identical labels" in printed
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]

    props = {entry.key: entry.value for entry in onnx.load(str(out)).metadata_props}
    metadata = json.loads(props["cnnlab"])
    classifier = cnnlab.load(trained)
    assert metadata == export_formats.read_onnx_metadata(out) == json.loads((tmp_path / "model.onnx.json").read_text())
    assert metadata["classes"] == classifier.classes == json.loads(props["classes"])
    assert metadata["threshold"] == classifier.threshold == json.loads(props["threshold"])
    assert metadata["input"]["width"] == classifier.options.width and props["input_fit"] == "stretch"
    assert props["input_pixel_scale"] == classifier.pixel_scale == "unit"

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [item.name for item in session.get_inputs()] == ["pixels"]
    assert [item.name for item in session.get_outputs()] == ["probabilities"]
    outputs = session.run(None, {"pixels": inputs_from_metadata(metadata, photos)})[0]  # 24 photos: any batch
    probabilities, labels = expected(trained, photos)
    assert outputs.shape == (len(photos), 1)
    assert np.max(np.abs(outputs[:, 0] - probabilities)) <= 1e-4
    assert labels_from_metadata(metadata, outputs) == labels


def test_keras_export_reloads_with_keras_and_matches_the_run(trained, photos, tmp_path):
    from cnnlab.backend import keras

    out = tmp_path / "model.keras"
    assert run(["export", str(trained), "--format", "keras", "--out", str(out)]) == 0
    metadata = export_formats.read_keras_metadata(out)
    assert metadata == json.loads((tmp_path / "model.keras.json").read_text())
    assert metadata["model"] == "conv1" and metadata["threshold_source"] == "validation"
    assert "cnnlab.json" in zipfile.ZipFile(out).namelist()
    model = keras.saving.load_model(str(out), compile=False)
    outputs = np.asarray(keras.ops.convert_to_numpy(model(inputs_from_metadata(metadata, photos), training=False)))
    probabilities, labels = expected(trained, photos)
    assert np.max(np.abs(outputs[:, 0] - probabilities)) <= 1e-4
    assert labels_from_metadata(metadata, outputs) == labels


def test_a_mismatching_export_fails_in_one_line_and_leaves_nothing(trained, tmp_path, capsys, monkeypatch):
    real_forward = export_formats.onnx_forward

    def off_by_a_little(path):
        forward = real_forward(path)
        return lambda inputs: forward(inputs) + 1e-3  # what a wrong layout or lost scaling would look like

    monkeypatch.setattr(export_formats, "onnx_forward", off_by_a_little)
    out = tmp_path / "model.onnx"
    assert run(["export", str(trained), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "does not match" in err and "largest probability difference 0.001" in err
    assert list(tmp_path.iterdir()) == []  # neither the file, nor its sidecar, nor the temporary


def test_parity_photos_can_be_given_and_must_be_readable(trained, photos, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert run(["export", str(trained), "--format", "onnx", "--out", str(out), "--photos", str(photos[0]),
                str(photos[-1])]) == 0
    assert "parity on 2 photos" in capsys.readouterr().out
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    assert run(["export", str(trained), "--format", "onnx", "--out", str(tmp_path / "other.onnx"),
                "--photos", str(text)]) == 2
    err = capsys.readouterr().err
    assert "no readable photos" in err and "--photos" in err and "Traceback" not in err
    assert not (tmp_path / "other.onnx").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--format", "keras", "--out", "{tmp}/model.h5"], "must end in .keras"),
    (["--format", "onnx", "--out", "{tmp}/missing/model.onnx"], "does not exist"),
    (["--format", "onnx", "--out", "{tmp}/model.onnx", "--tolerance", "-1"], "--tolerance"),
    (["--format", "onnx", "--out", "{tmp}/precious"], "is a folder"),
    (["--format", "savedmodel", "--out", "{tmp}/precious"], "is not a SavedModel"),
])
def test_bad_options_are_one_line_errors(trained, tmp_path, capsys, arguments, message):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("someone's work")
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    assert run(["export", str(trained), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "precious" / "notes.txt").read_text() == "someone's work"


def test_savedmodel_without_tensorflow_says_how_to_install_it(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(savedmodel, "tensorflow_python", lambda: None)
    assert run(["export", str(trained), "--format", "savedmodel", "--out", str(tmp_path / "saved")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "tensorflow extra" in err and "make setup-tensorflow" in err
    assert list(tmp_path.iterdir()) == []


def test_savedmodel_export_on_tensorflow(trained, photos, tmp_path, capsys):
    """Runs where TensorFlow is importable or CNNLAB_TENSORFLOW_PYTHON names a Python that has it."""
    if savedmodel.tensorflow_python() is None:
        pytest.skip("TensorFlow is not installed; run `make test-tensorflow` (installs the [tensorflow] extra)")
    out = tmp_path / "saved"
    assert run(["export", str(trained), "--format", "savedmodel", "--out", str(out)]) == 0
    assert "parity on 16 photos" in capsys.readouterr().out
    assert (out / "saved_model.pb").is_file()
    metadata = json.loads((out / "assets" / "cnnlab.json").read_text())
    assert metadata == json.loads((tmp_path / "saved.json").read_text())
    assert metadata["classes"] == cnnlab.load(trained).classes


def test_the_command_line_defaults_are_the_librarys():
    assert cli_export.FORMATS == export.FORMATS
    assert cli_export.DEFAULT_PARITY_PHOTOS == export.DEFAULT_PARITY_PHOTOS
    assert cli_export.DEFAULT_TOLERANCE == export.DEFAULT_TOLERANCE
