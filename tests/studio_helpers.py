"""Helpers for the studio's tests: a real uvicorn serving the studio on 127.0.0.1 in a thread,
a tiny photo folder, and JSON requests through serving_helpers' standard-library client."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

from conftest import real_photos
from serving_helpers import ServerThread, request

WRITE = {"X-Studio": "1"}


def tiny_photos(source: Path, destination: Path, per_class: int) -> Path:
    """A Kaggle-layout folder of copies of the first `per_class` real photos of each class."""
    destination.mkdir(parents=True)
    for path in real_photos(source, per_class):
        shutil.copy(path, destination / path.name)
    return destination


class StudioServer(ServerThread):
    """uvicorn serving the studio's `app` on 127.0.0.1 on a free port, in a daemon thread."""

    def uvicorn_config(self, app, config):
        from cnnlab.studio.server import uvicorn_config

        return uvicorn_config(app, config, port=self.port, timeout_graceful_shutdown=1)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- requests ------------------------------------------------------------------------

    def get(self, path: str, headers: dict | None = None, timeout: float = 120):
        return request(self.port, "GET", path, headers=headers, timeout=timeout)

    def post(self, path: str, value=None, headers: dict | None = None, timeout: float = 120):
        body = json.dumps(value).encode() if value is not None else b""
        return request(self.port, "POST", path, body, {"Content-Type": "application/json", **WRITE, **(headers or {})},
                       timeout=timeout)


def read_events(port: int, path: str, until, timeout: float = 120) -> list[dict]:
    """The server-sent events of `path`, read from a raw socket until `until(events)` is true."""
    deadline = time.monotonic() + timeout
    events, buffer = [], b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        while time.monotonic() < deadline:
            chunk = connection.recv(65536)
            if not chunk:
                break
            buffer += chunk
            before = len(events)
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        events.append(json.loads(line[len(b"data: "):]))
            if len(events) > before and until(events):
                return events
    raise AssertionError(f"the event stream did not show what was awaited in {timeout} s; last: {events[-1:]}")
