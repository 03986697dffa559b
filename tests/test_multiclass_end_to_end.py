"""Three classes end to end, on photos the test renders itself (circles, squares and triangles of
random size, position and colours, as PNG files in class folders): `cnnlab prepare`, `cnnlab train
resnet9-tiny` (a softmax head), `cnnlab evaluate` checked against scikit-learn from the stored
predictions, `cnnlab predict`, an ONNX export, a served /predict, `cnnlab compare` and the report.
About 30 s on 2 cores: 600 photos of 32x32 and 15 short epochs."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pytest
import sklearn.metrics as skm

import cnnlab
from cnnlab import cli
from cnnlab.data.decode import decode_file
from cnnlab.data.reader import open_cache
from cnnlab.inference.export import float32_model
from cnnlab.runs import Run
from cnnlab.recipe.pixels import to_model_input
from training_helpers import load_trained_model
from cnnlab.runs.predictions import read_predictions
from synthetic import SHAPES, shapes_folder

PER_CLASS, SIZE, EPOCHS = 200, 32, 15


def run_cli(*arguments: str) -> str:
    """Run one cnnlab command in this process; its standard output, after checking it succeeded."""
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        status = cli.run([str(argument) for argument in arguments])
    assert status == 0, (arguments, stream.getvalue())
    return stream.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    photos = shapes_folder(root / "photos", PER_CLASS, SIZE, seed=0)
    run_cli("prepare", photos, "--out", root / "cache", "--size", f"{SIZE}x{SIZE}", "--split", "stratified",
            "--val", 60, "--test", 60, "--workers", 1)
    run = root / "run"
    printed = run_cli("train", "resnet9-tiny", "--any-input-size", "--cache", root / "cache", "--out", run, "--epochs", EPOCHS,
                      "--batch-size", 32)
    return run, root / "cache", printed


def test_three_classes_train_a_softmax_head_and_learn_the_shapes(trained):
    run, cache_dir, printed = trained
    assert json.loads((run / "classes.json").read_text()) == sorted(SHAPES)  # the class map, in the run
    model, _ = load_trained_model(run)
    assert model.output_shape == (None, 3) and model.layers[-1].activation.__name__ == "softmax"
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["validation_threshold"] is None  # no threshold: the most probable class
    for split in ("val", "test"):
        assert evaluation["splits"][split]["task"] == "multiclass"
        assert evaluation["splits"][split]["accuracy"] > 0.8, evaluation["splits"][split]  # chance is 1/3
    # `cnnlab train` printed the N-class metrics, not a table of '-' binary columns.
    assert "F1 macro" in printed and "confusion (rows: true class" in printed
    for name in SHAPES:
        assert printed.count(name) >= 4  # header, per-class rows and confusion rows and columns


def test_evaluation_agrees_with_scikit_learn_on_the_stored_predictions(trained):
    run, cache_dir, _ = trained
    printed = run_cli("evaluate", run)
    assert "per class" in printed and "AUC ovr" in printed
    evaluation = json.loads((run / "evaluation.json").read_text())
    report = evaluation["splits"]["test"]
    stored = read_predictions(run, "test", open_cache(cache_dir).split_hash)
    assert stored is not None and stored.probabilities.shape == (60, 3)
    labels, probabilities = stored.labels, stored.probabilities
    predicted = probabilities.argmax(axis=1)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, predicted))
    assert report["f1_macro"] == pytest.approx(skm.f1_score(labels, predicted, average="macro"))
    assert report["f1_weighted"] == pytest.approx(skm.f1_score(labels, predicted, average="weighted"))
    assert report["top_k_accuracy"]["2"] == pytest.approx(skm.top_k_accuracy_score(labels, probabilities, k=2))
    assert report["one_vs_rest_roc_auc"] == pytest.approx(
        skm.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    assert report["confusion_matrix"] == skm.confusion_matrix(labels, predicted, labels=[0, 1, 2]).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, predicted, labels=[0, 1, 2],
                                                                         zero_division=0)
    assert [row["name"] for row in report["per_class"]] == sorted(SHAPES)
    np.testing.assert_allclose([row["precision"] for row in report["per_class"]], precision)
    np.testing.assert_allclose([row["recall"] for row in report["per_class"]], recall)
    np.testing.assert_allclose([row["f1"] for row in report["per_class"]], f1)
    assert [row["support"] for row in report["per_class"]] == support.tolist()


@pytest.fixture(scope="module")
def test_photos(trained):
    """The test split's photo files and their class indices, from the cache."""
    _, cache_dir, _ = trained
    cache = open_cache(cache_dir)
    rows = cache.indices("test")
    return cache.paths(rows), cache.labels[rows]


