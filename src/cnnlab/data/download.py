"""`cnnlab download`: fetch the public Dogs vs. Cats archive, check it, and unpack it safely.

The default is Microsoft's PetImages zip, the one Keras' "Image classification from scratch"
example downloads (`curl -O ...kagglecatsanddogs_5340.zip; unzip -q`): 786 MB, 12,500 photos
per class in PetImages/Cat and PetImages/Dog, a class-folder layout `cnnlab prepare` reads as
it is. The archive holds a few corrupt JPEGs and non-JPEG files; the Keras example deletes
files without a JFIF header, while `prepare` skips every file it cannot decode and lists it.

- Resumable: bytes go to DEST/<archive>.partial; a rerun asks for the rest with an HTTP Range
  request, and starts over cleanly when the server answers with the whole file instead. The
  partial file becomes the archive only once it is a complete zip: a server that hangs up
  without having said the file's length (no Content-Length) leaves a .partial, never an archive.
- Checked: SHA-256 against --sha256, else the known digest of the default archive, else the
  digest recorded beside the archive the first time (DEST/<archive>.sha256, sha256sum format).
  A mismatch deletes the archive before anything is extracted. A digest is recorded only after
  every member's CRC-32 was checked: a truncated or damaged archive is never trusted.
- Extracted by cnnlab.data.safe_zip (no traversal, no links, zip-bomb caps, atomic moves).
- Killable: one run at a time per archive and DEST (a lock), and each run first removes what a
  killed one left (temporary folders, half-moved entries), so a rerun ends with the same tree.
- Offline, it fails at once with one line that points at --data (photos already on disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.cache_io import replace_atomically
from cnnlab.data.fetch import display_arguments, fetch, partial_path  # noqa: F401 (partial_path: callers import it here)
from cnnlab.data.safe_zip import (ExtractLimits, check_integrity, extract_safely, finish_extraction,
                                  remove_interrupted)
from cnnlab.progress import Progress
from cnnlab.errors import UserError

try:
    import fcntl
except ImportError:
    fcntl = None

DEFAULT_URL = ("https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
               "kagglecatsanddogs_5340.zip")
# The digest gomlx's Dogs vs. Cats example pins for this URL (examples/dogsvscats/dogsvscats.go,
# DownloadChecksum, checked on every download there). Not recomputed here: this machine cannot
# fetch the archive. If Microsoft ever republishes it, check the new digest and pass --sha256.
KNOWN_SHA256 = {DEFAULT_URL: "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DownloadOptions:
    dest: Path = Path("data")
    url: str = DEFAULT_URL
    sha256: str | None = None  # pin: refuse any other archive
    timeout: float = 15.0  # seconds per connect or read; offline fails at once, not after minutes
    limits: ExtractLimits = ExtractLimits()
    show_progress: bool = True

    def expected_digest(self) -> tuple[str | None, str]:
        """The digest to require and where it comes from ('--sha256' or 'known')."""
        if self.sha256 is not None:
            digest = self.sha256.strip().lower()
            if not _HEX64.match(digest):
                raise UserError(f"--sha256 {self.sha256!r}: expected 64 hexadecimal digits")
            return digest, "--sha256"
        return KNOWN_SHA256.get(self.url), "known digest of this URL"


@dataclass
class DownloadResult:
    dest: Path
    archive: Path
    sha256: str
    check: str  # how the digest was checked, for the summary
    entries: list[str] = field(default_factory=list)  # top-level names extracted into dest
    downloaded_bytes: int = 0
    resumed_from: int = 0
    already_done: bool = False

    def data_folder(self) -> Path:
        """The folder to prepare: the class-folder root (PetImages) when the archive has one."""
        folders = [name for name in self.entries if (self.dest / name).is_dir()]
        return self.dest / folders[0] if len(folders) == 1 else self.dest

    def next_command(self) -> str:
        name = self.data_folder().name.lower() if self.data_folder() != self.dest else "photos"
        return f"cnnlab prepare {self.data_folder()} --out cache/{name}"

    def summary(self) -> str:
        if self.already_done:
            state = "already downloaded and extracted"
        elif self.resumed_from:
            state = f"resumed at {self.resumed_from / 1e6:.1f} MB, fetched {self.downloaded_bytes / 1e6:.1f} MB"
        else:
            state = f"fetched {self.downloaded_bytes / 1e6:.1f} MB"
        return (f"{self.archive}: {state}; SHA-256 {self.sha256} ({self.check}); "
                f"extracted {', '.join(self.entries) or 'nothing'} into {self.dest}")


def archive_name(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    return name if name and name not in (".", "..") else "download.zip"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_sidecar(sidecar: Path) -> str | None:
    try:
        fields = sidecar.read_text().split()
    except OSError:
        return None
    return fields[0] if fields and _HEX64.match(fields[0]) else None


def verify(archive: Path, expected: str | None, source: str, limits: ExtractLimits = ExtractLimits()) -> tuple[str, str]:
    """Check the archive's SHA-256; returns (digest, how it was checked). Deletes it on mismatch.

    The digest is recorded beside the archive only once every member passed its CRC-32 check, so
    a digest on disk always belongs to a complete, sound zip."""
    sidecar = archive.with_name(archive.name + ".sha256")
    recorded = _read_sidecar(sidecar)
    vouched = expected is not None or recorded is not None
    if expected is None and recorded is not None:
        expected, source = recorded, f"recorded in {sidecar.name}"
    digest = file_sha256(archive)
    if expected is not None and digest != expected:
        archive.unlink()
        fix = (f"if the file at this URL changed on purpose, also delete {sidecar}" if source.startswith("recorded")
               else "or pin a checked digest with --sha256")
        raise UserError(f"{archive.name}: SHA-256 {digest} is not the expected {expected} ({source}); "
                        f"deleted it, nothing was extracted. Run again to download afresh; {fix}")
    if recorded != digest:
        check_integrity(archive, limits)
        replace_atomically(sidecar, f"{digest}  {archive.name}\n".encode())
    if vouched:
        return digest, f"matches the {source}"
    return digest, f"no known digest for this URL; recorded in {sidecar.name}, pin it with --sha256 {digest}"


def download(options: DownloadOptions = DownloadOptions()) -> DownloadResult:
    """Fetch (or resume), verify and extract the archive into options.dest. UserError on failure."""
    expected, source = options.expected_digest()
    dest = Path(options.dest)
    prepare_destination(dest)
    archive = dest / archive_name(options.url)
    with _exclusive(dest, archive):
        return _download_locked(options, dest, archive, expected, source)


def _download_locked(options: DownloadOptions, dest: Path, archive: Path, expected: str | None,
                     source: str) -> DownloadResult:
    marker = archive.with_name(archive.name + ".extracted.json")
    done = _read_marker(marker)
    if done and (expected is None or done["sha256"] == expected) and all((dest / name).exists() for name in done["entries"]):
        finish_extraction(dest, archive.name)  # killed after recording, before dropping the journal
        _remove_stale_writes(dest, archive)
        return DownloadResult(dest, archive, done["sha256"], "checked when it was extracted", done["entries"],
                              already_done=True)
    remove_interrupted(dest, archive.name)
    _remove_stale_writes(dest, archive)
    fetched = resumed = 0
    if not archive.exists():
        fetched, resumed = fetch(options.url, archive, options.timeout, options.show_progress)
    _check_readable(archive)
    digest, check = verify(archive, expected, source, options.limits)
    marker.unlink(missing_ok=True)  # from here on a marker means: this extraction finished
    progress = Progress(_member_count(archive), f"extract {archive.name}", unit="file",
                        **display_arguments(options.show_progress))
    entries = extract_safely(archive, dest, options.limits, progress)
    progress.close()
    replace_atomically(marker, json.dumps({"url": options.url, "sha256": digest, "entries": entries}, indent=1).encode())
    finish_extraction(dest, archive.name)
    return DownloadResult(dest, archive, digest, check, entries, fetched, resumed)


def prepare_destination(dest: Path) -> None:
    """DEST as an existing folder; UserError naming it when it cannot be one."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except ValueError as error:  # a NUL character in the path
        raise UserError(f"--dest {str(dest)!r} is not a valid path ({error}); choose another folder") from None
    except FileExistsError:
        raise UserError(f"--dest {dest} is a file, not a folder; choose a folder (or move the file away)") from None
    except NotADirectoryError:
        blocker = next((parent for parent in dest.parents if parent.is_file()), dest.parent)
        raise UserError(f"--dest {dest}: {blocker} is a file, so no folder can be made under it; "
                        "choose another --dest") from None
    except OSError as error:
        raise UserError(f"--dest {dest}: cannot create this folder ({error.strerror or error}); "
                        "choose a folder you can write to") from None


