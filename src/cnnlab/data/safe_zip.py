"""Extract a downloaded zip archive without trusting it.

Every member is checked before a byte is written: names that would land outside the folder
(absolute paths, `..`, Windows drive letters), symbolic links, devices and other special files,
encrypted members, duplicates, and zip bombs (too many members, too many bytes in all, or a
member that inflates far more than photos ever do) are refused with a one-line ValueError.
Extraction goes into a hidden temporary folder beside the destination and is moved into place
by renames, so an interrupted or refused extraction never leaves half a dataset behind. Such a
folder is named `.extracting-<archive>-*` and a journal lists the entries being moved, so that
the next run can remove what a killed process (SIGKILL, power loss) left and start again.

Archives that cannot be read (damaged deflate data, a CRC mismatch, a compression method
Python's zipfile lacks such as Deflate64, names longer than the file system allows) are one-line
UserErrors naming the archive, the member and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from cnnlab.errors import UserError

_DRIVE = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 1 << 20
EXTRACTING_PREFIX = ".extracting-"
# Methods Python's zipfile can inflate; Deflate64 (9) is what Windows' Explorer writes for
# archives over 2 GB, and zipfile raises NotImplementedError on it deep inside a read.
READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
NAME_MAX = 255  # bytes per path component on ext4, XFS, btrfs, APFS and NTFS (UTF-16 units there)
# What a damaged member raises while it is read: CRC mismatch or bad header (BadZipFile), bad
# deflate data (zlib.error), early end of data (EOFError), bad bzip2/LZMA data (OSError, ValueError).
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


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
    long_part = next((part for part in parts if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX), None)
    if long_part is not None:
        raise UserError(f"member {name!r}: name too long to extract ({len(long_part.encode('utf-8', 'surrogateescape'))} "
                        f"bytes in one part, file systems allow {NAME_MAX}); re-pack the archive with shorter names")
    return PurePosixPath(*parts)


def unreadable_method(info: zipfile.ZipInfo) -> str | None:
    """Why zipfile cannot inflate this member, or None when it can."""
    if info.compress_type in READABLE_METHODS:
        return None
    name = zipfile.compressor_names.get(info.compress_type, "an unknown method")
    return f"compressed with {name.replace('deflate64', 'Deflate64')} (method {info.compress_type}), " \
           "which Python's zipfile cannot read"


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
        reason = unreadable_method(info)
        if reason is not None:
            raise UserError(f"member {info.filename!r} is {reason}; unpack the archive with 7-Zip (7z x) and run "
                            "`cnnlab prepare` on the folder")
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


def open_archive(archive_path: str | os.PathLike) -> zipfile.ZipFile:
    """The zip's central directory, read; UserError naming the file when it is no readable zip."""
    try:
        return zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{archive_path}: not a readable zip archive ({error}); delete it and run again") from None


def _damaged(archive_path, info: zipfile.ZipInfo, error: BaseException) -> UserError:
    text = str(error) or type(error).__name__
    return UserError(f"{archive_path}: member {info.filename!r} is damaged ({text}); the archive is corrupt: "
                     f"delete {archive_path} and download it again")


