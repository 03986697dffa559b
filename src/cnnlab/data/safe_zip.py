"""Extract a downloaded zip archive without trusting it.

Every member is checked before a byte is written: names that would land outside the folder
(absolute paths, `..`, Windows drive letters), symbolic links, devices and other special files,
encrypted members, duplicates, and zip bombs (too many members, too many bytes in all, or a
member that inflates far more than photos ever do) are refused with a one-line ValueError.
Extraction goes into a hidden temporary folder beside the destination and is moved into place
by renames, so an interrupted or refused extraction never leaves half a dataset behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from cnnlab.errors import UserError

_DRIVE = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExtractLimits:
    # PetImages holds ~25,000 members and ~800 MB; these leave generous room above that.
    max_members: int = 100_000
    max_total_bytes: int = 4 * 2**30
    # JPEGs barely compress (ratio ~1); text and Thumbs.db files a few times. 100 is far above
    # anything real; zip bombs reach 1,000 (deflate's maximum) per member.
    max_ratio: float = 100.0
    # Small members may compress well legitimately, and the total cap already bounds them.
    ratio_floor_bytes: int = 64 * 1024


def member_path(name: str) -> PurePosixPath:
    """The relative path a member may be written to; ValueError if it could escape the folder."""
    if "\x00" in name:
        raise UserError(f"unsafe archive: member name {name!r} contains a NUL character")
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or _DRIVE.match(normalized):
        raise UserError(f"unsafe archive: member {name!r} has an absolute path")
    parts = [part for part in normalized.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UserError(f"unsafe archive: member {name!r} points outside the folder (..)")
    if not parts:
        raise UserError(f"unsafe archive: member {name!r} has an empty name")
    return PurePosixPath(*parts)


def _check_kind(info: zipfile.ZipInfo) -> None:
    # Unix permission bits live in the high 16 bits; zips written on Windows leave them 0.
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise UserError(f"unsafe archive: member {info.filename!r} is a symbolic link")
    if mode and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UserError(f"unsafe archive: member {info.filename!r} is a special file (mode {oct(mode)})")
    if info.flag_bits & 0x1:
        raise UserError(f"unsafe archive: member {info.filename!r} is encrypted")


def check_members(infos: list[zipfile.ZipInfo], limits: ExtractLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Validate every member against the rules and limits; returns (member, relative path) pairs."""
    if len(infos) > limits.max_members:
        raise UserError(f"unsafe archive: {len(infos):,} members, more than the limit of {limits.max_members:,}")
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise UserError(f"unsafe archive: {total:,} bytes uncompressed, more than the limit of "
                         f"{limits.max_total_bytes:,}")
    checked, seen, files = [], set(), set()
    for info in infos:
        path = member_path(info.filename)
        _check_kind(info)
        if path in seen:
            raise UserError(f"unsafe archive: member {info.filename!r} appears twice")
        seen.add(path)
        if not info.is_dir():
            files.add(path)
            if info.file_size > limits.ratio_floor_bytes:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_ratio:
                    raise UserError(f"unsafe archive: member {info.filename!r} inflates {ratio:,.0f} times "
                                     f"(limit {limits.max_ratio:g}); a zip bomb?")
        checked.append((info, path))
    for path in seen:
        clash = next((parent for parent in path.parents if parent in files), None)
        if clash is not None:
            raise UserError(f"unsafe archive: {clash} is both a file and a folder")
    return checked


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one member, counting what is really written (declared sizes are not trusted)."""
    written = 0
    with archive.open(info) as source, open(target, "xb") as output:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise UserError(f"unsafe archive: member {info.filename!r} inflates beyond its declared size")
            output.write(chunk)
    return written


def extract_safely(archive_path: str | os.PathLike, destination: str | os.PathLike,
                   limits: ExtractLimits = ExtractLimits(), progress=None) -> list[str]:
    """Extract into `destination`, returning the archive's top-level names (now in place).

    Refuses (ValueError) before writing when any member is unsafe, and when a top-level entry
    already exists in `destination` (nothing is overwritten).
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{archive_path}: not a readable zip archive ({error})") from None
    with archive:
        members = check_members(archive.infolist(), limits)
        top_level = sorted({path.parts[0] for _, path in members})
        existing = [name for name in top_level if (destination / name).exists()]
        if existing:
            raise UserError(f"{destination}: {', '.join(existing)} already exists; remove it or choose another --dest")
        # Same file system as the destination, so the final moves are renames, not copies.
        temporary = Path(tempfile.mkdtemp(prefix=".extracting-", dir=destination))
        try:
            budget = limits.max_total_bytes
            for info, path in members:
                target = temporary.joinpath(*path.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    budget -= _copy_member(archive, info, target, budget)
                if progress is not None:
                    progress.update()
            for name in top_level:
                os.rename(temporary / name, destination / name)
        except (zipfile.BadZipFile, EOFError) as error:
            raise UserError(f"{archive_path}: damaged archive ({error}); delete it and download again") from None
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return top_level
