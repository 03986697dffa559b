"""`cnnlab serve`'s decode memory budget (issue 17, item 2): a small upload can decode to a
gigabyte (a 16-bit grey PNG of 6300x6300 pixels is 77 KB), so each upload's decoding cost is
estimated from its header and reserved before it is decoded. An image that can never fit gets a
JSON 413, a full budget a JSON 503 with Retry-After, a burst never a 500; the estimates cover what
decoding really takes (peak RSS in a fresh process), and the budget follows the memory limit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.decode import DecodeOptions
from cnnlab.errors import UserError
from cnnlab.serve import limits
from cnnlab.serve.config import MEGABYTE, ServeConfig
from cnnlab.serve.limits import DecodeBudget, cgroup_memory_limit
from cnnlab.serve.service import decode_cost
from serving_helpers import ServerThread, cache_photos, post_photos, request, train_tiny_run

REPOSITORY = Path(__file__).resolve().parents[1]


def grey16_png(side: int) -> bytes:
    """The issue's worst case, smaller: 16-bit grey, a smooth ramp (a few KB on the wire)."""
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.linspace(0, 65535, side).astype(np.uint16), (side, 1))).save(buffer, "PNG")
    return buffer.getvalue()


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    return train_tiny_run(tiny_cache, tmp_path_factory.mktemp("serve-memory-runs") / "conv1")


@pytest.fixture(scope="module")
def photo(tiny_cache) -> bytes:
    return cache_photos(tiny_cache)[0].read_bytes()


def serve(trained, decode_memory_mb: float):
    from cnnlab.serve.server import build_app

    config = ServeConfig(run=str(trained), port=0, decode_memory_mb=decode_memory_mb)
    app, service = build_app(config)
    return ServerThread(app, config), service


def assert_json_refusal(reply, status: int, words: str) -> dict:
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert words in body["error"], body["error"]
    return body


# ---- the answers --------------------------------------------------------------------------------

def test_an_image_that_can_never_fit_gets_a_json_413(trained, photo):
    large = grey16_png(2000)  # about 130 MB to decode, a budget of 64 MB
    assert len(large) < 100_000 and decode_cost(large, DecodeOptions(16, 12))[0] > 64 * MEGABYTE
    running, service = serve(trained, 64)
    with running:
        body = assert_json_refusal(post_photos(running.port, [("big.png", large)]), 413, "--decode-memory-mb")
        assert body["results"][0]["error_kind"] == "too_large" and "2000x2000 PNG I;16" in body["error"]
        assert_json_refusal(post_photos(running.port, [("big.png", large)], path="/explain"), 413, "too large")
        # With a photo that fits, the request succeeds and the large one fails in its own row.
        reply = post_photos(running.port, [("big.png", large), ("cat.jpg", photo)])
        assert reply.status == 200
        assert [row["error_kind"] for row in reply.json()["results"]] == ["too_large", None]
        assert request(running.port, "GET", "/health").json()["limits"]["decode_memory_mb"] == 64
    assert service.budget.in_use == 0


def test_a_full_budget_answers_503_with_retry_after_then_serves(trained, photo):
    running, service = serve(trained, 256)
    service.budget.wait_s = 0.2
    with running:
        assert service.budget.acquire(service.budget.capacity)  # as if other requests were decoding
        for path in ("/predict", "/explain"):
            reply = post_photos(running.port, [("cat.jpg", photo)], path=path)
            assert_json_refusal(reply, 503, "server busy")
            assert int(reply.headers["retry-after"]) > 0
        service.budget.release(service.budget.capacity)
        assert post_photos(running.port, [("cat.jpg", photo)]).status == 200
        assert post_photos(running.port, [("cat.jpg", photo)], path="/explain").status == 200
    assert service.budget.in_use == 0


def test_a_burst_of_large_uploads_never_gets_a_5xx_other_than_503(trained, photo):
    """12 at once, each about 145 MB to decode, in a budget that holds two."""
    large = grey16_png(2200)
    cost = decode_cost(large, DecodeOptions(16, 12))[0]
    running, service = serve(trained, 2.5 * cost / MEGABYTE)
    with running, ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda index: post_photos(running.port, [(f"{index}.png", large)], timeout=120),
                                range(12)))
        statuses = Counter(reply.status for reply in replies)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[200] >= 2
        for reply in replies:
            assert reply.headers["content-type"].startswith("application/json")
            assert reply.status == 200 or "retry-after" in reply.headers
        assert post_photos(running.port, [("cat.jpg", photo)]).status == 200  # still serving
    assert service.budget.in_use == 0


