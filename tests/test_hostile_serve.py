"""Every hostile kind of photo that can travel as bytes (tests/hostile_files.py) uploaded to
`cnnlab serve`: a valid odd format gets the library's label, a bad file a 4xx JSON answer
naming why; never a 5xx, and the server stays healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.serve.config import ServeConfig
from hostile_files import KINDS
from serving_helpers import ServerThread, post_photos, request, train_tiny_run

# Kinds that are files with contents; links, FIFOs and vanishing files cannot be uploaded.
UPLOADABLE = sorted(name for name in KINDS if name not in
                    {"symlink_loop", "dangling_symlink", "symlink_to_dev_zero", "fifo", "vanishing"})


@pytest.fixture(scope="module")
def server(tiny_cache, tmp_path_factory):
    from cnnlab.serve.server import build_app

    run = train_tiny_run(tiny_cache, tmp_path_factory.mktemp("hostile-serve") / "conv1")
    config = ServeConfig(run=str(run), port=0, max_upload_mb=8, max_photos=4)
    app, _ = build_app(config)
    with ServerThread(app, config) as running:
        yield running.port


@pytest.mark.parametrize("name", UPLOADABLE)
def test_upload(server, name, tmp_path):
    kind = KINDS[name]
    path = Path(kind.write(tmp_path))
    reply = post_photos(server, [(path.name.encode("utf-8", "surrogateescape").decode("latin-1"), path.read_bytes())])
    assert reply.status < 500, reply.body[:300]
    assert reply.headers["content-type"].startswith("application/json")
    row = reply.json()["results"][0]
    if kind.valid:
        assert reply.status == 200 and row["error"] is None and row["label"] in ("cat", "dog"), (name, row)
    else:
        assert 400 <= reply.status < 500 and row["label"] is None and row["error"], (name, row)
    assert request(server, "GET", "/health").status == 200
