"""`cnnlab serve`: a real uvicorn on 127.0.0.1 (a free port, a background thread) serving a tiny conv1
trained on real photos. Good photos get the same answers as `cnnlab.load(RUN).predict`; hostile
input (too large, not an image, truncated, a decompression bomb) gets a JSON 4xx, never a 500,
and the server keeps answering; 50 requests from 8 threads all come back right."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli import run
from cnnlab.serve.config import ServeConfig
from serving_helpers import ServerThread, bomb_png, cache_photos, post_photos, request, train_tiny_run

MAX_UPLOAD_MB = 1


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    return train_tiny_run(tiny_cache, tmp_path_factory.mktemp("serve-runs") / "conv1")


@pytest.fixture(scope="module")
def photos(tiny_cache):
    return cache_photos(tiny_cache)


@pytest.fixture(scope="module")
def expected(trained, photos):
    """{filename: Prediction} from the library, one photo at a time (as the server sees them)."""
    classifier = cnnlab.load(trained)
    return {path.name: classifier.predict(str(path))[0] for path in photos}


@pytest.fixture(scope="module")
def server(trained):
    from cnnlab.serve.server import build_app

    config = ServeConfig(run=str(trained), port=0, max_upload_mb=MAX_UPLOAD_MB, max_photos=8)
    app, _ = build_app(config)
    with ServerThread(app, config) as running:
        yield running.port


def assert_matches(row: dict, prediction) -> None:
    assert row["error"] is None and row["label"] == prediction.label
    assert row["probabilities"].keys() == prediction.probabilities.keys()
    for name, value in prediction.probabilities.items():
        assert row["probabilities"][name] == pytest.approx(value, abs=1e-6)


def assert_refused(reply, status: int, words: str) -> dict:
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert words in body["error"]
    return body


def test_health_describes_the_run(server, trained):
    reply = request(server, "GET", "/health")
    assert reply.status == 200
    body = reply.json()
    classifier = cnnlab.load(trained)
    assert body["status"] == "ok" and body["classes"] == classifier.classes
    assert body["threshold"] == classifier.threshold and body["threshold_source"] == "validation"
    assert body["input"]["width"] == classifier.options.width and body["limits"]["max_upload_mb"] == MAX_UPLOAD_MB


def test_one_photo_gets_the_librarys_answer(server, trained, photos, expected):
    reply = post_photos(server, [(photos[0].name, photos[0].read_bytes())])
    assert reply.status == 200
    (row,) = reply.json()["results"]
    assert row["filename"] == photos[0].name
    assert row["threshold"] == cnnlab.load(trained).threshold
    assert_matches(row, expected[photos[0].name])


def test_several_photos_in_one_request_keep_their_order(server, photos, expected):
    chosen = [photos[0], photos[-1], photos[5], photos[13]]
    reply = post_photos(server, [(path.name, path.read_bytes()) for path in chosen])
    assert reply.status == 200
    rows = reply.json()["results"]
    assert [row["filename"] for row in rows] == [path.name for path in chosen]
    for row, path in zip(rows, chosen):
        assert_matches(row, expected[path.name])


def test_raw_image_bytes_as_the_body(server, photos, expected):
    photo = photos[3]
    reply = request(server, "POST", f"/predict?filename={photo.name}", photo.read_bytes(),
                    {"Content-Type": "image/jpeg"})
    assert reply.status == 200
    (row,) = reply.json()["results"]
    assert row["filename"] == photo.name
    assert_matches(row, expected[photo.name])


def test_oversized_uploads_are_413_by_length_and_while_streaming(server):
    big = os.urandom(MAX_UPLOAD_MB * 1024 * 1024 + 1)
    assert_refused(post_photos(server, [("big.jpg", big)]), 413, "upload too large")
    assert_refused(request(server, "POST", "/predict", big, {"Content-Type": "image/jpeg"}, chunked=True),
                   413, "--max-upload-mb")
    assert_refused(request(server, "POST", "/explain", big, {"Content-Type": "image/jpeg"}), 413, "upload too large")


def test_non_images_are_415(server):
    body = assert_refused(post_photos(server, [("notes.jpg", b"this is a text file, not a photo\n")]),
                          415, "not an image")
    assert body["results"][0]["filename"] == "notes.jpg" and body["results"][0]["label"] is None
    assert_refused(request(server, "POST", "/predict", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}),
                   415, "without files")


def test_truncated_jpeg_and_empty_body_are_400(server, photos):
    data = photos[2].read_bytes()
    body = assert_refused(post_photos(server, [("cut.jpg", data[:len(data) // 2])]), 400, "truncated")
    assert body["results"][0]["error_kind"] == "bad"
    assert_refused(request(server, "POST", "/predict", b""), 400, "no photo")
    assert_refused(post_photos(server, [("empty.jpg", b"")]), 400, "empty")


def test_a_decompression_bomb_is_refused_from_its_header(server):
    started = time.monotonic()
    assert_refused(post_photos(server, [("bomb.png", bomb_png())]), 400, "decompression bomb")
    assert_refused(post_photos(server, [("bomb.png", bomb_png())], path="/explain"), 400, "decompression bomb")
    assert time.monotonic() - started < 10  # refused from the header, never decoded


def test_bad_photos_beside_good_ones_get_their_own_error(server, photos, expected):
    reply = post_photos(server, [("bomb.png", bomb_png()), (photos[1].name, photos[1].read_bytes()),
                                 ("notes.jpg", b"not a photo")])
    assert reply.status == 200
    rows = reply.json()["results"]
    assert "decompression bomb" in rows[0]["error"] and "not an image" in rows[2]["error"]
    assert_matches(rows[1], expected[photos[1].name])
    too_many = post_photos(server, [(f"{index}.jpg", photos[0].read_bytes()) for index in range(9)])
    assert_refused(too_many, 400, "Too many files")


def test_the_server_still_answers_after_hostile_input(server):
    assert request(server, "GET", "/health").status == 200


def test_explain_returns_png_views_and_grad_cam(server, photos, expected):
    reply = post_photos(server, [(photos[4].name, photos[4].read_bytes())], path="/explain")
    assert reply.status == 200
    body = reply.json()
    assert_matches(body["result"], expected[photos[4].name])
    assert [view["name"] for view in body["views"]] == ["grey", "vertical-edge", "horizontal-edge", "sobel-x",
                                                         "laplacian"]
    source = Image.open(photos[4])
    for url in [view["image"] for view in body["views"]] + [body["model_input"], body["grad_cam"]]:
        assert url.startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert picture.format == "PNG" and picture.width > 0
    grey = Image.open(io.BytesIO(base64.b64decode(body["views"][0]["image"].split(",", 1)[1])))
    assert abs(grey.width / grey.height - source.width / source.height) < 0.02  # aspect ratio kept
    edges = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["views"][1]["image"].split(",", 1)[1]))))
    assert edges.std() > 5  # a real photo has edges: the view is not blank
    assert body["grad_cam_layer"]


def test_openapi_schema_and_page(server):
    schema = request(server, "GET", "/openapi.json").json()
    assert {"/predict", "/explain", "/health"} <= set(schema["paths"])
    content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in content and "image/jpeg" in content
    assert "413" in schema["paths"]["/predict"]["post"]["responses"]
    page = request(server, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.body.decode()
    assert "<script" in text and "http://" not in text and "https://" not in text  # self-contained: no CDN


def test_fifty_requests_from_eight_threads(server, photos, expected):
    jobs = [photos[index % len(photos)] for index in range(50)]
    barrier = threading.Barrier(8)

    def one(index_and_path):
        index, path = index_and_path
        if index < 8:
            barrier.wait(timeout=30)  # the first eight start together
        return path, post_photos(server, [(path.name, path.read_bytes())], timeout=120)

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(one, enumerate(jobs)))
    assert len(replies) == 50
    for path, reply in replies:
        assert reply.status == 200
        (row,) = reply.json()["results"]
        assert row["filename"] == path.name
        assert_matches(row, expected[path.name])


def test_the_onnx_engine_serves_the_same_answers_and_grad_cam(trained, photos, expected):
    """--engine onnx: ONNX Runtime predicts (within the export's 1e-4 parity), and /explain's
    Grad-CAM builds the Keras model only when first asked."""
    from cnnlab.serve.server import build_app
    from cnnlab.serve.service import Upload

    _, service = build_app(ServeConfig(run=str(trained), port=0, engine="onnx"))
    assert service.describe()["engine"] == "onnx" and service.classifier.model is None
    rows = service.predict([Upload(path.name, path.read_bytes()) for path in photos[:6]])
    for row, path in zip(rows, photos[:6]):
        prediction = expected[path.name]
        assert row["error"] is None and row["label"] == prediction.label
        for name, value in prediction.probabilities.items():
            assert row["probabilities"][name] == pytest.approx(value, abs=1e-4)
    (decoded,) = service.decode([Upload(photos[0].name, photos[0].read_bytes())])
    heatmap, layer = service.grad_cam(decoded.pixels)
    assert heatmap is not None and layer and service.classifier.model is not None


def test_config_is_checked():
    with pytest.raises(ValueError, match="--engine"):
        ServeConfig(run="r", engine="tensorrt")
    with pytest.raises(ValueError, match="--port"):
        ServeConfig(run="r", port=70000)
    with pytest.raises(ValueError, match="--max-upload-mb"):
        ServeConfig(run="r", max_upload_mb=0)
    with pytest.raises(ValueError, match="--max-photos"):
        ServeConfig(run="r", max_photos=0)
    assert ServeConfig(run="r").host == "127.0.0.1" and ServeConfig(run="r").loopback_only
    assert not ServeConfig(run="r", host="0.0.0.0").loopback_only


def test_serve_without_a_run_is_a_one_line_error(tmp_path, capsys):
    assert run(["serve", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_the_command_serves_until_stopped(trained, photos, expected):
    """`cnnlab serve` itself, as a user starts it: a subprocess on a free loopback port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(cnnlab.__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(trained), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if request(port, "GET", "/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
        reply = post_photos(port, [(photos[7].name, photos[7].read_bytes())])
        assert_matches(reply.json()["results"][0], expected[photos[7].name])
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in err and "Traceback" not in err
