"""`cnnlab predict` and `cnnlab.load`: a tiny conv1 trained on real photos predicts on folders mixing
good photos and bad files, with the training preprocessing, the validation threshold, streaming
batches, globs, every output format and the Python API agreeing with the command."""

from __future__ import annotations

import ast
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli import run
from cnnlab.data.decode import DecodeOptions, decode_image
from cnnlab.inference.classifier import Classifier, resolve_threshold
from cnnlab.inference.writers import make_writer
from cnnlab.models import build_model
from cnnlab.backend import keras
from cnnlab.recipe.pixels import to_model_input
from cnnlab.training.evaluation import evaluate_run
from training_helpers import load_trained_model
from training_helpers import HEIGHT, WIDTH, make_config, quiet_train

GOOD = ("cat.1.jpg", "cat.2.jpg", "cat.10.jpg", "sub/dog.3.jpg")
MIXED_ORDER = ("cat.1.jpg", "cat.2.jpg", "cat.10.jpg", "notes.jpg", "truncated.jpg", "sub/dog.3.jpg")


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    """(run folder, its evaluation.json): one epoch of conv1, evaluated so it has a threshold."""
    folder = tmp_path_factory.mktemp("predict-runs") / "conv1"
    quiet_train(make_config(tiny_cache, folder, epochs=1))
    evaluation = evaluate_run(folder)
    assert evaluation["validation_threshold"] is not None
    return folder, evaluation


@pytest.fixture(scope="module")
def mixed(tiny_cache, tmp_path_factory):
    """A folder of good photos (copies, renamed), a text file named .jpg, a truncated JPEG, a .txt,
    a nested subfolder and a hidden one. Returns (folder, {relative name: source photo})."""
    photos = tiny_cache.parent / "photos"
    cats = sorted(photos.glob("cat.*.jpg"), key=lambda path: int(path.name.split(".")[1]))
    dogs = sorted(photos.glob("dog.*.jpg"), key=lambda path: int(path.name.split(".")[1]))
    folder = tmp_path_factory.mktemp("mixed") / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    sources = {"cat.1.jpg": cats[0], "cat.2.jpg": cats[1], "cat.10.jpg": dogs[0], "sub/dog.3.jpg": dogs[1]}
    for name, source in sources.items():
        shutil.copy(source, folder / name)
    shutil.copy(cats[3], folder / ".hidden" / "cat.5.jpg")
    (folder / "notes.jpg").write_text("this is a text file, not a photo\n")
    (folder / "readme.txt").write_text("not an image extension: skipped inside folders\n")
    data = cats[2].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 2])
    return folder, sources


def model_probabilities(run_folder, cache, source: Path) -> np.ndarray:
    """[P(class 0), P(class 1)] from the model on the cache's pixels: exactly what training saw."""
    model, config = load_trained_model(run_folder)
    rows = {Path(path).resolve(): row for row, path in enumerate(cache.paths(range(len(cache.labels))))}
    pixels = cache.images[rows[source.resolve()]]
    output = float(keras.ops.convert_to_numpy(model(to_model_input(pixels[None], config["recipe"]["pixel_scale"])))[0, 0])
    return np.array([1.0 - output, output])


def predict_json(capsys, *arguments) -> tuple[int, dict, str]:
    status = run(["predict", *map(str, arguments), "--format", "json"])
    printed = capsys.readouterr()
    return status, json.loads(printed.out), printed.err


