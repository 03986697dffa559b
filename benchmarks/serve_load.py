"""Benchmark of `cnnlab serve`'s memory under bursts of worst-case uploads: for each format, N
concurrent requests each carrying the largest image the server accepts (just under the decoder's
40-megapixel cap, small on the wire), then the server's peak RSS (VmHWM, reset before each burst
through /proc/PID/clear_refs) and its RSS a few seconds after the burst, with the status codes
the clients got. Prints one JSON document on stdout; progress goes to stderr.

    .venv/bin/python benchmarks/serve_load.py [--run RUN] [--uploads 16] [--formats png16,jpeg,...]
    .venv/bin/python benchmarks/serve_load.py --quick      # CI smoke: 2,000 px images, 4 uploads

Without --run, a throwaway run (conv1, one epoch on 32 photos at the tutorial's 94x125) is trained
in a temporary folder first. The server is `cnnlab serve` in a subprocess on a free 127.0.0.1
port, started as users start it (so with the CLI's allocator settings). Answers other than 200
are expected under load (503 with Retry-After when the decode memory budget is full, 413 when one
image can never fit it); a 5xx other than 503 is a bug, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets" / "dogs-vs-cats" / "train"
sys.path.insert(0, str(REPO_ROOT / "src"))

WORST_SIDE = 6300  # 39.7 M pixels: under cnnlab.data.decode.MAX_PIXELS (40 M), as in issue 17
QUICK_SIDE = 2000
FORMATS = ("png16", "jpeg", "webp", "tiff", "png-rgba")
SETTLE_S = 3.0  # idle time before "after" is read: what the server keeps, not what it is freeing
GUARD_FREE_BYTES = 2 * 2**30  # the server is killed (and the run reported failed) below this much free memory


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def worst_case(kind: str, side: int) -> tuple[str, bytes]:
    """(file name, bytes) of a side x side image that costs the decoder most for its format and is
    small on the wire (smooth content compresses to a few hundred KB)."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 1, side, dtype=np.float32)
    buffer = io.BytesIO()
    if kind == "png16":  # 16-bit grey: decoded through float64 arrays (cnnlab.data.decode.to_rgb)
        Image.fromarray(np.tile((ramp * 65535).astype(np.uint16), (side, 1))).save(buffer, "PNG")
    elif kind == "jpeg":  # RGB; the decoder's JPEG draft makes it cheap when the run's input is small
        Image.new("RGB", (side, side), (120, 80, 40)).save(buffer, "JPEG", quality=50)
    elif kind == "webp":  # lossless RGBA: libwebp's buffer, then the transparency compositing
        Image.new("RGBA", (side, side), (120, 80, 40, 128)).save(buffer, "WEBP", lossless=True, quality=0)
    elif kind == "tiff":  # 32-bit float grey, deflate-compressed
        Image.new("F", (side, side), 128.0).save(buffer, "TIFF", compression="tiff_adobe_deflate")
    elif kind == "png-rgba":
        Image.new("RGBA", (side, side), (120, 80, 40, 128)).save(buffer, "PNG")
    else:
        raise SystemExit(f"serve_load.py: unknown format {kind!r}; choose from {', '.join(FORMATS)}")
    extension = {"png16": "png", "png-rgba": "png"}.get(kind, kind)
    return f"worst.{extension}", buffer.getvalue()


