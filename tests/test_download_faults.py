"""`cnnlab download` when things go wrong: damaged or unreadable archive members, a destination
that cannot be a folder, a server that cuts the transfer without saying how long the file is,
and a process killed (SIGKILL) at random points. Each fault is one line naming the file and the
fix, an incomplete archive is never trusted, and a rerun ends with the same tree and no leftovers."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cnnlab.cli import run
from cnnlab.data import safe_zip
from cnnlab.data.download import download, partial_path
from cnnlab.errors import UserError
from test_download import ArchiveServer, _options, _petimages_zip, _tiny_jpeg, _zip

REPOSITORY = Path(__file__).resolve().parents[1]


class StreamingServer:
    """Serves one payload without a Content-Length (the end of the body is the end of the
    connection, as HTTP/1.0 servers and some proxies do), optionally slowly, honouring Range;
    `cut_after` hangs up after that many body bytes of the first response."""

    def __init__(self, payload: bytes, name: str = "pets.zip", cut_after: int | None = None,
                 chunk: int = 64 * 1024, delay: float = 0.0):
        self.payload, self.name, self.cut_after, self.chunk, self.delay = payload, name, cut_after, chunk, delay
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                server.requests.append(dict(self.headers))
                start = 0
                requested = self.headers.get("Range")
                if requested:
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    if start >= len(server.payload):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/*")
                else:
                    self.send_response(200)
                self.end_headers()
                body = server.payload[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                try:
                    for offset in range(0, len(body), server.chunk):
                        self.wfile.write(body[offset:offset + server.chunk])
                        self.wfile.flush()
                        time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed: what these tests do on purpose

            def log_message(self, *arguments):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _data_offset(payload: bytes, member: str) -> int:
    """Where a member's compressed bytes start (after its local header)."""
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        info = archive.getinfo(member)
    name_length, extra_length = struct.unpack("<HH", payload[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length


def _with_compression_method(payload: bytes, member: str, method: int) -> bytes:
    """The archive with one member's compression method changed in both of its headers."""
    data = bytearray(payload)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        info = archive.getinfo(member)
    data[info.header_offset + 8:info.header_offset + 10] = struct.pack("<H", method)
    central = payload.index(b"PK\x01\x02")
    while payload[central + 46:central + 46 + len(member)] != member.encode():
        central = payload.index(b"PK\x01\x02", central + 4)
    data[central + 10:central + 12] = struct.pack("<H", method)
    return bytes(data)


def _one_line_cli_error(tmp_path, capsys, url: str, dest: Path | str | None = None) -> str:
    status = run(["download", "--dest", str(dest or tmp_path / "data"), "--url", url, "--timeout", "5"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    # stderr also carries the progress bar; the error itself is one line.
    lines = [line for line in err.strip().splitlines() if not line.startswith("download pets.zip")]
    assert len(lines) == 1 and lines[0].startswith("cnnlab download: error: "), err
    return lines[0]


def _dest_listing(tmp_path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "data").iterdir())


# ---- damaged and unreadable members ---------------------------------------------------------------

def test_corrupt_deflate_data_is_one_line_and_the_digest_is_not_trusted(tmp_path, capsys):
    member = "PetImages/Cat/1.jpg"
    payload = bytearray(_zip([("PetImages/Cat/0.jpg", _tiny_jpeg(0)), (member, b"cat " * 5000)]))
    payload[_data_offset(bytes(payload), member)] = 0xFF  # deflate block type 3: does not exist (zlib.error)
    with ArchiveServer(bytes(payload)) as server:
        line = _one_line_cli_error(tmp_path, capsys, server.url)
    archive = tmp_path / "data" / "pets.zip"
    assert member in line and str(archive) in line and "damaged" in line and "delete" in line
    assert not (tmp_path / "data" / "PetImages").exists()
    assert "pets.zip.sha256" not in _dest_listing(tmp_path)  # never record the digest of a broken archive
    assert not [name for name in _dest_listing(tmp_path) if name.startswith(".extracting")]


def test_a_deflate64_member_is_one_line_naming_it_and_the_fix(tmp_path, capsys):
    member = "PetImages/Dog/2.jpg"
    payload = _with_compression_method(_zip([("PetImages/Cat/0.jpg", _tiny_jpeg(0)), (member, _tiny_jpeg(2))]),
                                       member, 9)
    with ArchiveServer(payload) as server:
        line = _one_line_cli_error(tmp_path, capsys, server.url)
    assert member in line and "Deflate64" in line and "7z" in line and "pets.zip" in line
    assert not (tmp_path / "data" / "PetImages").exists()


def test_an_over_long_member_name_is_one_line_before_anything_is_written(tmp_path, capsys):
    member = "PetImages/Cat/" + "a" * 300 + ".jpg"
    payload = _zip([("PetImages/Cat/0.jpg", _tiny_jpeg(0)), (member, _tiny_jpeg(1))])
    with ArchiveServer(payload) as server:
        line = _one_line_cli_error(tmp_path, capsys, server.url)
    assert "a" * 40 in line and "pets.zip" in line and "too long" in line
    assert not (tmp_path / "data" / "PetImages").exists()
    assert not [name for name in _dest_listing(tmp_path) if name.startswith(".extracting")]


# ---- the destination --------------------------------------------------------------------------------

def test_a_dest_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "data").write_text("my notes")
    line = _one_line_cli_error(tmp_path, capsys, "http://127.0.0.1:9/pets.zip")
    assert str(tmp_path / "data") in line and "is a file" in line
    assert (tmp_path / "data").read_text() == "my notes"
    line = _one_line_cli_error(tmp_path, capsys, "http://127.0.0.1:9/pets.zip", tmp_path / "data" / "inner")
    assert str(tmp_path / "data") in line and "is a file" in line


def test_an_invalid_or_unwritable_dest_is_one_line(tmp_path, capsys, monkeypatch):
    line = _one_line_cli_error(tmp_path, capsys, "http://127.0.0.1:9/pets.zip", "bad\0name")
    assert "--dest" in line and "not a valid" in line
    real_mkdir = Path.mkdir

    def refused(self, *arguments, **keywords):
        if self == tmp_path / "locked" / "data":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *arguments, **keywords)

    monkeypatch.setattr(Path, "mkdir", refused)
    line = _one_line_cli_error(tmp_path, capsys, "http://127.0.0.1:9/pets.zip", tmp_path / "locked" / "data")
    assert str(tmp_path / "locked" / "data") in line and "Permission denied" in line and "--dest" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_dest_is_one_line(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data").chmod(0o500)
    try:
        line = _one_line_cli_error(tmp_path, capsys, "http://127.0.0.1:9/pets.zip")
    finally:
        (tmp_path / "data").chmod(0o700)
    assert str(tmp_path / "data") in line and "--dest" in line


# ---- incomplete transfers and archives -----------------------------------------------------------------

def test_a_cut_without_content_length_is_kept_as_partial_and_never_trusted(tmp_path):
    payload = _petimages_zip(per_class=20)
    cut = len(payload) // 2
    dest = tmp_path / "data"
    with StreamingServer(payload, cut_after=cut) as server:
        with pytest.raises(UserError, match="run the same command again") as refused:
            download(_options(tmp_path, server.url))
        assert str(partial_path(dest / "pets.zip")) in str(refused.value)
        assert _dest_listing(tmp_path) == ["pets.zip.partial"]  # no archive, no recorded digest
        assert partial_path(dest / "pets.zip").stat().st_size == cut
        result = download(_options(tmp_path, server.url))
    assert server.requests[-1].get("Range") == f"bytes={cut}-" and result.resumed_from == cut
    assert (dest / "pets.zip").read_bytes() == payload
    assert (dest / "pets.zip.sha256").read_text().split()[0] == hashlib.sha256(payload).hexdigest()
    assert (dest / "PetImages" / "Dog" / "3.jpg").is_file()


def test_a_page_that_is_no_zip_is_refused_and_not_kept(tmp_path):
    with StreamingServer(b"<html><body>Please log in</body></html>") as server:
        with pytest.raises(UserError, match="is not a zip archive") as refused:
            download(_options(tmp_path, server.url))
    assert "<html>" in str(refused.value) and "--url" in str(refused.value)
    assert _dest_listing(tmp_path) == []


def test_an_unreadable_archive_on_disk_says_which_files_to_delete(tmp_path, capsys):
    """What the old code left after a cut without Content-Length: a truncated archive and its
    digest recorded as trusted. Every rerun failed with 'not a readable zip' and no way out."""
    payload = _petimages_zip(per_class=4)
    dest = tmp_path / "data"
    dest.mkdir()
    truncated = payload[:len(payload) // 2]
    (dest / "pets.zip").write_bytes(truncated)
    (dest / "pets.zip.sha256").write_text(f"{hashlib.sha256(truncated).hexdigest()}  pets.zip\n")
    with ArchiveServer(payload) as server:
        line = _one_line_cli_error(tmp_path, capsys, server.url)
        assert f"delete {dest / 'pets.zip'} and {dest / 'pets.zip.sha256'}" in line
        (dest / "pets.zip").unlink()
        (dest / "pets.zip.sha256").unlink()
        assert run(["download", "--dest", str(dest), "--url", server.url]) == 0
    assert (dest / "pets.zip").read_bytes() == payload


# ---- interrupted runs -----------------------------------------------------------------------------------

def test_stale_leftovers_of_cnnlab_are_cleaned_and_others_kept(tmp_path):
    payload = _petimages_zip(per_class=3)
    dest = tmp_path / "data"
    (dest / ".extracting-pets.zip-k2j4_x1" / "PetImages").mkdir(parents=True)
    (dest / ".pets.zip.sha256.4242.partial").write_text("half a digest")
    (dest / ".extracting-someone-elses").mkdir()
    with ArchiveServer(payload) as server:
        download(_options(tmp_path, server.url))
    assert _dest_listing(tmp_path) == [".extracting-someone-elses", "PetImages", "pets.zip",
                                       "pets.zip.extracted.json", "pets.zip.sha256", "readme.txt"]


def test_an_extraction_interrupted_between_its_moves_is_redone(tmp_path, monkeypatch):
    payload = _petimages_zip(per_class=3)
    dest = tmp_path / "data"
    real_rename, renames = os.rename, []

    def dies_after_the_first_move(source, target):
        if renames:
            raise SystemExit("killed")  # as if the process died between two renames
        renames.append(target)
        real_rename(source, target)

    monkeypatch.setattr(safe_zip.os, "rename", dies_after_the_first_move)
    with ArchiveServer(payload) as server:
        with pytest.raises(SystemExit):
            download(_options(tmp_path, server.url))
        assert (dest / "PetImages").is_dir() and not (dest / "readme.txt").exists()
        monkeypatch.setattr(safe_zip.os, "rename", real_rename)
        result = download(_options(tmp_path, server.url))
    assert sorted(result.entries) == ["PetImages", "readme.txt"] and not result.already_done
    assert _tree(dest) == _tree_of_zip(payload, dest)


def _tree(folder: Path) -> dict[str, str]:
    """Every file under the extracted entries: relative path -> SHA-256."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith("pets.zip")}


def _tree_of_zip(payload: bytes, folder: Path) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return {name: hashlib.sha256(archive.read(name)).hexdigest() for name in sorted(archive.namelist())
                if not name.endswith("/")}


def _download_process(dest: Path, url: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src")}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", "download", "--dest", str(dest), "--url", url,
                             "--timeout", "10"], env=environment, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _kill(dest: Path, url: str, generator: random.Random, phase: str, longest: float) -> bool:
    """Start a download into dest and SIGKILL it a seeded random time (up to `longest` seconds)
    after it reached `phase`: "start", "transfer" (its .partial has bytes) or "extraction" (its
    temporary folder exists). True when it was killed, False when it had already finished."""
    process = _download_process(dest, url)
    reached = {"start": lambda: True,
               "transfer": lambda: partial_path(dest / "pets.zip").exists() and
               partial_path(dest / "pets.zip").stat().st_size > 0,
               "extraction": lambda: any(dest.glob(".extracting-*"))}[phase]
    deadline = time.monotonic() + 60
    while process.poll() is None and not _safely(reached) and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(generator.uniform(0, longest))
    running = process.poll() is None
    if running:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    return running


def _safely(check) -> bool:
    try:
        return check()
    except OSError:  # the file went away between the two looks
        return False


def _run_to_the_end(dest: Path, url: str) -> None:
    process = _download_process(dest, url)
    status = process.wait(timeout=120)
    errors = process.stderr.read()
    process.stderr.close()
    assert status == 0, errors


@pytest.mark.parametrize("seed", [7, pytest.param(17, marks=pytest.mark.slow)])  # a second seed in make test-slow
def test_sigkill_at_random_points_then_a_rerun_gives_the_same_tree_and_no_leftovers(tmp_path, seed):
    """A slow server (16 KB every 10 ms, no Content-Length) and 1,500 members (2.4 MB). Killed at a seeded
    random point of the transfer, then of the extraction, then anywhere in a whole run; the last
    run must end with the tree a clean run gives and nothing else in the folder."""
    noise = random.Random(0).randbytes(1500 * 1000)  # incompressible: 1.5 MB to transfer
    payload = _zip([(f"PetImages/{'Cat' if index % 2 else 'Dog'}/{index}.jpg",
                     _tiny_jpeg(index % 50) + noise[index * 1000:(index + 1) * 1000]) for index in range(1500)]
                   + [("readme.txt", b"test archive\n")])
    expected = _tree_of_zip(payload, tmp_path)
    generator = random.Random(seed)
    dest = tmp_path / "data"
    with StreamingServer(payload, chunk=16 * 1024, delay=0.01) as server:
        started = time.monotonic()
        _run_to_the_end(tmp_path / "reference", server.url)
        duration = time.monotonic() - started
        kills = [_kill(dest, server.url, generator, "transfer", 0.3),
                 _kill(dest, server.url, generator, "extraction", 0.1),
                 _kill(dest, server.url, generator, "start", duration)]
        _run_to_the_end(dest, server.url)
    assert _tree(tmp_path / "reference") == _tree(dest) == expected
    assert _dest_listing(tmp_path) == ["PetImages", "pets.zip", "pets.zip.extracted.json", "pets.zip.sha256",
                                       "readme.txt"]
    assert kills[:2] == [True, True]  # the transfer and the extraction were really interrupted