@contextlib.contextmanager
def _exclusive(dest: Path, archive: Path):
    """One run per archive and DEST at a time; the lock dies with its process, even on SIGKILL."""
    lock_path = dest / f".{archive.name}.lock"
    if fcntl is None:  # Windows: no flock; one run at a time is then the user's to keep
        yield
        return
    for _ in range(3):
        try:
            handle = open(lock_path, "a+b")
        except OSError as error:
            raise UserError(f"--dest {dest}: cannot write there ({error.strerror or error}); "
                            "choose a folder you can write to") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UserError(f"{dest}: another `cnnlab download` of {archive.name} is running there (it holds "
                            f"{lock_path}); wait for it to finish") from None
        # The previous holder deletes the file as it finishes: the lock must be on the file now at that name.
        if os.path.exists(lock_path) and os.path.samestat(os.fstat(handle.fileno()), os.stat(lock_path)):
            break
        handle.close()
    else:
        raise UserError(f"{dest}: could not take the download lock {lock_path}; run the command again")
    with handle:
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # while still holding it: no leftover after a finished run


def _remove_stale_writes(dest: Path, archive: Path) -> None:
    """replace_atomically's temporaries for the digest and the marker, left by a killed run."""
    pattern = re.compile(rf"^\.{re.escape(archive.name)}\.(sha256|extracted\.json)\.\d+\.partial$")
    for path in dest.iterdir():
        if pattern.match(path.name) and path.is_file():
            path.unlink()


def _check_readable(archive: Path) -> None:
    """UserError saying exactly which files to delete when the archive on disk is no readable zip."""
    try:
        zipfile.ZipFile(archive).close()
    except (zipfile.BadZipFile, OSError) as error:
        sidecar = archive.with_name(archive.name + ".sha256")
        files = f"{archive} and {sidecar}" if sidecar.exists() else str(archive)
        raise UserError(f"{archive}: not a readable zip archive ({error}); delete {files} and run the same "
                        "command again to download it afresh") from None


def _member_count(archive: Path) -> int:
    """For the extraction progress bar; 0 when the file is no zip (extraction then says why)."""
    try:
        with zipfile.ZipFile(archive) as opened:
            return len(opened.infolist())
    except (zipfile.BadZipFile, OSError):
        return 0


def _read_marker(path: Path) -> dict | None:
    try:
        marker = json.loads(path.read_text())
        return marker if isinstance(marker.get("entries"), list) and marker.get("sha256") else None
    except (OSError, ValueError, AttributeError):
        return None
