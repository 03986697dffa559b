"""A user's own folder, start to finish with the defaults: 3 classes of 20 photos, trained from
the photos, then evaluated, predicted and reported: once through the command line, once through
the Python API as a notebook user writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

import cnnlab
from cnnlab.cli import run as cli_run
from conftest import real_photos

PER_CLASS = 20
MODEL = "resnet9-tiny"  # 64x64 crop: the smallest modern recipe


@pytest.fixture(scope="module")
def three_classes(shared_photos, tmp_path_factory) -> Path:
    """cats/, dogs/ and upside-down/ (other photos turned over), 20 each, one bad file beside them."""
    folder = tmp_path_factory.mktemp("own") / "photos"
    photos = real_photos(shared_photos, 2 * PER_CLASS)
    cats = [path for path in photos if path.name.startswith("cat.")]
    dogs = [path for path in photos if path.name.startswith("dog.")]
    for name, sources, turn in (("cats", cats[:PER_CLASS], False), ("dogs", dogs[:PER_CLASS], False),
                                ("upside-down", cats[PER_CLASS:] + dogs[PER_CLASS:], True)):
        (folder / name).mkdir(parents=True)
        for source in sources[:PER_CLASS]:
            with Image.open(source) as image:
                picture = ImageOps.flip(image.convert("RGB")) if turn else image.convert("RGB")
                picture.save(folder / name / source.name, quality=90)
    (folder / "dogs" / "broken.jpg").write_bytes(b"not a photo at all")
    return folder


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """The default cache folder (outside the photos) lands in this test's own folder."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache-home"))


def test_from_a_folder_to_predictions_on_the_command_line(three_classes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_run(["train", MODEL, "--data", str(three_classes), "--out", str(run), "--epochs", "1"]) == 0
    printed = capsys.readouterr()
    assert "broken.jpg" in printed.err  # the bad file is skipped and named, the rest trains
    caches = list((tmp_path / "cache-home").iterdir())
    assert len(caches) == 1 and "64x64-crop" in caches[0].name  # the recipe's size, outside the photos
    assert not any(path.name.startswith(".") or path.suffix == ".npy" for path in three_classes.rglob("*"))

    assert cli_run(["evaluate", str(run), "--format", "json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["classes"] == ["cats", "dogs", "upside-down"]
    assert set(evaluation["splits"]) == {"val", "test"} and evaluation["splits"]["test"]["num_examples"] >= 3

    photo = next((three_classes / "upside-down").iterdir())
    assert cli_run(["predict", str(run), str(photo), "--format", "json"]) == 0
    prediction = json.loads(capsys.readouterr().out)["predictions"][0]
    assert prediction["label"] in evaluation["classes"] and prediction["error"] is None

    report = tmp_path / "report.html"
    assert cli_run(["report", str(run), "--out", str(report)]) == 0
    page = report.read_text()
    assert "upside-down" in page and "tutorial MSE" not in page


def test_from_a_folder_to_predictions_in_python(three_classes, tmp_path):
    run = cnnlab.train(MODEL, data=three_classes, out=tmp_path / "run", epochs=1, progress=False)
    assert isinstance(run, cnnlab.TrainedRun) and run.classes == ["cats", "dogs", "upside-down"]
    assert [entry["epoch"] for entry in run.history] == [1] and "1/1 epochs" in repr(run)
    assert "<table>" in run._repr_html_()

    evaluation = run.evaluate()
    assert 0.0 <= evaluation.accuracy("test") <= 1.0 and "test" in repr(evaluation)
    assert "<table>" in evaluation._repr_html_()

    predictions = run.predict([three_classes / "cats", three_classes / "dogs" / "broken.jpg"])
    assert len(predictions) == PER_CLASS + 1
    assert all(prediction.label in run.classes for prediction in predictions[:PER_CLASS])
    assert predictions[-1].label is None and "not an image" in predictions[-1].error

    figure = run.plot_curves()
    assert len(figure.axes) == 2
    mistakes = run.top_losses(4)
    assert len(mistakes) <= 4 and all(row["true"] != row["predicted"] for row in mistakes)

    report = run.report(tmp_path / "report.html")
    assert report.exists() and "upside-down" in report.read_text()
    exported = run.export(tmp_path / "model.onnx")
    assert exported.path.exists()

    again = cnnlab.open_run(run.path)
    comparison = cnnlab.compare([run, again])
    assert len(comparison.rows) == 2 and MODEL in repr(comparison)
