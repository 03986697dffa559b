"""`cnnlab download`: fetch from a local HTTP server (with Range support written here), resume,
verify, extract safely, and hand over to `prepare`; refuse bad checksums and unsafe archives;
fail in one line when offline."""

from __future__ import annotations

import hashlib
import io
import socket
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from cnnlab.cli import run
from cnnlab.data.cache import PrepareOptions, prepare
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.download import DownloadOptions, download, partial_path
from cnnlab.data.reader import open_cache
from cnnlab.data.safe_zip import ExtractLimits
from cnnlab.data.splits import SplitOptions
from conftest import real_photos


class ArchiveServer:
    """Serves one payload at /<name>; honours `Range: bytes=N-` unless told to ignore it."""

    def __init__(self, payload: bytes, name: str = "pets.zip", honour_range: bool = True, cut_after: int | None = None):
        self.payload, self.name, self.honour_range = payload, name, honour_range
        self.cut_after = cut_after  # send only this many body bytes of the first response, then hang up
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(dict(self.headers))
                if self.path != f"/{server.name}":
                    self.send_error(404)
                    return
                body, status = server.payload, 200
                requested = self.headers.get("Range")
                if requested and server.honour_range:
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    status, body = 206, body[start:]
                    self.send_response(status)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                else:
                    self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *arguments):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _tiny_jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (seed * 40 % 256, 90, 200 - seed * 20 % 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def _petimages_zip(shared_photos=None, per_class: int = 6) -> bytes:
    """A small PetImages-shaped archive: Cat/ and Dog/ photos, one empty JPEG, a Thumbs.db."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", "test archive\n")
        if shared_photos is not None:
            for path in real_photos(shared_photos, per_class):
                folder = "Cat" if path.name.startswith("cat") else "Dog"
                archive.write(path, f"PetImages/{folder}/{path.name.split('.')[1]}.jpg")
        else:
            for index in range(per_class):
                archive.writestr(f"PetImages/Cat/{index}.jpg", _tiny_jpeg(index))
                archive.writestr(f"PetImages/Dog/{index}.jpg", _tiny_jpeg(index + 3))
        archive.writestr("PetImages/Cat/666.jpg", b"")
        archive.writestr("PetImages/Dog/Thumbs.db", b"\0" * 512)
    return buffer.getvalue()


def _zip(members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info_or_name, data in members:
            archive.writestr(info_or_name, data)
    return buffer.getvalue()


def _options(tmp_path, url, **kwargs) -> DownloadOptions:
    return DownloadOptions(dest=tmp_path / "data", url=url, timeout=5, show_progress=False, **kwargs)


def test_download_verifies_extracts_and_prepare_reads_it(shared_photos, tmp_path):
    payload = _petimages_zip(shared_photos)
    digest = hashlib.sha256(payload).hexdigest()
    with ArchiveServer(payload) as server:
        result = download(_options(tmp_path, server.url, sha256=digest.upper()))
    dest = tmp_path / "data"
    assert result.sha256 == digest and result.downloaded_bytes == len(payload)
    assert (dest / "pets.zip").read_bytes() == payload
    assert (dest / "pets.zip.sha256").read_text().split()[0] == digest
    assert sorted(result.entries) == ["PetImages", "readme.txt"]
    assert result.data_folder() == dest / "PetImages"
    assert result.next_command() == f"cnnlab prepare {dest / 'PetImages'} --out cache/petimages"
    assert not list(dest.glob(".extracting-*")) and not partial_path(dest / "pets.zip").exists()

    options = PrepareOptions(decode=DecodeOptions(16, 12), split=SplitOptions("stratified", val=2, test=2), workers=1)
    prepared = prepare(result.data_folder(), tmp_path / "cache", options, show_progress=False)
    skipped = {item["path"] for item in prepared.skipped}
    assert skipped == {"Cat/666.jpg", "Dog/Thumbs.db"}
    cache = open_cache(tmp_path / "cache")
    assert cache.images.shape[0] == 12 and sorted(cache.classes) == ["Cat", "Dog"]

    # A second run finds everything in place and fetches nothing.
    again = download(_options(tmp_path, "http://127.0.0.1:9/pets.zip"))
    assert again.already_done and again.sha256 == digest


def test_a_partial_download_is_resumed_with_a_range_request(tmp_path):
    payload = _petimages_zip(per_class=20)
    dest = tmp_path / "data"
    dest.mkdir()
    half = len(payload) // 2
    partial_path(dest / "pets.zip").write_bytes(payload[:half])
    with ArchiveServer(payload) as server:
        result = download(_options(tmp_path, server.url))
    assert server.requests[0].get("Range") == f"bytes={half}-"
    assert result.resumed_from == half and result.downloaded_bytes == len(payload) - half
    assert (dest / "pets.zip").read_bytes() == payload
    # No digest was known or pinned: the computed one is reported and stored for later runs.
    assert "pin it with --sha256" in result.check
    assert (dest / "pets.zip.sha256").read_text().split()[0] == hashlib.sha256(payload).hexdigest()
    assert (dest / "PetImages" / "Cat" / "3.jpg").is_file()


def test_a_cut_connection_keeps_the_partial_and_the_next_run_resumes(tmp_path):
    payload = _petimages_zip(per_class=20)
    cut = len(payload) // 3
    with ArchiveServer(payload, cut_after=cut) as server:
        with pytest.raises(ValueError, match="run the same command again to resume"):
            download(_options(tmp_path, server.url))
        assert partial_path(tmp_path / "data" / "pets.zip").stat().st_size == cut
        assert not (tmp_path / "data" / "PetImages").exists()
        result = download(_options(tmp_path, server.url))
    assert server.requests[-1].get("Range") == f"bytes={cut}-" and result.resumed_from == cut
    assert (tmp_path / "data" / "pets.zip").read_bytes() == payload


def test_a_partial_the_server_cannot_continue_is_restarted(tmp_path):
    payload = _petimages_zip(per_class=2)
    dest = tmp_path / "data"
    dest.mkdir()
    partial_path(dest / "pets.zip").write_bytes(payload + b"extra")  # longer than the file: 416
    with ArchiveServer(payload) as server:
        result = download(_options(tmp_path, server.url))
    assert [request.get("Range") for request in server.requests] == [f"bytes={len(payload) + 5}-", None]
    assert result.resumed_from == 0 and (dest / "pets.zip").read_bytes() == payload


def test_a_server_that_ignores_range_gives_a_clean_restart(tmp_path):
    payload = _petimages_zip(per_class=4)
    dest = tmp_path / "data"
    dest.mkdir()
    partial_path(dest / "pets.zip").write_bytes(payload[:100])
    with ArchiveServer(payload, honour_range=False) as server:
        result = download(_options(tmp_path, server.url))
    assert server.requests[0].get("Range") == "bytes=100-"
    assert result.resumed_from == 0 and (dest / "pets.zip").read_bytes() == payload


def test_a_wrong_checksum_is_refused_and_nothing_is_extracted(tmp_path):
    payload = _petimages_zip(per_class=3)
    with ArchiveServer(payload) as server:
        with pytest.raises(ValueError, match="SHA-256 .* is not the expected"):
            download(_options(tmp_path, server.url, sha256="0" * 64))
    dest = tmp_path / "data"
    assert sorted(path.name for path in dest.iterdir()) == []  # archive deleted, nothing extracted
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download(_options(tmp_path, "http://127.0.0.1:9/pets.zip", sha256="abc"))


def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("PetImages/Cat/link.jpg")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("members, limits, message", [
    ([("PetImages/Cat/1.jpg", _tiny_jpeg(1)), ("../evil.txt", b"x")], ExtractLimits(), "outside the folder"),
    ([("PetImages/Cat/1.jpg", _tiny_jpeg(1)), ("/abs.txt", b"x")], ExtractLimits(), "absolute path"),
    ([("C:/windows.txt", b"x")], ExtractLimits(), "absolute path"),
    ([("PetImages/Cat/1.jpg", _tiny_jpeg(1)), (_symlink_member(), "/etc/passwd")], ExtractLimits(), "symbolic link"),
    ([("zeros.bin", b"\0" * 50_000_000)], ExtractLimits(), "inflates"),
    ([(f"PetImages/Cat/{index}.jpg", b"x") for index in range(30)], ExtractLimits(max_members=20), "30 members"),
    ([("big.bin", bytes(range(256)) * 4000)], ExtractLimits(max_total_bytes=1_000_000), "bytes uncompressed"),
])
def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path, members, limits, message):
    payload = _zip(members)
    with ArchiveServer(payload) as server:
        with pytest.raises(ValueError, match=message):
            download(_options(tmp_path, server.url, limits=limits))
    dest = tmp_path / "data"
    assert sorted(path.name for path in dest.iterdir()) == ["pets.zip", "pets.zip.sha256"]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_an_existing_folder_is_never_overwritten(tmp_path):
    payload = _petimages_zip(per_class=2)
    (tmp_path / "data" / "PetImages").mkdir(parents=True)
    with ArchiveServer(payload) as server:
        with pytest.raises(ValueError, match="PetImages already exists"):
            download(_options(tmp_path, server.url))
    assert list((tmp_path / "data" / "PetImages").iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_is_one_line_naming_data_and_exit_status_2(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/kagglecatsanddogs_5340.zip"
    status = run(["download", "--dest", str(tmp_path / "data"), "--url", url, "--timeout", "3"])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "--data" in lines[0] and "Traceback" not in captured.err
    assert lines[0].startswith("cnnlab download: error: cannot reach 127.0.0.1")


def test_the_cli_prints_the_next_command(tmp_path, capsys):
    payload = _petimages_zip(per_class=2)
    with ArchiveServer(payload) as server:
        status = run(["download", "--dest", str(tmp_path / "data"), "--url", server.url])
    out = capsys.readouterr().out
    assert status == 0
    assert f"next: cnnlab prepare {tmp_path / 'data' / 'PetImages'} --out cache/petimages" in out
    assert "corrupt" in out