def test_mixed_folder_one_row_per_file_in_order_with_errors(trained, mixed, cache, tmp_path, capsys):
    run_folder, _ = trained
    folder, _ = mixed
    out = tmp_path / "predictions.csv"
    assert run(["predict", str(run_folder), str(folder), "--format", "csv", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "2 of 6 files could not be predicted" in err and "Traceback" not in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predictions.csv"]  # no partial file left
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["path", "label", *cache.classes, "threshold", "error"]
    assert [row["path"] for row in rows] == [str(folder / name) for name in MIXED_ORDER]
    errors = {Path(row["path"]).name: row["error"] for row in rows if row["error"]}
    assert set(errors) == {"notes.jpg", "truncated.jpg"}
    assert "not an image" in errors["notes.jpg"] and "truncated" in errors["truncated.jpg"]
    for row in rows:
        if row["error"]:
            assert row["label"] == "" and all(row[name] == "" for name in cache.classes)
        else:
            assert row["label"] in cache.classes
            assert np.isclose(sum(float(row[name]) for name in cache.classes), 1.0)


def test_probabilities_are_the_models_own_on_training_pixels(trained, mixed, cache, capsys):
    run_folder, evaluation = trained
    folder, sources = mixed
    status, result, _ = predict_json(capsys, run_folder, folder)
    assert status == 1 and result["count"] == 6 and result["failed"] == 2
    assert result["classes"] == cache.classes and result["threshold_source"] == "validation"
    assert result["input"] == {"width": WIDTH, "height": HEIGHT, "fit": "stretch", "draft": True,
                               "pixel_scale": "unit", "test_time_flip": False}
    threshold = evaluation["validation_threshold"]
    assert result["threshold"] == threshold
    good = [row for row in result["predictions"] if row["error"] is None]
    assert [Path(row["path"]).relative_to(folder).as_posix() for row in good] == list(GOOD)
    for row in good:
        expected = model_probabilities(run_folder, cache, sources[Path(row["path"]).relative_to(folder).as_posix()])
        actual = np.array([row["probabilities"][name] for name in cache.classes])
        assert np.allclose(actual, expected, rtol=1e-5, atol=1e-7)
        assert row["threshold"] == threshold
        assert row["label"] == cache.classes[int(expected[1] > threshold)]


def test_all_good_photos_exit_0_as_a_table(trained, mixed, cache, capsys):
    run_folder, evaluation = trained
    folder, _ = mixed
    paths = [folder / name for name in GOOD]
    assert run(["predict", str(run_folder), *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["path", "label", *cache.classes, "threshold", "error"]
    assert len(lines) == 1 + len(GOOD)
    for line, path in zip(lines[1:], paths):
        name, label, first, second, threshold = line.split()
        assert name == str(path) and label in cache.classes
        assert np.isclose(float(first) + float(second), 1.0, atol=2e-4)
        assert np.isclose(float(threshold), evaluation["validation_threshold"], atol=1e-4)


def test_threshold_option_overrides_the_validation_one(trained, mixed, cache, capsys):
    run_folder, _ = trained
    folder, _ = mixed
    for threshold, label in ((0.0, cache.classes[1]), (1.0, cache.classes[0])):
        status, result, _ = predict_json(capsys, run_folder, *(folder / name for name in GOOD),
                                         "--threshold", threshold)
        assert status == 0 and result["threshold"] == threshold and result["threshold_source"] == "override"
        assert [row["label"] for row in result["predictions"]] == [label] * len(GOOD)
        assert all(row["threshold"] == threshold for row in result["predictions"])
    assert run(["predict", str(run_folder), str(folder / GOOD[0]), "--threshold", "1.5"]) == 2
    assert "--threshold must be a probability between 0 and 1" in capsys.readouterr().err


def test_globs_expanded_by_cnnlab_in_natural_order(trained, mixed, capsys):
    run_folder, _ = trained
    folder, _ = mixed
    status, result, _ = predict_json(capsys, run_folder, folder / "cat.*.jpg")
    assert status == 0
    assert [row["path"] for row in result["predictions"]] == [str(folder / name) for name in GOOD[:3]]
    status, result, _ = predict_json(capsys, run_folder, folder / "**" / "dog.*.jpg", folder / "nothing-*.png")
    assert status == 1  # the pattern that matches nothing has a row with its error
    assert [row["path"] for row in result["predictions"]] == [str(folder / "sub/dog.3.jpg"),
                                                                str(folder / "nothing-*.png")]
    assert result["predictions"][1]["error"] == "no file matches this pattern"


def test_small_batches_give_the_same_rows(trained, mixed, capsys):
    run_folder, _ = trained
    folder, _ = mixed
    paths = [folder / "cat.1.jpg", folder / "notes.jpg", folder / "cat.2.jpg", folder / "cat.10.jpg",
             folder / "truncated.jpg", folder / "sub/dog.3.jpg", folder / "cat.1.jpg"]  # named twice: one row
    results = [predict_json(capsys, run_folder, *paths, "--batch-size", size)[1]["predictions"] for size in (2, 64)]
    small, large = results
    assert len(small) == len(large) == 6
    for one, other in zip(small, large):
        assert (one["path"], one["label"], one["error"]) == (other["path"], other["label"], other["error"])
        for name, value in one["probabilities"].items():
            assert np.isclose(value, other["probabilities"][name], rtol=1e-5, atol=1e-7)


def test_python_api_agrees_with_the_command(trained, mixed, cache, capsys):
    run_folder, evaluation = trained
    folder, _ = mixed
    paths = [folder / name for name in GOOD]
    _, result, _ = predict_json(capsys, run_folder, *paths)
    command = [row["probabilities"] for row in result["predictions"]]

    classifier = cnnlab.load(run_folder)
    assert isinstance(classifier, cnnlab.Classifier)
    assert classifier.classes == cache.classes and classifier.threshold == evaluation["validation_threshold"]
    single = classifier.predict(str(paths[0]))
    assert len(single) == 1 and single[0].path == str(paths[0]) and single[0].error is None
    pixels = np.stack([decode_image(str(path), classifier.options) for path in paths])  # the run's size already
    for predictions in (classifier.predict(paths), classifier.predict([Image.fromarray(photo) for photo in pixels]),
                        classifier.predict(pixels), classifier.predict(list(pixels))):
        assert len(predictions) == len(paths)
        for prediction, expected, row in zip(predictions, command, result["predictions"]):
            assert isinstance(prediction, cnnlab.Prediction) and prediction.label == row["label"]
            assert all(np.isclose(prediction.probabilities[name], expected[name], rtol=1e-5, atol=1e-7)
                       for name in cache.classes)
    assert classifier.predict(pixels)[0].path is None

    # Photos of another size are brought to the run's with its fit (here without the JPEG draft).
    full = np.asarray(Image.open(paths[0]).convert("RGB"))
    resized = decode_image(str(paths[0]), DecodeOptions(WIDTH, HEIGHT, draft=False))
    assert np.allclose(classifier.predict_proba(full), classifier.predict_proba(resized), rtol=1e-6, atol=1e-9)

    table = classifier.predict_proba([paths[0], folder / "notes.jpg"])
    assert table.shape == (2, 2) and np.all(np.isnan(table[1]))
    assert np.allclose(table[0], [command[0][name] for name in cache.classes], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="uint8"):
        classifier.predict(pixels.astype(np.float32))


def test_test_time_flip_averages_the_photo_and_its_mirror(trained, mixed):
    run_folder, _ = trained
    folder, _ = mixed
    classifier = cnnlab.load(run_folder)
    pixels = decode_image(str(folder / GOOD[0]), classifier.options)
    plain = classifier.predict_proba([pixels, np.ascontiguousarray(pixels[:, ::-1])])
    classifier.tta_flip = True
    assert np.allclose(classifier.predict_proba(pixels)[0], plain.mean(axis=0), rtol=1e-5, atol=1e-7)


def test_a_run_never_evaluated_uses_one_half_with_a_note(trained, mixed, tmp_path, capsys):
    run_folder, _ = trained
    folder, _ = mixed
    copy = tmp_path / "not-evaluated"
    shutil.copytree(run_folder, copy)
    (copy / "evaluation.json").unlink()
    status, result, err = predict_json(capsys, copy, folder / GOOD[0])
    assert status == 0 and result["threshold"] == 0.5 and result["threshold_source"] == "default"
    assert "note:" in err and "cnnlab evaluate" in err


def test_more_than_two_classes_take_the_most_probable_and_no_threshold():
    model = build_model("conv1", (3, HEIGHT, WIDTH) if keras.config.image_data_format() == "channels_first"
                        else (HEIGHT, WIDTH, 3), 3)
    classifier = Classifier(model, ["a", "b", "c"], DecodeOptions(WIDTH, HEIGHT), "unit", threshold=0.3)
    pixels = np.random.default_rng(0).integers(0, 256, (5, HEIGHT, WIDTH, 3), dtype=np.uint8)
    predictions = classifier.predict(pixels)
    assert classifier.threshold is None
    for prediction in predictions:
        probabilities = [prediction.probabilities[name] for name in "abc"]
        assert prediction.label == "abc"[int(np.argmax(probabilities))] and np.isclose(sum(probabilities), 1.0)
    stream = io.StringIO()
    writer = make_writer("csv", stream, classifier.classes, classifier.threshold, {})
    writer.begin()
    writer.write(predictions)
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert len(rows) == 5 and all(row["threshold"] == "" and row["label"] in "abc" for row in rows)
    with pytest.raises(ValueError, match="two-class runs"):
        resolve_threshold(Path("run"), ["a", "b", "c"], 0.5)


def test_usage_errors_are_one_line_with_status_2(trained, mixed, tmp_path):
    run_folder, _ = trained
    folder, _ = mixed
    (tmp_path / "empty").mkdir()
    for arguments, message in (([tmp_path / "missing-run", folder], "missing-run does not exist"),
                               ([run_folder, tmp_path / "empty"], "no photos found")):
        result = subprocess.run([sys.executable, "-m", "cnnlab", "predict", *map(str, arguments)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stdout == ""
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]


def test_import_cnnlab_stays_light():
    code = "import sys, cnnlab; print('keras' in sys.modules, 'torch' in sys.modules, callable(cnnlab.__getattr__))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False", "True"]


# ---- the ONNX Runtime engine ---------------------------------------------------------------------

def test_the_engine_choices_are_the_same_everywhere():
    from cnnlab.cli import needs_tuned_allocator
    from cnnlab.cli import predict as predict_command
    from cnnlab.inference import classifier
    from cnnlab.serve import config

    assert predict_command.ENGINES == classifier.ENGINES and set(config.ENGINES) == set(classifier.ENGINES)
    # Only a prediction told to use Keras re-executes with PyTorch's allocator settings.
    assert not needs_tuned_allocator(["predict", "RUN", "a.jpg"])
    assert needs_tuned_allocator(["predict", "RUN", "a.jpg", "--engine", "keras"])
    assert needs_tuned_allocator(["predict", "--engine=keras", "RUN", "a.jpg"])
    assert not needs_tuned_allocator(["models"]) and needs_tuned_allocator(["train", "conv1"])


def real_photo_paths(folder: Path, count: int) -> list[Path]:
    return sorted(folder.glob("*.jpg"), key=lambda path: path.name)[:count]


def test_onnx_and_keras_engines_agree_on_real_photos(trained, tiny_cache):
    run_folder, evaluation = trained
    photos = real_photo_paths(tiny_cache.parent / "photos", 24)
    keras_engine = cnnlab.load(run_folder, engine="keras")
    onnx_engine = cnnlab.load(run_folder, engine="onnx")
    assert (keras_engine.engine, onnx_engine.engine) == ("keras", "onnx") and onnx_engine.model is None
    assert onnx_engine.threshold == keras_engine.threshold == evaluation["validation_threshold"]
    for flip in (False, True):  # test-time flips mirror along the export's own width axis
        keras_engine.tta_flip = onnx_engine.tta_flip = flip
        expected, got = keras_engine.predict(photos), onnx_engine.predict(photos)
        assert [row.label for row in got] == [row.label for row in expected]
        difference = max(abs(one.probabilities[name] - other.probabilities[name])
                         for one, other in zip(expected, got) for name in keras_engine.classes)
        assert difference <= 1e-4
    assert onnx_engine.keras_model() is not None  # Grad-CAM's model, built on request


def predict_in_a_fresh_process(run_folder, photo, *options) -> tuple[dict, list[str]]:
    """(the JSON result, which of Keras / PyTorch / TensorFlow the process had imported at the end)."""
    code = ("import sys\nfrom cnnlab.cli import run\n"
            f"status = run(['predict', {str(run_folder)!r}, {str(photo)!r}, '--format', 'json', *{list(options)!r}])\n"
            "print(sorted(name for name in ('keras', 'torch', 'tensorflow') if name in sys.modules), file=sys.stderr)\n"
            "sys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout), ast.literal_eval(result.stderr.strip().splitlines()[-1])


def test_the_export_is_made_once_reused_without_keras_and_remade_when_the_weights_change(trained, mixed, tmp_path):
    from cnnlab.runs import Run, files

    run_folder, _ = trained
    folder, _ = mixed
    photo = folder / GOOD[0]
    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    run = Run.open(copy)
    for stale in (files.ONNX_EXPORT, files.ONNX_RECORD):
        (run.path / stale).unlink(missing_ok=True)

    first, imported = predict_in_a_fresh_process(copy, photo)
    assert first["engine"] == "onnx" and "keras" in imported  # the first call makes the export with Keras
    export, record = run.onnx_export()
    made = export.stat().st_mtime_ns
    assert record["weights_file"] == run.weights_signature() and record["parity"]["max_difference"] <= 1e-4

    again, imported = predict_in_a_fresh_process(copy, photo)
    assert again["engine"] == "onnx" and imported == []  # neither Keras nor PyTorch
    assert export.stat().st_mtime_ns == made  # reused, not rewritten
    assert again["predictions"] == first["predictions"]
    with_keras, imported = predict_in_a_fresh_process(copy, photo, "--engine", "keras")
    assert with_keras["engine"] == "keras" and "keras" in imported
    for name, value in with_keras["predictions"][0]["probabilities"].items():
        assert abs(value - again["predictions"][0]["probabilities"][name]) <= 1e-4

    # New best weights (here: the output unit's bias moved): the next prediction makes a new export.
    model = run.build_model()
    output = model.get_layer("output")
    output.bias.assign(keras.ops.convert_to_numpy(output.bias) + 1.0)
    model.save_weights(run.weights_path())
    assert run.onnx_export() is None
    changed, _ = predict_in_a_fresh_process(copy, photo)
    assert export.stat().st_mtime_ns != made and run.onnx_export() is not None
    expected = cnnlab.load(copy, engine="keras").predict(str(photo))[0].probabilities
    for name, value in changed["predictions"][0]["probabilities"].items():
        assert abs(value - expected[name]) <= 1e-4
    assert changed["predictions"][0]["probabilities"] != first["predictions"][0]["probabilities"]


def test_a_bfloat16_run_predicts_through_its_float32_export_and_says_so(tiny_cache, mixed, tmp_path, capsys):
    """Modern recipes train in bfloat16 on AMX CPUs: the fast engine too, and a note said once."""
    folder = tmp_path / "bf16"
    quiet_train(make_config(tiny_cache, folder, epochs=1, precision="mixed_bfloat16"))
    evaluate_run(folder)
    photos, _ = mixed
    status, first, err = predict_json(capsys, folder, photos / GOOD[0])
    assert status == 0 and first["engine"] == "onnx"
    assert "computes in mixed_bfloat16, its export in float32" in err and "--engine keras" in err
    status, again, err = predict_json(capsys, folder, photos / GOOD[0])
    assert again["engine"] == "onnx" and "float32" not in err  # said when the export is made, not every time
    status, as_trained, _ = predict_json(capsys, folder, photos / GOOD[0], "--engine", "keras")
    assert as_trained["engine"] == "keras"
    for name, value in as_trained["predictions"][0]["probabilities"].items():
        assert value != again["predictions"][0]["probabilities"][name] or value in (0.0, 1.0)  # bfloat16 is not float32
        assert abs(value - again["predictions"][0]["probabilities"][name]) <= 0.05


def test_auto_falls_back_to_keras_when_the_export_cannot_be_made(trained, mixed, tmp_path, capsys, monkeypatch):
    from cnnlab.errors import UserError
    from cnnlab.inference import export
    from cnnlab.runs import files

    run_folder, _ = trained
    folder, _ = mixed
    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    (copy / files.ONNX_RECORD).unlink(missing_ok=True)

    def refuse(*arguments, **keywords):
        raise UserError("the onnx export does not match the run's model")

    monkeypatch.setattr(export, "make_run_export", refuse)
    status, result, err = predict_json(capsys, copy, folder / GOOD[0])
    assert status == 0 and result["engine"] == "keras"
    assert "predicting with Keras" in err and "does not match" in err
    assert run(["predict", str(copy), str(folder / GOOD[0]), "--engine", "onnx"]) == 2
    assert "cannot make its ONNX export" in capsys.readouterr().err
