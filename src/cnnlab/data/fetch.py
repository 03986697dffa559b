"""The HTTP transfer behind `cnnlab download`: resumable, with a progress bar in MB.

Bytes go to ARCHIVE.partial; a rerun asks for the rest with an HTTP Range request and starts
over cleanly when the server answers with the whole file instead. The partial file is renamed
to the archive only once it is a complete zip (its central directory reads): without a
Content-Length, a connection cut mid-file looks like a finished download to the client.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from cnnlab.version import __version__
from cnnlab.errors import UserError
from cnnlab.progress import Progress

_CHUNK = 1 << 20


class ByteProgress(Progress):
    """The shared progress display, counting bytes (shown as MB) and the rate of this run's bytes only."""

    def __init__(self, total: int, description: str, already: int = 0, **kwargs):
        super().__init__(total, description, unit="B", initial=already, unit_scale=True, **kwargs)
        self.already = already


def partial_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".partial")


def _offline(url: str, reason) -> UserError:
    host = urllib.parse.urlparse(url).netloc or url
    text = str(getattr(reason, "reason", reason)).splitlines()[0] if str(reason) else type(reason).__name__
    return UserError(f"cannot reach {host} ({text}); offline? Use photos already on disk instead: "
                      f"cnnlab prepare --data FOLDER --out CACHE")


def _content_range_start(header: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header or "")
    return int(match.group(1)) if match else None


def fetch(url: str, archive: Path, timeout: float, show_progress: bool = True) -> tuple[int, int]:
    """Download `url` to `archive` through its .partial file; returns (bytes fetched, resumed from)."""
    partial = partial_path(archive)
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"cnnlab/{__version__}"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the partial file is no prefix of what the server has
            partial.unlink()
            return fetch(url, archive, timeout, show_progress)
        raise UserError(f"{url}: the server answered {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _offline(url, error) from None
    with response:
        resumed = start and response.status == 206 and _content_range_start(response.headers.get("Content-Range")) == start
        if not resumed:
            start = 0  # the server ignored the Range request: start over rather than append a second copy
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else 0
        progress = ByteProgress(total, f"download {archive.name}", already=start, **display_arguments(show_progress))
        fetched = 0
        try:
            output = open(partial, "ab" if resumed else "wb")
        except OSError as error:
            raise UserError(f"cannot write {partial} ({error.strerror or error}); choose another --dest") from None
        with output:
            while True:
                try:
                    # read1: what has arrived, up to a chunk; read() would wait for a whole MB, and
                    # a kill or a cut then loses it instead of keeping it in .partial for the resume.
                    chunk = response.read1(_CHUNK)
                except (OSError, http.client.HTTPException) as error:  # a dropped connection or a stalled read
                    raise UserError(f"download of {url} stopped after {(start + fetched) / 1e6:.1f} MB ({error}); "
                                    "run the same command again to resume") from None
                if not chunk:
                    break
                try:
                    output.write(chunk)
                except OSError as error:  # a full disk: what is written so far stays, for the resume
                    raise UserError(f"cannot write {partial} ({error.strerror or error}); free some space and run "
                                    "the same command again to resume") from None
                fetched += len(chunk)
                progress.update(len(chunk))
        progress.close()
    size = partial.stat().st_size
    if total and size != total:
        raise UserError(f"download of {url} ended at {size:,} of {total:,} bytes; run the same command again to resume")
    _check_complete(url, partial, length_known=bool(total))
    os.replace(partial, archive)
    return fetched, start


def _check_complete(url: str, partial: Path, length_known: bool) -> None:
    """The downloaded bytes end in a zip's central directory; else UserError saying what to do.

    Without a Content-Length, the end of the connection is the only end of file a client sees,
    and a cut looks like a finished download: only the zip itself can tell."""
    with open(partial, "rb") as handle:
        head = handle.read(40)
    if not head.startswith(b"PK"):  # a local header (PK 3 4), or the end record of an empty zip (PK 5 6)
        partial.unlink()
        raise UserError(f"{url} is not a zip archive (it starts with {head.decode('utf-8', 'replace')!r}); "
                        "check --url (a login or error page?)")
    try:
        zipfile.ZipFile(partial).close()
    except (zipfile.BadZipFile, OSError) as error:
        size = partial.stat().st_size
        if length_known:  # all the bytes the server announced arrived: the file is broken at the source
            partial.unlink()
            raise UserError(f"{url}: the server sent a damaged zip ({size:,} bytes, {error}); nothing was kept, "
                            "try again later or check --url") from None
        raise UserError(f"download of {url} ended after {size:,} bytes without the server saying how long the file "
                        f"is, and it is not a complete zip; kept as {partial}: run the same command again to resume, "
                        "or delete it to start over") from None


def display_arguments(show: bool) -> dict:
    """Progress arguments: the default display, or none at all (library calls and tests)."""
    return {} if show else {"stream": _SILENT, "live": False}


class _Silent:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


_SILENT = _Silent()


