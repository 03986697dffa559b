"""`cnnlab studio`'s HTTP API through a real uvicorn on 127.0.0.1: the data survey and thumbnails,
the guard (token, Host, cross-site writes, path traversal), the training queue (a real worker
process trains conv1 on 20 real photos per class at 24x24; one job at a time; stop, then resume
continues the run), compare, inspect (checked against scikit-learn and SciPy on the run's own
stored predictions), predict, export and the report. The photo folder must be unchanged at the end.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from serving_helpers import multipart, request
from studio_helpers import WRITE, StudioServer, read_events, tiny_photos

from cnnlab.errors import UserError
from cnnlab.runs import Run
from cnnlab.studio.config import StudioConfig

PER_CLASS = 20
TRAIN = {"model": "conv1", "epochs": 2, "batch_size": 4, "width": 24, "height": 24, "val": 8, "test": 4}
JOB_TIMEOUT_S = 240
LONG_EPOCHS = 30


def folder_digest(folder) -> dict:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def studio(shared_photos, tmp_path_factory):
    """A studio over 20 photos per class, with one run ("main") trained through the API."""
    from cnnlab.studio.jobs import JobQueue
    from cnnlab.studio.server import build_app

    root = tmp_path_factory.mktemp("studio")
    photos = tiny_photos(shared_photos, root / "photos", PER_CLASS)
    before = folder_digest(photos)
    config = StudioConfig(data=str(photos), runs=str(root / "runs"), caches=str(root / "caches"), port=0)
    app, state = build_app(config, JobQueue(root / "jobs"))
    with StudioServer(app, config) as server:
        server.state, server.photos, server.runs = state, photos, root / "runs"
        reply = server.post("/api/train", {**TRAIN, "run": "main"})
        assert reply.status == 202, reply.body
        server.main_job = reply.json()["id"]
        yield server
        state.jobs.close()
    assert folder_digest(photos) == before, "the studio changed the photo folder"


def wait_for_job(server, number: int, statuses=("done", "failed", "stopped")) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = next(job for job in server.get("/api/jobs").json()["jobs"] if job["id"] == number)
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {number} still {job['status']} after {JOB_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def main_run(studio):
    job = wait_for_job(studio, studio.main_job)
    assert job["status"] == "done", studio.get(f"/api/jobs/{job['id']}/log").json()["log"]
    return Run.open(studio.runs / "main")


# ---- options and the guard ------------------------------------------------------------------------

def test_another_host_needs_a_token(tmp_path, capsys):
    from cnnlab.cli import run

    with pytest.raises(UserError, match="--token"):
        StudioConfig(host="0.0.0.0", runs=str(tmp_path))
    assert StudioConfig(host="0.0.0.0", runs=str(tmp_path), token="s3cret-token").loopback_only is False
    assert run(["studio", "--host", "0.0.0.0", "--runs", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cnnlab studio: error:") and "--token" in error and "\n" not in error
    with pytest.raises(UserError, match="--token"):
        StudioConfig(token="short")


def test_every_request_needs_the_token_when_the_studio_has_one(tmp_path):
    from cnnlab.studio.jobs import JobQueue
    from cnnlab.studio.server import build_app

    # Bound to 127.0.0.1 here, configured as if for every interface: the token is what guards it.
    config = StudioConfig(host="0.0.0.0", token="s3cret-token", runs=str(tmp_path / "runs"), port=0)
    app, state = build_app(config, JobQueue(tmp_path / "jobs"))
    with StudioServer(app, config) as server:
        assert server.get("/api/info").status == 401
        assert server.get("/").status == 401
        assert server.get("/api/info", {"X-Studio-Token": "wrong-token"}).status == 401
        assert server.get("/api/info", {"X-Studio-Token": "s3cret-token"}).status == 200
        opened = server.get("/?token=s3cret-token")
        assert opened.status == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in opened.headers["set-cookie"]
        assert server.get("/api/runs", {"Cookie": cookie}).status == 200
        assert server.get("/api/runs", {"Cookie": "cnnlab_studio_token=wrong-token"}).status == 401
        assert server.get("/?token=wrong").status == 401
    state.jobs.close()


def test_foreign_hosts_and_cross_site_writes_are_refused(studio):
    assert studio.get("/api/info", {"Host": "attacker.example:80"}).status == 403
    plain = request(studio.port, "POST", "/api/train", b"model=conv1", {"Content-Type": "application/x-www-form-urlencoded"})
    assert plain.status == 403 and "X-Studio" in plain.json()["error"]
    page = studio.get("/")
    assert page.status == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert b"http://" not in page.body.replace(b"http://www.w3.org", b"") and b"https://" not in page.body
    script = studio.get("/studio.js").body
    assert b"https://" not in script and script.count(b"http://") == script.count(b"http://www.w3.org/2000/svg")


# ---- data -------------------------------------------------------------------------------------------

def test_the_survey_counts_classes_shapes_and_samples(studio):
    survey = studio.get("/api/data/survey").json()
    assert survey["per_class"] == {"cat": PER_CLASS, "dog": PER_CLASS}
    for axis in ("width", "height"):
        assert sum(bin["count"] for bin in survey["histogram"][axis]) == 2 * PER_CLASS
    sizes = [Image.open(path).size for path in sorted(studio.photos.iterdir())]
    assert survey["width_range"] == [min(w for w, _ in sizes), max(w for w, _ in sizes)]
    assert {label: len(paths) for label, paths in survey["samples"].items()} == {"cat": 12, "dog": 12}
    assert survey["unreadable"] == []
    split = studio.get("/api/data/split?val=8&test=4").json()
    assert split["per_class"] == {"cat": {"train": 14, "val": 4, "test": 2}, "dog": {"train": 14, "val": 4, "test": 2}}


def test_thumbnails_are_small_jpegs_of_the_named_photo(studio):
    name = studio.get("/api/data/survey").json()["samples"]["dog"][0]
    reply = studio.get("/api/data/thumbnail?path=" + urllib.parse.quote(name))
    assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
    thumbnail = Image.open(io.BytesIO(reply.body))
    original = Image.open(studio.photos / name)
    assert max(thumbnail.size) == 160
    assert abs(thumbnail.size[0] / thumbnail.size[1] - original.size[0] / original.size[1]) < 0.05


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd", "..%2F..%2Fetc%2Fpasswd", "cat.1.jpg/..",
                                  "%00", "photos/../cat.1.jpg"])
def test_photos_outside_the_catalogue_are_not_found(studio, path):
    reply = studio.get("/api/data/thumbnail?path=" + path)
    assert reply.status == 404 and "no photo" in reply.json()["error"]
    explored = studio.post("/api/data/convolve", {"path": urllib.parse.unquote(path), "kernel": [[0, 0, 0], [0, 1, 0], [0, 0, 0]]})
    assert explored.status == 404


@pytest.mark.parametrize("name", ["..", "..%2F..%2Fetc", "%2Fetc", ".hidden", "a%2Fb"])
def test_run_names_cannot_leave_the_runs_folder(studio, name):
    for path in (f"/api/runs/{name}", f"/api/runs/{name}/confusion", f"/api/runs/{name}/export?format=onnx"):
        reply = studio.get(path)
        assert reply.status in (400, 404), (path, reply.status)
    reply = studio.post("/api/train", {**TRAIN, "run": urllib.parse.unquote(name)})
    assert reply.status == 400 and "run name" in reply.json()["error"]


def test_a_link_out_of_the_runs_folder_is_refused(studio, main_run, tmp_path):
    (studio.runs / "elsewhere").symlink_to(main_run.path.resolve())
    try:
        reply = studio.get("/api/runs/elsewhere")
        assert reply.status == 400 and "link" in reply.json()["error"]
        assert "elsewhere" not in [run["name"] for run in studio.get("/api/runs").json()["runs"]]
    finally:
        (studio.runs / "elsewhere").unlink()


def test_bad_training_requests_are_one_line_json(studio):
    assert studio.post("/api/train", {**TRAIN, "model": "no-such-model"}).json()["error"].startswith("unknown model")
    assert studio.post("/api/train", {**TRAIN, "epochs": 0}).status == 422
    assert studio.post("/api/train", {**TRAIN, "width": 24, "height": None}).status == 400
    taken = studio.post("/api/train", {**TRAIN, "run": "main"})
    assert taken.status == 400 and "main" in taken.json()["error"]


# ---- training ------------------------------------------------------------------------------------

def test_a_training_job_completes_and_its_curve_is_served(studio, main_run):
    detail = studio.get("/api/runs/main").json()
    assert [entry["epoch"] for entry in detail["history"]] == [1, 2]
    assert detail["history"][0]["val_loss"] == pytest.approx(main_run.history[0]["val_loss"])
    assert detail["evaluated"] and detail["complete"]
    events = read_events(studio.port, "/api/events?run=main", lambda events: len(events) >= 1, timeout=30)
    assert [entry["epoch"] for entry in events[0]["run"]["history"]] == [1, 2]
    assert any(job["run"] == "main" and job["status"] == "done" for job in events[0]["jobs"])


def test_the_queue_runs_one_job_at_a_time_and_a_stopped_run_resumes(studio, main_run):
    # Enough epochs that the stop always lands before the last one (4 once all finished first on
    # a quiet machine); the resumed job then trains the rest.
    long = studio.post("/api/train", {**TRAIN, "run": "stopped", "epochs": LONG_EPOCHS}).json()
    evaluation = studio.post("/api/runs/main/evaluate").json()
    assert studio.post("/api/runs/main/evaluate").status == 400  # one job per run at a time
    seen = []

    def one_epoch_done(events):
        statuses = {job["id"]: job["status"] for job in events[-1]["jobs"]}
        seen.append(statuses)
        return len(events[-1]["run"]["history"]) >= 1

    read_events(studio.port, "/api/events?run=stopped", one_epoch_done, timeout=JOB_TIMEOUT_S)
    assert all(list(statuses.values()).count("running") <= 1 for statuses in seen)
    assert seen[-1][long["id"]] == "running" and seen[-1][evaluation["id"]] == "queued"

    assert studio.post(f"/api/jobs/{long['id']}/stop").status == 200
    assert wait_for_job(studio, long["id"])["status"] == "stopped"
    assert wait_for_job(studio, evaluation["id"])["status"] == "done"
    run = Run.open(studio.runs / "stopped")
    done = len(run.history)
    assert 1 <= done < LONG_EPOCHS
    listed = next(row for row in studio.get("/api/runs").json()["runs"] if row["name"] == "stopped")
    assert not listed["complete"] and listed["epochs_done"] == done

    resumed = studio.post("/api/runs/stopped/resume", {}).json()
    assert resumed["resume"] and wait_for_job(studio, resumed["id"])["status"] == "done"
    assert [entry["epoch"] for entry in Run.open(studio.runs / "stopped").history] == list(range(1, LONG_EPOCHS + 1))
    assert studio.get("/api/runs/stopped").json()["complete"]


def test_compare_shows_the_runs_as_cnnlab_compare_does(studio, main_run):
    import cnnlab

    reply = studio.get("/api/compare?runs=main").json()
    expected = cnnlab.compare([main_run.path]).rows[0]
    (row,) = reply["rows"]
    assert row["name"] == "main" and row["val_auc"] == expected["val_auc"]
    assert row["test_accuracy_at_validation_threshold"] == expected["test_accuracy_at_validation_threshold"]
    assert [entry["epoch"] for entry in reply["curves"]["main"]] == [1, 2]


# ---- inspect --------------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.77, 1.0, None])
def test_the_confusion_matrix_and_threshold_metrics_match_scikit_learn(studio, main_run, threshold):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_score, recall_score

    stored = main_run.stored_predictions("val")
    query = "" if threshold is None else f"?threshold={threshold}"
    answer = studio.get("/api/runs/main/confusion" + query).json()
    used = main_run.validation_threshold if threshold is None else threshold
    assert answer["threshold"] == pytest.approx(used)
    predicted = (stored.probabilities > used).astype(int)
    assert answer["confusion_matrix"] == confusion_matrix(stored.labels, predicted, labels=[0, 1]).tolist()
    assert answer["accuracy"] == pytest.approx(accuracy_score(stored.labels, predicted))
    assert answer["precision"] == pytest.approx(precision_score(stored.labels, predicted, zero_division=0))
    assert answer["recall"] == pytest.approx(recall_score(stored.labels, predicted, zero_division=0))
    assert answer["photos"] == 8


def test_the_most_confidently_wrong_photos_open_their_grad_cam_and_feature_maps(studio, main_run):
    rows = studio.get("/api/runs/main/top-losses").json()["rows"]
    stored = main_run.stored_predictions("val")
    probability_of = {int(row): float(p) for row, p in zip(stored.rows, stored.probabilities)}
    label_of = {int(row): int(label) for row, label in zip(stored.rows, stored.labels)}
    wrong = [row for row in stored.rows if (probability_of[int(row)] >= 0.5) != bool(label_of[int(row)])]
    assert len(rows) == len(wrong) and rows, "conv1 at its tutorial learning rate gets some photos wrong"
    assert [row["loss"] for row in rows] == sorted((row["loss"] for row in rows), reverse=True)
    for row in rows:
        assert row["true"] != row["predicted"]
        truth = label_of[row["row"]]
        of_truth = probability_of[row["row"]] if truth == 1 else 1 - probability_of[row["row"]]
        expected = -np.log(max(of_truth, 1e-12))  # as cnnlab's top losses clip a certain mistake
        assert row["loss"] == pytest.approx(expected, rel=1e-6)
    cam = studio.get(f"/api/runs/main/grad-cam?row={rows[0]['row']}").json()
    assert cam["layer"] == "conv1" and cam["result"]["label"] == rows[0]["predicted"]
    for picture in (cam["model_input"], cam["grad_cam"]):
        assert decoded(picture).size == decoded(cam["model_input"]).size
    features = studio.get(f"/api/runs/main/features?row={rows[0]['row']}").json()
    assert [layer["layer"] for layer in features["layers"]] == ["conv1"]
    assert features["layers"][0]["channels"] == main_run.build_model().get_layer("conv1").filters and decoded(features["layers"][0]["image"]).mode == "L"
    assert studio.get("/api/runs/main/grad-cam?row=100000").status == 400


def decoded(data_url: str) -> Image.Image:
    import base64

    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_the_convolution_explorer_correlates_as_scipy_does(studio):
    from scipy.signal import correlate2d

    from cnnlab.data.decode import DecodeOptions, decode_image
    from cnnlab.explain.filters import greyscale
    from cnnlab.serve.views import view_size

    name = studio.get("/api/data/survey").json()["samples"]["cat"][1]
    kernel = [[1, 2, 0], [0, -3, 0], [0.5, 0, -1]]
    answer = studio.post("/api/data/convolve", {"path": name, "kernel": kernel}).json()
    data = (studio.photos / name).read_bytes()
    grey = greyscale(decode_image(data, DecodeOptions(*view_size(data, 256))))
    expected = correlate2d(grey, np.array(kernel), mode="same")
    assert answer["range"] == pytest.approx([expected.min(), expected.max()])
    assert decoded(answer["result"]).size == (grey.shape[1], grey.shape[0])
    assert studio.post("/api/data/convolve", {"path": name, "kernel": [[1, 2], [3, 4]]}).status == 400


def test_an_unevaluated_run_says_to_evaluate_it(studio, main_run, tmp_path):
    import shutil

    copy = studio.runs / "copied"
    shutil.copytree(main_run.path, copy, ignore=shutil.ignore_patterns("predictions-*"))
    try:
        reply = studio.get("/api/runs/copied/confusion")
        assert reply.status == 409 and "evaluate" in reply.json()["error"]
    finally:
        shutil.rmtree(copy)


# ---- use ------------------------------------------------------------------------------------------

def test_an_uploaded_photo_is_predicted_as_cnnlab_predicts_it(studio, main_run, shared_photos):
    import cnnlab

    photo = sorted(shared_photos.glob("cat.*.jpg"))[-1]
    expected = cnnlab.load(main_run.path).predict(str(photo))[0]
    body, content_type = multipart([(photo.name, photo.read_bytes())])
    reply = request(studio.port, "POST", "/api/runs/main/predict", body, {"Content-Type": content_type, **WRITE})
    (result,) = reply.json()["results"]
    assert reply.status == 200 and result["label"] == expected.label
    for name, probability in expected.probabilities.items():
        assert result["probabilities"][name] == pytest.approx(probability, abs=1e-5)
    body, content_type = multipart([("notes.jpg", b"not a photo at all")])
    refused = request(studio.port, "POST", "/api/runs/main/predict", body, {"Content-Type": content_type, **WRITE})
    assert refused.status == 415
    too_large = request(studio.port, "POST", "/api/runs/main/predict", b"\0" * (9 * 2**20),
                        {"Content-Type": "image/jpeg", **WRITE})
    assert too_large.status == 413


@pytest.mark.parametrize("format", ["onnx", "keras"])
def test_export_offers_a_file_that_loads_and_answers_as_the_run(studio, main_run, format, tmp_path):
    from cnnlab.inference import export_formats

    reply = studio.get(f"/api/runs/main/export?format={format}")
    assert reply.status == 200 and f'filename="main.{format}"' in reply.headers["content-disposition"]
    path = tmp_path / f"model.{format}"
    path.write_bytes(reply.body)
    forward = export_formats.onnx_forward(path) if format == "onnx" else export_formats.keras_forward(path)
    model = main_run.build_model()
    inputs = np.random.default_rng(0).uniform(0, 255, (2, *model.input_shape[1:])).astype(np.float32)
    from cnnlab.backend import keras

    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    assert np.allclose(forward(inputs), expected, atol=1e-4)
    assert studio.get("/api/runs/main/export?format=exe").status == 400


def test_the_report_is_served_as_a_page(studio, main_run):
    reply = studio.get("/api/runs/main/report", timeout=180)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    assert b"conv1" in reply.body and "img-src data:" in reply.headers["content-security-policy"]


def test_a_worker_ends_when_its_studio_is_killed(tmp_path):
    """A studio killed with kill -9 leaves no worker training on: the worker sees it is gone and
    stops as Stop would, so a studio started again can resume the run."""
    import signal
    import subprocess
    import sys

    worker_code = ("import sys, time; from cnnlab.studio.worker import follow_the_studio; "
                   "follow_the_studio(int(sys.argv[1]), every_seconds=0.1); time.sleep(60)")
    studio_code = ("import os, subprocess, sys, time; "
                   f"child = subprocess.Popen([sys.executable, '-c', {worker_code!r}, str(os.getpid())]); "
                   "print(child.pid, flush=True); time.sleep(60)")
    studio = subprocess.Popen([sys.executable, "-c", studio_code], stdout=subprocess.PIPE, text=True)
    worker = int(studio.stdout.readline())
    studio.send_signal(signal.SIGKILL)
    studio.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its studio by 20 s")
