"""`cnnlab report`: one self-contained HTML page from two tiny runs (conv1 evaluated, so its
predictions are stored; mlp not, so the report predicts) and a survey of the real photos.
The HTML is read back with the standard library's parser; every figure must be a PNG that
Pillow opens. N-class runs are rendered from synthetic data (no training)."""

from __future__ import annotations

import base64
import io
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm
from PIL import Image

from cnnlab import cli
from cnnlab.data.survey import survey
from cnnlab.report import ReportConfig, build_report
from cnnlab.report.build import render_report
from cnnlab.report.collect import RunData
from cnnlab.report.figures import roc_points
from cnnlab.runs.predictions import predictions_path, read_predictions
from training_helpers import make_config, quiet_train

SECTIONS = ("data", "results", "curves", "roc", "cost", "confusion", "wrong", "filters", "notes")


class Page(HTMLParser):
    """Every tag's attributes, the table headers and the visible text of a document."""

    def __init__(self, document: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: str | None = None
        self.feed(document)
        self.close()

    def handle_starttag(self, tag, attributes):
        self.tags.append((tag, dict(attributes)))
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            (self.headers if tag == "th" else self.rows[-1]).append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell += data

    def all(self, name: str) -> list[dict]:
        return [attributes for tag, attributes in self.tags if tag == name]


@pytest.fixture(scope="module")
def runs(tiny_cache, tmp_path_factory) -> list[Path]:
    from cnnlab.training.evaluation import evaluate_run

    root = tmp_path_factory.mktemp("report-runs")
    quiet_train(make_config(tiny_cache, root / "conv1", epochs=1))
    quiet_train(make_config(tiny_cache, root / "mlp", model="mlp", loss="mse", epochs=1))
    evaluate_run(root / "conv1")  # mlp stays unevaluated: the report must predict it itself
    return [root / "conv1", root / "mlp"]


@pytest.fixture(scope="module")
def survey_file(tiny_cache) -> Path:
    path = tiny_cache.parent / "survey.json"
    path.write_text(json.dumps(survey(tiny_cache.parent / "photos")))
    return path


@pytest.fixture(scope="module")
def report(runs, survey_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = build_report(ReportConfig(tuple(map(str, runs)), str(out), survey=str(survey_file)))
    document = out.read_text(encoding="utf-8")
    return result, document, Page(document)


def test_every_figure_is_an_embedded_png(report):
    result, document, page = report
    images = page.all("img")
    # shapes, samples, 2 learning curves, ROC, scatter, size/time, 2 confusions, per-class, filters
    assert len(images) >= 11
    assert result.figures == len(images)
    for attributes in images:
        assert attributes["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(attributes["src"].split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(png)) as picture:
            picture.load()
            assert picture.format == "PNG"
            assert picture.size == (int(attributes["width"]), int(attributes["height"]))
            assert picture.width >= 200 and picture.height >= 150
        assert attributes["alt"]
    alts = " | ".join(attributes["alt"] for attributes in images)
    for expected in ("histogram of photo sizes", "sample photos per class", "learning curves of conv1",
                     "learning curves of mlp", "ROC curves", "predictions vs labels", "accuracy vs model size",
                     "confusion matrix of conv1", "confusion matrix of mlp", "per-class accuracy", "edge filters"):
        assert expected in alts


def test_names_every_model_and_shows_the_published_figures(report, runs):
    _, _, page = report
    text = " ".join(page.text)
    for run in runs:
        assert run.name in text and str(run) in text
    assert {"tutorial MSE", "tutorial Pearson", "tutorial accuracy"} <= set(page.headers)
    rows = {row[0]: row for row in page.rows if row}
    header = page.headers[page.headers.index("model"):][:len(rows["conv1"])]
    conv1 = dict(zip(header, rows["conv1"]))
    assert conv1["tutorial MSE"] == "0.36" and conv1["tutorial Pearson"] == "0.15"
    assert dict(zip(header, rows["mlp"]))["tutorial accuracy"] == "about as good as random guessing"
    assert conv1["parameters"] == f"{json.loads((runs[0] / 'config.json').read_text())['parameters']:,}"
    # the evaluated conv1 has a test column; mlp was scored on validation for the report only
    assert conv1["test accuracy (threshold from val)"] != "-"
    assert any("no evaluation.json" in note and "mlp" in note for note in report[0].notes)


def test_self_contained_no_script_no_external_address(report):
    _, document, page = report
    assert not page.all("script") and "<script" not in document.lower()
    for tag, attributes in page.tags:
        for name in ("src", "href"):
            value = attributes.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, value[:60])
    assert "http://" not in document and "https://" not in document
    ids = {attributes.get("id") for attributes in page.all("section")}
    assert set(SECTIONS) <= ids
    assert {attributes["href"] for attributes in page.all("a")} >= {f"#{anchor}" for anchor in SECTIONS}


def test_data_section_lists_classes_and_skipped_files(report, survey_file):
    _, document, page = report
    counts = json.loads(survey_file.read_text())["per_class"]
    rows = {row[0]: row for row in page.rows if row}
    for name, count in counts.items():
        assert rows[name][1] == f"{count:,}"
    assert "Skipped files: 0" in " ".join(page.text)


def test_stored_predictions_are_the_models_and_go_stale_with_new_weights(runs, tiny_cache):
    from cnnlab.data.reader import open_cache
    from cnnlab.training.evaluation import predict_probabilities
    from training_helpers import load_trained_model

    conv1, mlp = runs
    assert predictions_path(conv1, "val").exists() and predictions_path(conv1, "test").exists()
    assert not predictions_path(mlp, "val").exists()  # the report only reads run folders
    cache = open_cache(tiny_cache)
    stored = read_predictions(conv1, "val", cache.split_hash)
    model, config = load_trained_model(conv1)
    again, _ = predict_probabilities(model, cache, stored.rows, config["recipe"]["pixel_scale"])
    np.testing.assert_allclose(stored.probabilities, again, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stored.labels, cache.labels[stored.rows])
    assert read_predictions(conv1, "val", "another split") is None
    weights = conv1 / "best.weights.h5"
    status = weights.stat()
    try:
        os.utime(weights, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
        assert read_predictions(conv1, "val", cache.split_hash) is None  # new weights: predict again
    finally:
        os.utime(weights, ns=(status.st_atime_ns, status.st_mtime_ns))


def test_a_folder_that_is_not_a_run_is_named_in_one_line(runs, tmp_path, capsys):
    stranger = tmp_path / "holiday-photos"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    out = tmp_path / "report.html"
    with pytest.raises(ValueError, match="holiday-photos: not a run folder") as caught:
        build_report(ReportConfig((str(runs[0]), str(stranger)), str(out)))
    assert "\n" not in str(caught.value)
    assert cli.run(["report", str(runs[0]), str(tmp_path / "missing"), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(tmp_path / "missing") in error
    assert not out.exists()
    for arguments, named in ((["--filters-photo", str(tmp_path / "kitten.jpg")], "kitten.jpg"),
                             (["--survey", str(stranger / "notes.txt")], "notes.txt"),
                             ([], str(tmp_path))):  # --out below names a folder
        target = str(tmp_path) if not arguments else str(out)
        assert cli.run(["report", str(runs[0]), *arguments, "--out", target]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and named in error, error
    assert not out.exists()


def test_cli_writes_the_report(runs, survey_file, tmp_path, capsys):
    out = tmp_path / "nested" / "page.html"
    assert cli.run(["report", *map(str, runs), "--survey", str(survey_file), "--out", str(out),
                    "--title", "Cats & dogs <tiny>"]) == 0
    assert str(out) in capsys.readouterr().out
    page = Page(out.read_text())
    assert "Cats & dogs <tiny>" in " ".join(page.text)  # escaped in the file, the same text when parsed


def test_n_class_runs_show_what_applies():
    rng = np.random.default_rng(0)
    classes = ["bird", "cat", "dog"]
    labels = np.repeat(np.arange(3), 10)
    probabilities = rng.dirichlet(np.ones(3), size=len(labels))
    history = [{"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch, "train_accuracy": 0.3 + epoch / 10,
                "val_accuracy": 0.3 + epoch / 12, "seconds": 2.0} for epoch in (1, 2, 3)]
    run = RunData("tiny-3", Path("runs/tiny-3"), "tiny-3", classes, {"parameters": 1234, "recipe": {"loss": "bce"}},
                  history, labels=labels, probabilities=probabilities, rows=np.arange(len(labels)))
    document, count = render_report([run], None, None, ReportConfig(("runs/tiny-3",), "unused.html"), [])
    page = Page(document)
    alts = [attributes["alt"] for attributes in page.all("img")]
    assert count == len(alts) == 4, alts  # learning curves, size/time, confusion, per-class accuracy
    assert "confusion matrix of tiny-3" in alts and "per-class accuracy" in alts
    text = " ".join(page.text)
    assert "3 classes; ROC curves and the scatter apply to two-class runs" in text
    assert "tiny-3" in text


def test_roc_points_match_scikit_learn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) * 0.6 + labels * 0.3, 2)  # ties on purpose
    false_rate, true_rate = roc_points(labels, scores)
    reference_false, reference_true, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(false_rate, reference_false)
    np.testing.assert_allclose(true_rate, reference_true)
    assert np.trapezoid(true_rate, false_rate) == pytest.approx(skm.roc_auc_score(labels, scores))


def test_reproduce_writes_its_report_and_a_failure_is_only_a_warning(runs, tiny_cache, survey_file, tmp_path):
    from cnnlab.experiments.reproduce import _write_report

    out = tmp_path / "reproduction"
    (out / "runs").mkdir(parents=True)
    for run in runs:
        (out / "runs" / run.name).symlink_to(run, target_is_directory=True)
    (out / "cache").symlink_to(tiny_cache, target_is_directory=True)
    (out / "survey.json").write_text(survey_file.read_text())
    baseline = {"model": "majority", "family": "baseline", "training_seconds": 0.01,
                "splits": {"val": {"accuracy_at_0.5": 0.5, "mean_squared_error": 0.25}}}
    log = io.StringIO()
    _write_report(out, ["conv1", "mlp"], [baseline], quick=True, stream=log)
    page = Page((out / "report.html").read_text())
    text = " ".join(page.text)
    assert "QUICK MODE" in text and "majority" in [row[0] for row in page.rows if row]
    assert "report.html" in log.getvalue()

    log = io.StringIO()
    _write_report(tmp_path / "elsewhere", ["conv1"], [], quick=False, stream=log)  # no runs there
    assert "warning: report.html not written" in log.getvalue()
