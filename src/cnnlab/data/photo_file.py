"""Which files cnnlab reads as photos, and how: no file may hang a command or exhaust its memory.

Every entry point (prepare, survey, predict, explain, filters) reads photos through here:
- Only regular files, after following symbolic links. The type is checked with os.stat
  BEFORE opening: opening a FIFO named x.jpg blocks until some writer appears, and a link to
  /dev/zero never ends. The file is then opened non-blocking and checked again on the open
  descriptor, so a file swapped for a FIFO or a device in between is still refused.
- At most MAX_PHOTO_BYTES per file, checked before a byte is read.
- The header is read first: a file that no image format recognises (no format's signature
  in its first bytes, and Pillow cannot open its first HEADER_BYTES) is refused without
  reading the rest.
- Links that loop or lead nowhere, files that vanish after they were listed, and files that
  cannot be read give a BadImage with a reason for the report, never another exception.

Paths: on Linux a file name is bytes, and names that are not UTF-8 reach Python as str with
surrogate escapes (b'cat.\\xff.jpg' -> 'cat.\\udcff.jpg'). Such a str opens the file, but it
cannot be encoded as UTF-8 for a hash, a CSV cell, a terminal or a Matplotlib title.
`path_bytes` gives the name's own bytes (for hashing); `printable_path` a str that is safe to
print or write anywhere, identical to the name when it is valid UTF-8, and with each
undecodable byte written as \\xNN otherwise.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

# Far above any photo a camera or phone writes (a 50-megapixel JPEG is ~25 MB), far below what
# would hurt: the whole file is held in memory while it is decoded.
MAX_PHOTO_BYTES = 64 * 1024 * 1024
# Pillow looks for a format's signature in a file's first 16 bytes (Image.open's prefix).
SIGNATURE_BYTES = 16
# Read before the rest: ample for the header of any format without a signature (TGA, ...).
HEADER_BYTES = 64 * 1024

_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


class BadImage(Exception):
    """A file that cannot be used as a photo; the message is the reason, for the report."""


def path_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a file name: UTF-8 for ordinary names, the original bytes for undecodable ones."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a file name
        return text.encode("utf-8", "surrogatepass")


def printable_path(path: str | os.PathLike) -> str:
    """A path as text safe for JSON, CSV, terminals and figures (undecodable bytes as \\xNN)."""
    return path_bytes(path).decode("utf-8", "backslashreplace")


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _open_error_reason(error: OSError, path) -> str:
    if error.errno == errno.ELOOP:
        return "symbolic link loop (the link never reaches a file)"
    if isinstance(error, FileNotFoundError):
        if os.path.islink(path):
            return "dangling symbolic link (its target does not exist)"
        return "file not found (it vanished after it was listed)"
    if isinstance(error, PermissionError):
        return "cannot read file (permission denied)"
    return f"cannot read file ({error.strerror or error})"


def _check_status(status: os.stat_result) -> int:
    """The size of a regular file that may be read as a photo; BadImage otherwise."""
    for is_kind, kind in _NOT_REGULAR:
        if is_kind(status.st_mode):
            raise BadImage(f"not a regular file ({kind})")
    if not stat.S_ISREG(status.st_mode):
        raise BadImage("not a regular file")
    if status.st_size > MAX_PHOTO_BYTES:
        raise BadImage(f"file too large ({_megabytes(status.st_size)}; a photo may be at most "
                       f"{_megabytes(MAX_PHOTO_BYTES)})")
    if status.st_size == 0:
        raise BadImage("empty file (0 bytes)")
    return status.st_size


def photo_size(path: str | os.PathLike) -> int:
    """The size in bytes of a file that may be read as a photo (os.stat only, nothing opened)."""
    try:
        return _check_status(os.stat(path))
    except OSError as error:
        raise BadImage(_open_error_reason(error, path)) from None


def _open_checked(path: str | os.PathLike) -> tuple[int, int]:
    """(a read-only descriptor, the file's size) after the checks above, made on the path and
    again on the file opened; the caller closes the descriptor."""
    photo_size(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise BadImage(_open_error_reason(error, path)) from None
    try:
        return descriptor, _check_status(os.fstat(descriptor))  # the file opened is the file checked
    except BaseException:
        os.close(descriptor)
        raise


def open_photo(path: str | os.PathLike) -> BinaryIO:
    """Open a photo file for reading, after the checks above; the caller closes it."""
    descriptor, _ = _open_checked(path)
    return os.fdopen(descriptor, "rb")


def read_head(path: str | os.PathLike, count: int) -> tuple[bytes, int]:
    """(the first `count` bytes, the file's size) of a photo file, after open_photo's checks.

    One descriptor and one read, no file object: `survey` calls this for every photo of a folder
    and needs only the header (benchmarks/cold_start.py)."""
    descriptor, size = _open_checked(path)
    try:
        return os.read(descriptor, count), size
    except OSError as error:
        raise BadImage(f"cannot read file ({error.strerror or error})") from None
    finally:
        os.close(descriptor)


def _has_signature(prefix: bytes) -> bool:
    """Whether a format with a signature (JPEG, PNG, GIF, WebP, TIFF, BMP, ...) claims `prefix`.

    The common formats' plugins (Pillow's preinit: BMP, GIF, JPEG, PPM, PNG) are asked first and
    every other plugin only when none of them claims it, as Image.open does: importing all of
    Pillow's plugins costs more than the rest of a one-photo `cnnlab predict` with ONNX Runtime."""
    Image.preinit()
    if _claimed(prefix):
        return True
    Image.init()
    return _claimed(prefix)


def _claimed(prefix: bytes) -> bool:
    for _, accept in list(Image.OPEN.values()):
        if accept is None:
            continue  # formats without a signature: tried by _header_opens
        try:
            verdict = accept(prefix)
        except Exception:  # a plugin's check choking on odd bytes: let Image.open decide
            return True
        if verdict and not isinstance(verdict, str):  # a str is Pillow's "known but unsupported"
            return True
    return False


def _header_opens(header: bytes) -> bool:
    """Whether Pillow opens these first bytes as an image (formats without a signature)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.open(io.BytesIO(header)).close()
    except UnidentifiedImageError:
        return False
    except Exception:  # recognised, but cut or odd: the full decode gives the reason
        return True
    return True


def recognised_format(header: bytes) -> bool:
    """Whether the first bytes of a file may start an image Pillow reads."""
    return _has_signature(header[:SIGNATURE_BYTES]) or _header_opens(header)


def read_photo(path: str | os.PathLike) -> bytes:
    """The whole file, read only after its type, size and first bytes passed; BadImage otherwise."""
    with open_photo(path) as handle:
        try:
            head = handle.read(HEADER_BYTES)
            if not recognised_format(head):
                raise BadImage("not an image (unrecognised format)")
            data = head + handle.read(MAX_PHOTO_BYTES + 1 - len(head))
        except OSError as error:
            raise BadImage(f"cannot read file ({error.strerror or error})") from None
    if len(data) > MAX_PHOTO_BYTES:  # it grew after it was checked
        raise BadImage(f"file too large (over {_megabytes(MAX_PHOTO_BYTES)}, the cap for a photo)")
    if not data:
        raise BadImage("empty file (0 bytes)")
    return data
