"""Helpers shared by the export and serving tests: a tiny trained run, a real uvicorn server on
127.0.0.1 in a background thread, and a plain standard-library HTTP client (no test client: the
requests go through a real socket, HTTP parser and event loop)."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from training_helpers import make_config, quiet_train


def train_tiny_run(cache_dir: Path, out: Path) -> Path:
    """One epoch of conv1 on the tiny cache, evaluated so that it has a validation threshold."""
    from cnnlab.training.evaluation import evaluate_run

    quiet_train(make_config(cache_dir, out, epochs=1))
    assert evaluate_run(out)["validation_threshold"] is not None
    return out


def cache_photos(cache_dir: Path) -> list[Path]:
    """The real photos the tiny cache was made from (cat.*.jpg then dog.*.jpg, by id)."""
    photos = cache_dir.parent / "photos"
    return sorted(photos.glob("*.jpg"), key=lambda path: (path.name.split(".")[0], int(path.name.split(".")[1])))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width x height pixels, followed by a tiny IDAT: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + chunk(b"IEND", b""))


# ---- a real server ------------------------------------------------------------------------------

class ServerThread:
    """uvicorn serving `app` on a socket bound to 127.0.0.1 on a free port, in a daemon thread."""

    def __init__(self, app, config):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(self.uvicorn_config(app, config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def uvicorn_config(self, app, config):
        """The uvicorn settings `cnnlab serve` uses, on this thread's port (the studio overrides it)."""
        from cnnlab.serve.server import uvicorn_config

        return uvicorn_config(app, config, log_level="warning", port=self.port)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


# ---- a small HTTP client --------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            chunked: bool = False, timeout: float = 60) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if chunked:
            connection.putrequest(method, path)
            for key, value in (headers or {}).items():
                connection.putheader(key, value)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            step = 64 * 1024
            for start in range(0, len(body), step):
                piece = body[start:start + step]
                connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            connection.send(b"0\r\n\r\n")
        else:
            connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {key.lower(): value for key, value in response.getheaders()}, response.read())
    finally:
        connection.close()


def multipart(files: list[tuple[str, bytes]], field: str = "photos") -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of (filename, bytes) pairs."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_photos(port: int, files: list[tuple[str, bytes]], path: str = "/predict", timeout: float = 60) -> Reply:
    body, content_type = multipart(files)
    return request(port, "POST", path, body, {"Content-Type": content_type}, timeout=timeout)