# ---- the estimates -------------------------------------------------------------------------------------

MEASURE = r"""
import io, sys
from cnnlab.data.decode import DecodeOptions, decode_image
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
data = open(sys.argv[1], "rb").read()
options = DecodeOptions(94, 125)
decode_image(data, options)  # once to load the codecs; then the peak of a decode alone
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS:")
decode_image(data, options)
print(status("VmHWM:") - before)
"""


@pytest.mark.parametrize("name, make", [
    ("grey16.png", lambda: grey16_png(2500)),
    ("rgba.png", lambda: encoded(Image.new("RGBA", (2500, 2500), (9, 80, 200, 100)), "PNG")),
    ("rgba.webp", lambda: encoded(Image.new("RGBA", (2500, 2500), (9, 80, 200, 100)), "WEBP", lossless=True)),
    ("float.tif", lambda: encoded(Image.new("F", (2500, 2500), 77.0), "TIFF", compression="tiff_adobe_deflate")),
    ("rgb.jpg", lambda: encoded(Image.new("RGB", (5000, 4000), (9, 80, 200)), "JPEG")),  # decoded at 1/8
])
def test_the_estimate_covers_the_measured_peak_of_decoding(tmp_path, name, make):
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/PID/clear_refs to reset the peak RSS")
    path = tmp_path / name
    path.write_bytes(make())
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src"), "MALLOC_ARENA_MAX": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], env=environment, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = int(done.stdout.split()[-1])
    estimate = decode_cost(path.read_bytes(), DecodeOptions(94, 125))[0]
    assert measured <= estimate <= 2 * measured + 16 * MEGABYTE, (measured / MEGABYTE, estimate / MEGABYTE)


# ---- the budget and its size ----------------------------------------------------------------------------

def test_the_budget_is_first_come_first_served_and_waits_briefly():
    budget = DecodeBudget(100, wait_s=0.2)
    assert budget.acquire(60) and not budget.acquire(50) and budget.acquire(40)
    assert not budget.acquire(101)  # can never fit: refused at once
    budget.release(60)
    order = []
    budget.wait_s = 5

    def take(name, amount):
        assert budget.acquire(amount)
        order.append(name)

    large = threading.Thread(target=take, args=("large", 70))  # 40 in use: does not fit yet
    large.start()
    wait_for(lambda: len(budget._queue) == 1)
    small = threading.Thread(target=take, args=("small", 10))  # would fit now, but comes second
    small.start()
    wait_for(lambda: len(budget._queue) == 2)
    assert order == []
    budget.release(40)
    large.join(5)
    small.join(5)
    assert order == ["large", "small"] and budget.in_use == 80


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_the_memory_limit_comes_from_cgroups_v1_and_v2(tmp_path):
    (tmp_path / "proc").write_text("0::/user.slice/app\n")
    (tmp_path / "user.slice" / "app").mkdir(parents=True)
    (tmp_path / "user.slice" / "app" / "memory.max").write_text("max\n")
    (tmp_path / "user.slice" / "memory.max").write_text(f"{3 * 2**30}\n")
    assert cgroup_memory_limit(str(tmp_path / "proc"), str(tmp_path)) == 3 * 2**30
    (tmp_path / "proc").write_text("4:memory:/docker/abc\n3:cpu:/docker/abc\n")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # unlimited
    assert cgroup_memory_limit(str(tmp_path / "proc"), str(tmp_path)) is None
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{2**30}\n")
    assert cgroup_memory_limit(str(tmp_path / "proc"), str(tmp_path)) == 2**30
    assert cgroup_memory_limit(str(tmp_path / "missing"), str(tmp_path)) is None


def test_the_default_budget_is_a_quarter_of_the_limit_at_most_2_gb(monkeypatch):
    size, source = limits.memory_limit()
    assert size > 0 and source in ("physical memory", "cgroup memory limit", "RLIMIT_AS")
    monkeypatch.setattr(limits, "memory_limit", lambda: (2 * 2**30, "cgroup memory limit"))
    assert ServeConfig(run="run").decode_memory_bytes == 512 * MEGABYTE
    monkeypatch.setattr(limits, "memory_limit", lambda: (64 * 2**30, "physical memory"))
    assert ServeConfig(run="run").decode_memory_bytes == limits.DECODE_MEMORY_CEILING
    assert ServeConfig(run="run", decode_memory_mb=300).decode_memory_bytes == 300 * MEGABYTE
    for bad in (0, -1, float("nan"), True, "1"):
        with pytest.raises(UserError, match="--decode-memory-mb"):
            ServeConfig(run="run", decode_memory_mb=bad)