def test_predict_shows_every_class_and_matches_evaluate(trained, test_photos):
    run, cache_dir, _ = trained
    paths, labels = test_photos
    printed = run_cli("predict", run, *paths, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(printed)))
    classes = sorted(SHAPES)
    assert [row["path"] for row in rows] == paths
    probabilities = np.array([[float(row[name]) for name in classes] for row in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [row["label"] for row in rows] == [classes[index] for index in probabilities.argmax(axis=1)]
    assert all(row["threshold"] == "" for row in rows)  # argmax, no threshold
    # The files decode to the cache's pixels, so predicting as the run was trained (Keras, in its
    # precision) gives evaluate's probabilities.
    stored = read_predictions(run, "test", open_cache(cache_dir).split_hash)
    printed = run_cli("predict", run, *paths, "--format", "csv", "--engine", "keras")
    as_trained = np.array([[float(row[name]) for name in classes] for row in csv.DictReader(io.StringIO(printed))])
    np.testing.assert_allclose(as_trained, stored.probabilities, atol=1e-5)
    # The default engine is the run's float32 ONNX export: the same to 1e-5 for a float32 run,
    # within bfloat16's rounding (about 0.01) for a run that trained in bfloat16 (AMX CPUs).
    tolerance = 1e-5 if Run.open(run).precision == "float32" else 0.03
    np.testing.assert_allclose(probabilities, stored.probabilities, atol=tolerance)
    assert np.mean(probabilities.argmax(axis=1) == labels) > 0.8


def test_onnx_export_has_one_softmax_column_per_class(trained, test_photos, tmp_path):
    import onnxruntime

    run, _, _ = trained
    paths, _ = test_photos
    out = tmp_path / "shapes.onnx"
    run_cli("export", run, "--format", "onnx", "--out", out)
    metadata = json.loads((tmp_path / "shapes.onnx.json").read_text())
    assert metadata["classes"] == sorted(SHAPES) and metadata["threshold"] is None
    assert metadata["decision"] == "the most probable class" and "softmax" in metadata["output"]["means"]
    classifier = cnnlab.load(run)
    pixels = np.stack([decode_file(path, classifier.options)[0] for path in paths[:8]])
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"pixels": to_model_input(pixels, classifier.pixel_scale)})[0]
    assert outputs.shape == (8, 3)
    exported = classifier.probabilities(pixels, forward=lambda inputs: session.run(None, {"pixels": inputs})[0])
    # The export computes in float32 even where the run trained in bfloat16 (modern recipe with AMX):
    # equal to the run's weights in float32, within bfloat16's rounding of the run's own answer.
    config = Run.open(run).config
    classifier.model = float32_model(classifier.model, Run.open(run))
    np.testing.assert_allclose(exported, classifier.probabilities(pixels), atol=1e-4)
    bfloat16 = config.get("precision") == "mixed_bfloat16"
    np.testing.assert_allclose(exported, cnnlab.load(run).probabilities(pixels), atol=0.05 if bfloat16 else 1e-4)


def test_serve_answers_with_every_class(trained, test_photos):
    from cnnlab.serve.config import ServeConfig
    from cnnlab.serve.server import build_app
    from serving_helpers import ServerThread, post_photos, request

    run, _, _ = trained
    paths, _ = test_photos
    config = ServeConfig(run=str(run), port=0)
    app, _ = build_app(config)
    expected = cnnlab.load(run).predict(paths[:3])
    with ServerThread(app, config) as server:
        assert request(server.port, "GET", "/health").json()["classes"] == sorted(SHAPES)
        files = [(f"photo{index}.png", open(path, "rb").read()) for index, path in enumerate(paths[:3])]
        reply = post_photos(server.port, files)
    assert reply.status == 200
    for row, prediction in zip(reply.json()["results"], expected):
        assert sorted(row["probabilities"]) == sorted(SHAPES) and row["threshold"] is None
        assert row["label"] == prediction.label
        for name in SHAPES:
            assert row["probabilities"][name] == pytest.approx(prediction.probabilities[name], abs=1e-6)


def test_compare_and_report_show_every_class(trained, tmp_path):
    from cnnlab.experiments.compare import collect, render

    run, _, _ = trained
    evaluation = json.loads((run / "evaluation.json").read_text())
    row = collect([str(run)])[0]
    assert row["classes"] == 3
    assert row["val_auc"] == evaluation["splits"]["val"]["one_vs_rest_roc_auc"]
    assert row["test_accuracy_at_validation_threshold"] == evaluation["splits"]["test"]["accuracy"]
    assert "most probable class" in render([row])

    out = tmp_path / "report.html"
    run_cli("report", run, "--out", out)
    page = out.read_text()
    assert "confusion matrix of resnet9-tiny" in page and "resnet9-tiny: every class" in page
    for name in SHAPES:
        assert page.count(f">{name}<") >= 1  # a row of the per-class table
