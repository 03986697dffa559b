"""Which folders `prepare` may write a cache into, and the leftovers it may clear there.

`prepare --out DIR` replaces files in DIR (manifest.json, prepare-report.json) and deletes
pixel files of older caches (images-*.npy). It does so only in a folder that is cnnlab's:
- a folder that does not exist yet, or is empty;
- a cnnlab cache, recognised by its manifest: JSON with cnnlab's format marker
  ("format_version") and the entries every cnnlab manifest has, sharded or not;
- a folder holding nothing but names cnnlab writes: pixel files images-<16 hex digits>.npy,
  prepare-report.json, shard folders that pass the same test, and cnnlab's temporary files
  (what a prepare killed before its manifest was written leaves behind).
Anything else is refused before a byte is written, and nothing in it is touched. So is a cache
whose split differs from the default when no split option was given (check_split_kept): the
defaults change between versions, and re-splitting would orphan the runs trained on the cache.

Temporary files carry the writer's process id (`.images-<pid>.npy.partial`,
`.manifest.json.<pid>.partial`, `.prepare-report.json.<pid>.partial`). A prepare killed with
SIGKILL cannot remove its own; the next prepare of the same folder removes those whose
process no longer exists, and only those: a running prepare's files are left alone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cnnlab.data.split_options import SplitOptions
from cnnlab.errors import UserError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REPORT_NAME = "prepare-report.json"
# Entries every cnnlab manifest (a cache's or a sharded cache's top level) has carried.
MANIFEST_MARKERS = ("format_version", "split_hash", "class_to_index", "layout_note")
PIXEL_FILE = re.compile(r"^images-[0-9a-f]{16}\.npy$")
SHARD_FOLDER = re.compile(r"^shard-\d{3,}-of-\d{3,}$")
TEMPORARY_FILE = re.compile(r"^\.(?:images-(?P<pixels>\d+)\.npy|(?:manifest|prepare-report)\.json\.(?P<json>\d+))\.partial$")


def is_cnnlab_manifest(manifest) -> bool:
    return isinstance(manifest, dict) and all(key in manifest for key in MANIFEST_MARKERS)


def load_manifest(folder: Path) -> dict | None:
    """The folder's manifest.json if it is a cnnlab manifest (any version), else None."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if is_cnnlab_manifest(manifest) else None


def _is_own_entry(entry: Path) -> bool:
    name = entry.name
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return bool(SHARD_FOLDER.match(name)) and is_cache_folder(entry)
    return entry.is_file() and bool(PIXEL_FILE.match(name) or name == REPORT_NAME or TEMPORARY_FILE.match(name))


def is_cache_folder(folder: Path) -> bool:
    """Whether `prepare` may write into `folder` (the rules in the module docstring)."""
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    if load_manifest(folder) is not None:
        return True
    return all(_is_own_entry(entry) for entry in folder.iterdir())


def check_out_folder(folder: str | os.PathLike) -> Path:
    """Refuse (UserError, nothing touched) an --out folder that is not cnnlab's."""
    folder = Path(folder)
    try:
        acceptable = is_cache_folder(folder)
    except OSError as error:
        raise UserError(f"--out {folder}: cannot read the folder ({error.strerror or error}); choose another --out") from None
    if not acceptable:
        what = "is not a folder" if folder.exists() and not folder.is_dir() else "is not a cnnlab cache"
        raise UserError(f"--out {folder} exists and {what}; choose another --out (a new or empty folder, "
                        "or a cache written by `cnnlab prepare`)")
    return folder


def check_split_kept(folder: str | os.PathLike, split: SplitOptions) -> None:
    """Refuse (UserError) to re-split an existing cache when no split option was given: its runs
    would no longer evaluate against it. `split` is the SplitOptions asked for."""
    if split.chosen():
        return
    folder = Path(folder)
    manifest = load_manifest(folder) or next(filter(None, map(load_manifest, sorted(folder.glob("shard-*-of-*")))), None)
    if manifest is None or not isinstance(manifest.get("split"), dict):
        return
    stored = {key: value for key, value in manifest["split"].items() if key != "per_class"}
    wanted = split.resolved()
    if stored != wanted.to_dict():
        try:
            kept = SplitOptions(**stored).flags()
        except TypeError:
            kept = "its split options"
        raise UserError(f"--out {folder} holds a cache split with {kept}, not the default {wanted.flags()}; pass "
                        f"{kept} to update it as it is, or split options to re-split it (runs trained on it would no "
                        "longer evaluate against it), or choose another --out")


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except (OverflowError, ValueError, OSError):
        return False
    return True


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Delete the temporary files of dead prepare processes from a cnnlab cache folder; their names."""
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = TEMPORARY_FILE.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_file():
            continue
        if not _process_exists(int(match.group("pixels") or match.group("json"))):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return sorted(removed)
