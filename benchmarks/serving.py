"""Benchmark of using a trained run: single-photo latency through `cnnlab serve`'s HTTP API, and
batch images/s of the library path behind `cnnlab predict` beside plain `model.predict` on the
same photos. Prints one JSON document on stdout; progress goes to stderr.

    .venv/bin/python benchmarks/serving.py [--run RUN] [--data DIR] [--requests N] [--photos N]

Without --run, a throwaway tutorial-size run (conv1, one epoch on 128 photos) is trained in a
temporary folder first: only speed is measured, not accuracy. The server is `cnnlab serve` in a
subprocess on a free 127.0.0.1 port, so client and server do not share an interpreter; each
request is one photo's bytes (multipart), sent one after another on a new connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets" / "dogs-vs-cats" / "train"
sys.path.insert(0, str(REPO_ROOT / "src"))


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def photos_in(folder: Path, count: int) -> list[Path]:
    paths = sorted(folder.glob("*.jpg"), key=lambda path: path.name)
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def throwaway_run(data: Path, root: Path) -> Path:
    from cnnlab.data.cache import PrepareOptions, prepare
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.data.splits import SplitOptions
    from cnnlab.runs import TrainConfig
    from cnnlab.training.trainer import train

    photos = root / "photos"
    photos.mkdir()
    for path in photos_in(data, 128):
        os.symlink(path, photos / path.name)
    prepare(photos, root / "cache", PrepareOptions(decode=DecodeOptions(), split=SplitOptions("stratified", val=16,
                                                                                              test=16)),
            show_progress=False)
    train(TrainConfig(model="conv1", cache=str(root / "cache"), out=str(root / "run"), epochs=1, seed=0, any_input_size=True),
          show_progress=False, stream=sys.stderr)
    return root / "run"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def post_photo(port: int, name: str, data: bytes) -> float:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{name}: HTTP {response.status}")
    return elapsed


def http_latency(run: Path, photos: list[Path], requests: int) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                                             os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("cnnlab serve did not start") from None
                time.sleep(0.2)
        payloads = [(path.name, path.read_bytes()) for path in photos]
        for name, data in payloads[:5]:
            post_photo(port, name, data)  # warm-up: first calls build kernels and fill caches
        times = [post_photo(port, *payloads[index % len(payloads)]) for index in range(requests)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"requests": requests, "p50_ms": round(1000 * percentile(times, 0.5), 2),
            "p95_ms": round(1000 * percentile(times, 0.95), 2), "mean_ms": round(1000 * statistics.mean(times), 2),
            "requests_per_s_sequential": round(requests / sum(times), 1)}


def batch_throughput(run: Path, photos: list[Path], rounds: int) -> dict:
    import numpy as np

    import cnnlab
    from cnnlab.data.decode import decode_file
    from cnnlab.training.batches import to_model_input

    classifier = cnnlab.load(run)
    paths = [str(path) for path in photos]
    pixels = np.stack([decode_file(path, classifier.options)[0] for path in paths])
    inputs = to_model_input(pixels, classifier.pixel_scale)
    classifier.predict(paths[:64])
    classifier.model.predict(inputs[:64], batch_size=64, verbose=0)
    library, plain = [], []
    for _ in range(rounds):  # interleaved, so both see the same background load
        started = time.perf_counter()
        classifier.predict(paths, batch_size=64)
        library.append(len(paths) / (time.perf_counter() - started))
        started = time.perf_counter()
        classifier.model.predict(inputs, batch_size=64, verbose=0)
        plain.append(len(paths) / (time.perf_counter() - started))
    return {"photos": len(paths), "batch_size": 64, "rounds": rounds,
            "library_predict_images_per_s": round(statistics.median(library), 1),
            "library_predict_includes": "reading, decoding (draft, resize), scaling, forward pass, rows",
            "plain_model_predict_images_per_s": round(statistics.median(plain), 1),
            "plain_model_predict_includes": "forward pass on already decoded, scaled arrays (keras model.predict)"}


def main() -> None:
    from cnnlab.runs import Run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run folder (default: train a throwaway tutorial-size conv1)")
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA", str(DEFAULT_DATA)), help="folder of photos")
    parser.add_argument("--requests", type=int, default=100, help="timed single-photo HTTP requests (default 100)")
    parser.add_argument("--photos", type=int, default=512, help="photos in the batch comparison (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the batch comparison (default 3)")
    arguments = parser.parse_args()
    data = Path(arguments.data)
    photos = photos_in(data, arguments.photos)
    if not photos:
        sys.exit(f"serving.py: no .jpg photos in {data}; pass --data")
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as scratch:
        run = Path(arguments.run) if arguments.run else throwaway_run(data, Path(scratch))
        log(f"run {run}; HTTP latency over {arguments.requests} requests")
        latency = http_latency(run, photos, arguments.requests)
        log(f"batch throughput on {len(photos)} photos")
        throughput = batch_throughput(run, photos, arguments.rounds)
        config = Run(run).config
    import keras
    import torch

    print(json.dumps({
        "benchmark": "serving",
        "machine": {"cpu_count": os.cpu_count(), "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "keras": keras.__version__, "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "run": {"model": config["train"]["model"], "input": config["input_shape"],
                "parameters": config.get("parameters")},
        "http_single_photo_latency": latency,
        "batch": throughput,
    }, indent=2))


if __name__ == "__main__":
    main()
