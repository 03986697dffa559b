"""The main job on a machine without the shared photos: `make run` fetches the public archive
(here from a local server on 127.0.0.1 serving a small archive of the same layout: Cat/ and Dog/
folders, numeric ids, a corrupt file) and reproduces on PetImages as it is, cat = 1 as in the
tutorial; offline it stops in one line naming DATA=."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cnnlab.cli import run as cli_run
from test_download import ArchiveServer, _closed_port, _petimages_zip

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--train", "3", "--val", "2", "--test", "1", "--epochs", "1", "--models", "conv1",
        "--modern", "", "--baselines", "majority", "--workers", "1"]


def test_reproduce_fetches_petimages_when_there_are_no_photos(shared_photos, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    with ArchiveServer(_petimages_zip(shared_photos, per_class=6)) as server:
        status = cli_run(["reproduce", "--download-to", str(tmp_path / "data"), "--url", server.url,
                          "--out", str(tmp_path / "reproduce"), *TINY])
    assert status == 0, capsys.readouterr().err[-2000:]
    results = json.loads((tmp_path / "reproduce" / "results.json").read_text())
    # Cat/666.jpg, the highest Cat id, is empty: the tutorial split skips it from validation
    # (its last ids) without replacing it, as the tutorial's own loading would have failed on it.
    assert results["images"] == {"train": 6, "val": 3, "test": 2}
    classes = json.loads((tmp_path / "reproduce" / "runs" / "conv1" / "classes.json").read_text())
    assert classes == ["Dog", "Cat"]  # dog = 0, cat = 1: the tutorial's labels on PetImages' folders
    report = json.loads((tmp_path / "reproduce" / "cache" / "prepare-report.json").read_text())
    assert any("666.jpg" in item["path"] for item in report["skipped"])  # the corrupt file, skipped and named


def test_offline_it_stops_in_one_line_naming_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    url = f"http://127.0.0.1:{_closed_port()}/kagglecatsanddogs_5340.zip"
    status = cli_run(["reproduce", "--download-to", str(tmp_path / "data"), "--url", url,
                      "--out", str(tmp_path / "reproduce"), *TINY])
    error = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in error and "DATA=" in error
    assert not (tmp_path / "reproduce").exists()


def test_make_run_fetches_only_without_photos():
    """The Makefile passes DATA when there is one and --download-to otherwise."""
    def dry_run(*assignments):
        # --no-print-directory: under another make (CI's `make test`), make announces directories.
        done = subprocess.run(["make", "--no-print-directory", "-n", "run", *assignments], cwd=REPOSITORY,
                              capture_output=True, text=True)
        return next(line for line in done.stdout.splitlines() if "cnnlab reproduce" in line)

    assert "--download-to data" in dry_run("DATA=", "CNNLAB_DATA=")
    with_photos = dry_run("DATA=/photos")
    assert '"/photos"' in with_photos and "--download-to" not in with_photos