def throwaway_run(data: Path, root: Path) -> Path:
    from cnnlab.data.cache import PrepareOptions, prepare
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.data.splits import SplitOptions
    from cnnlab.runs import TrainConfig
    from cnnlab.training.trainer import train

    photos = root / "photos"
    photos.mkdir()
    for path in sorted(data.glob("*.jpg"))[::max(1, len(list(data.glob("*.jpg"))) // 32)][:32]:
        os.symlink(path, photos / path.name)
    prepare(photos, root / "cache", PrepareOptions(decode=DecodeOptions(), split=SplitOptions("stratified", val=8, test=8)),
            show_progress=False)
    train(TrainConfig(model="conv1", cache=str(root / "cache"), out=str(root / "run"), epochs=1, seed=0,
                      any_input_size=True),
          show_progress=False, stream=sys.stderr)
    return root / "run"


def memory(pid: int) -> dict:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def post(port: int, name: str, data: bytes) -> tuple[int, dict, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        return response.status, {key.lower(): value for key, value in response.getheaders()}, text
    except OSError as error:  # a reset connection counts as a failure, not a crash of the benchmark
        return 0, {}, f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def burst(port: int, pid: int, name: str, data: bytes, uploads: int) -> dict:
    reset = reset_peak(pid)
    before = memory(pid)["VmRSS"]
    answers: list[tuple[int, dict, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(uploads)

    def client():
        start.wait()
        answer = post(port, name, data)
        with lock:
            answers.append(answer)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    peak = memory(pid)["VmHWM"]
    time.sleep(SETTLE_S)
    after = memory(pid)["VmRSS"]
    statuses = Counter(status for status, _, _ in answers)
    unexpected = [text[:200] for status, _, text in answers if status not in (200, 413, 503)]
    not_json = sum(1 for status, headers, _ in answers if status in (413, 503)
                   and not headers.get("content-type", "").startswith("application/json"))
    no_retry_after = sum(1 for status, headers, _ in answers if status == 503 and "retry-after" not in headers)
    return {"upload_bytes": len(data), "uploads": uploads, "seconds": round(seconds, 2),
            "statuses": {str(code): count for code, count in sorted(statuses.items())},
            "rss_before_mb": round(before / 2**20), "peak_rss_mb": round(peak / 2**20) if reset else None,
            "rss_after_mb": round(after / 2**20), "unexpected_answers": unexpected[:3],
            "refusals_not_json": not_json, "503_without_retry_after": no_retry_after}


def available_memory() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 2**62


def guard(server: subprocess.Popen, stop: threading.Event, tripped: list) -> None:
    """Kill the server before it takes the machine down (the unbounded code reaches 1 GB per upload)."""
    while not stop.wait(0.1):
        if available_memory() < GUARD_FREE_BYTES and server.poll() is None:
            tripped.append(time.time())
            server.kill()


def start_server(run: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                                             os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    deadline = time.monotonic() + 180
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("cnnlab serve did not start") from None
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run folder (default: train a throwaway conv1)")
    parser.add_argument("--data", default=os.environ.get("CNNLAB_DATA", str(DEFAULT_DATA)), help="folder of photos")
    parser.add_argument("--uploads", type=int, help="concurrent requests per burst (default 16; --quick 4)")
    parser.add_argument("--side", type=int, help=f"image side in pixels (default {WORST_SIDE}; --quick {QUICK_SIDE})")
    parser.add_argument("--formats", help=f"comma-separated subset of {','.join(FORMATS)} (default all; --quick "
                                          "png16,jpeg)")
    parser.add_argument("--quick", action="store_true", help="smoke test: small images, few uploads")
    arguments = parser.parse_args()
    uploads = arguments.uploads or (4 if arguments.quick else 16)
    side = arguments.side or (QUICK_SIDE if arguments.quick else WORST_SIDE)
    formats = (arguments.formats or ("png16,jpeg" if arguments.quick else ",".join(FORMATS))).split(",")
    payloads = {}
    for kind in formats:
        log(f"making a {side}x{side} {kind}")
        payloads[kind] = worst_case(kind, side)
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as scratch:
        if arguments.run:
            run = Path(arguments.run)
        else:
            data = Path(arguments.data)
            if not any(data.glob("*.jpg")):
                sys.exit(f"serve_load.py: no .jpg photos in {data}; pass --data or --run")
            log("training a throwaway conv1")
            run = throwaway_run(data, Path(scratch))
        server, port = start_server(run)
        stop, tripped = threading.Event(), []
        threading.Thread(target=guard, args=(server, stop, tripped), daemon=True).start()
        try:
            idle = memory(server.pid)["VmRSS"]
            post(port, *payloads[formats[0]])  # warm-up: first calls build kernels and fill caches
            bursts = {}
            for kind in formats:
                log(f"burst: {uploads} x {kind} ({len(payloads[kind][1]) / 1e3:.0f} KB each)")
                bursts[kind] = burst(port, server.pid, *payloads[kind], uploads)
                log(json.dumps(bursts[kind]))
            final = memory(server.pid)
        finally:
            stop.set()
            server.terminate()
            server.wait(timeout=60)
    if tripped:
        sys.exit(f"serve_load.py: the machine fell under {GUARD_FREE_BYTES / 2**30:g} GB free, so the server was "
                 "killed; rerun with fewer --uploads or a smaller --side")
    bugs = sum(count for result in bursts.values() for code, count in result["statuses"].items()
               if code not in ("200", "413", "503"))
    print(json.dumps({
        "benchmark": "serve_load", "quick": arguments.quick, "side": side, "pixels": side * side,
        "cpu_count": os.cpu_count(), "idle_rss_mb": round(idle / 2**20),
        "bursts": bursts, "final_rss_mb": round(final["VmRSS"] / 2**20),
        "highest_peak_rss_mb": max((result["peak_rss_mb"] or 0) for result in bursts.values()),
        "answers_other_than_200_413_503": bugs,
    }, indent=2))
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