def check_integrity(archive_path: str | os.PathLike, limits: ExtractLimits = ExtractLimits()) -> None:
    """Read every member to its end, so zipfile checks its CRC-32; UserError naming the damaged one.

    Only what extraction would read is read: declared sizes (zipfile stops there) up to the
    limit on the total, so a zip bomb costs no more here than the extraction that refuses it."""
    with open_archive(archive_path) as archive:
        budget = limits.max_total_bytes
        for info in archive.infolist():
            if info.is_dir():
                continue
            reason = unreadable_method(info)
            if reason is not None:
                raise UserError(f"{archive_path}: member {info.filename!r} is {reason}; unpack the archive with "
                                "7-Zip (7z x) and run `cnnlab prepare` on the folder")
            budget -= info.file_size
            if budget < 0:
                return  # over the total limit: extraction refuses the archive before reading it
            try:
                with archive.open(info) as source:
                    while source.read(_COPY_CHUNK):
                        pass
            except DAMAGED as error:
                raise _damaged(archive_path, info, error) from None


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one member, counting what is really written (declared sizes are not trusted)."""
    written = 0
    try:
        output = open(target, "xb")
    except OSError as error:
        raise _unwritable(info, target, error) from None
    with archive.open(info) as source, output:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise UserError(f"unsafe archive: member {info.filename!r} inflates beyond its declared size")
            try:
                output.write(chunk)
            except OSError as error:
                raise _unwritable(info, target, error) from None
    return written


def _unwritable(info: zipfile.ZipInfo, target: Path, error: OSError) -> UserError:
    if error.errno == errno.ENAMETOOLONG:
        return UserError(f"member {info.filename!r}: path too long to extract here ({len(str(target))} characters); "
                         "extract into a folder with a shorter path (--dest) or re-pack with shorter names")
    return UserError(f"cannot write member {info.filename!r} to {target.parent} ({error.strerror or error}); "
                     "free some space or choose another --dest, then run again")


def journal_path(destination: Path, archive_name: str) -> Path:
    """Where the entries being moved into `destination` are listed while the moves run."""
    return destination / f".{archive_name}.extracting.json"


def remove_interrupted(destination: str | os.PathLike, archive_name: str) -> None:
    """Remove what an extraction of `archive_name` killed before it finished left in `destination`:
    its temporary folders (`.extracting-<archive>-*`, only cnnlab makes that pattern) and, when
    the moves had begun (the journal exists), the entries it had moved. Call with no other
    extraction of this archive running (cnnlab.data.download holds a lock)."""
    destination = Path(destination)
    journal = journal_path(destination, archive_name)
    try:
        entries = json.loads(journal.read_text())["entries"]
    except FileNotFoundError:
        entries = []
    except (OSError, ValueError, KeyError, TypeError):
        entries = []  # a journal cut mid-write was written before any move began
    for name in entries:
        # Each was a top-level name checked by member_path and absent before the moves.
        if isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and os.sep not in name:
            _remove(destination / name)
    journal.unlink(missing_ok=True)
    for leftover in destination.glob(f"{glob_escape(EXTRACTING_PREFIX + archive_name)}-*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write_journal(temporary: Path, journal: Path, entries: list[str]) -> None:
    """Atomically: written inside the temporary folder, then renamed beside the entries."""
    written = temporary / journal.name
    written.write_text(json.dumps({"entries": entries}))
    os.replace(written, journal)


def extract_safely(archive_path: str | os.PathLike, destination: str | os.PathLike,
                   limits: ExtractLimits = ExtractLimits(), progress=None) -> list[str]:
    """Extract into `destination`, returning the archive's top-level names (now in place).

    Refuses (UserError) before writing when any member is unsafe or unreadable, and when a
    top-level entry already exists in `destination` (nothing is overwritten). The journal of the
    moves stays until the caller calls `finish_extraction` (after recording what it extracted).
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    name = Path(archive_path).name
    with open_archive(archive_path) as archive:
        try:
            members = check_members(archive.infolist(), limits)
        except UserError as error:
            raise UserError(f"{archive_path}: {error}") from None
        top_level = sorted({path.parts[0] for _, path in members})
        existing = [entry for entry in top_level if (destination / entry).exists()]
        if existing:
            raise UserError(f"{destination}: {', '.join(existing)} already exists; remove it or choose another --dest")
        # Same file system as the destination, so the final moves are renames, not copies.
        temporary = Path(tempfile.mkdtemp(prefix=f"{EXTRACTING_PREFIX}{name}-", dir=destination))
        try:
            budget = limits.max_total_bytes
            for info, path in members:
                target = temporary.joinpath(*path.parts)
                folder = target if info.is_dir() else target.parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise UserError(f"{archive_path}: {_unwritable(info, target, error)}") from None
                if not info.is_dir():
                    try:
                        budget -= _copy_member(archive, info, target, budget)
                    except UserError as error:
                        raise UserError(f"{archive_path}: {error}") from None
                    except (*DAMAGED, NotImplementedError) as error:
                        raise _damaged(archive_path, info, error) from None
                if progress is not None:
                    progress.update()
            _write_journal(temporary, journal_path(destination, name), top_level)
            for entry in top_level:
                os.rename(temporary / entry, destination / entry)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return top_level


def finish_extraction(destination: str | os.PathLike, archive_name: str) -> None:
    """The moves are complete and recorded: the journal is no longer needed."""
    journal_path(Path(destination), archive_name).unlink(missing_ok=True)
