"""Find the photos under a folder and the class of each.

Two layouts are understood, detected automatically and overridable:
- "folders": one subfolder per class (the Keras / torchvision convention), files anywhere
  below it; class names sorted; hidden folders such as `.ipynb_checkpoints` ignored.
- "kaggle": one flat folder whose file names carry the label before the first dot
  (`cat.123.jpg`, as Kaggle ships Dogs vs. Cats).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.photo_file import printable_path
from cnnlab.errors import UserError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
LAYOUTS = ("auto", "folders", "kaggle")
# The tutorial labels cats 1 and dogs 0, so its class order is dog, cat.
TUTORIAL_CLASS_ORDER = ("dog", "cat")

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders `cat.2.jpg` before `cat.10.jpg` (numeric runs compared as numbers)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text))


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


@dataclass
class LabelledFiles:
    """Every photo found, with its class name, plus what was found but not usable."""

    root: Path
    layout: str
    paths: list[str] = field(default_factory=list)  # relative to root, '/'-separated (may hold surrogate escapes)
    labels: list[str] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)  # {"path": printable, "reason"}

    def class_names(self) -> list[str]:
        return sorted(set(self.labels))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for label in self.labels:
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))


def walk_images(folder: Path):
    """Yield image files below `folder`, skipping hidden folders and files, in a stable order."""
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted((d for d in subdirectories if not _is_hidden(d)), key=natural_key)
        for name in sorted(files, key=natural_key):
            if not _is_hidden(name):
                yield Path(directory) / name


@dataclass(frozen=True)
class _Entry:
    name: str
    is_dir: bool  # links followed, as Path.is_dir; a link that loops or leads nowhere is neither
    is_file: bool


def _asked(question) -> bool:
    try:
        return question()
    except OSError:  # a link that loops (DirEntry raises where Path.is_dir says False), or no access
        return False


def _listing(root: Path) -> list[_Entry]:
    """Each entry of `root`, from one os.scandir: the directory's own file types answer without a
    stat per file, a tenth of a second on the 6,000 shared photos (benchmarks/cold_start.py)."""
    with os.scandir(root) as entries:
        return [_Entry(entry.name, _asked(entry.is_dir), _asked(entry.is_file)) for entry in entries]


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _class_folders(root: Path, listing: list[_Entry] | None = None) -> list[Path]:
    names = [entry.name for entry in (_listing(root) if listing is None else listing)
             if entry.is_dir and not _is_hidden(entry.name)]
    return [root / name for name in sorted(names, key=natural_key)]


def detect_layout(root: Path, listing: list[_Entry] | None = None) -> str:
    """'folders' when the root holds class subfolders, 'kaggle' when it holds labelled files."""
    listing = _listing(root) if listing is None else listing
    root_images = [entry.name for entry in listing if entry.is_file and _suffix(entry.name) in IMAGE_EXTENSIONS]
    kaggle_named = [name for name in root_images if name.count(".") >= 2]
    if kaggle_named and len(kaggle_named) >= len(root_images) / 2:
        return "kaggle"
    if _class_folders(root, listing):
        return "folders"
    raise UserError(
        f"{root}: found neither class subfolders nor Kaggle-style file names (cat.1.jpg); "
        "point --data at a folder with one subfolder per class, or pass --layout"
    )


def find_labelled_files(root: str | os.PathLike, layout: str = "auto") -> LabelledFiles:
    """List the photos under `root` with their class names. Raises ValueError on unusable input."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; pass --data with the folder of photos")
    listing = _listing(root)
    if layout == "auto":
        layout = detect_layout(root, listing)
    found = LabelledFiles(root=root, layout=layout)
    if layout == "folders":
        for class_folder in _class_folders(root, listing):
            for path in walk_images(class_folder):
                relative = path.relative_to(root).as_posix()
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    found.paths.append(relative)
                    found.labels.append(class_folder.name)
                else:
                    found.ignored.append({"path": printable_path(relative), "reason": "not an image file extension"})
    else:
        for entry in sorted(listing, key=lambda entry: natural_key(entry.name)):
            # Folders are not photos; anything else named like one (a FIFO, a link that loops or
            # leads nowhere) is listed, so that reading it reports why it is not a photo.
            name = entry.name
            if _is_hidden(name) or entry.is_dir:
                continue
            if _suffix(name) not in IMAGE_EXTENSIONS:
                found.ignored.append({"path": printable_path(name), "reason": "not an image file extension"})
            elif name.count(".") < 2:
                found.ignored.append({"path": printable_path(name),
                                      "reason": "no label before the first dot (expected label.id.jpg)"})
            else:
                found.paths.append(name)
                found.labels.append(name.split(".", 1)[0])
    if layout == "folders" and len(set(found.labels)) == 1:
        only = found.labels[0]
        raise UserError(
            f"{root}: only one class folder ({only!r}); a classifier needs at least two. "
            f"If {only!r} holds Kaggle-style files (cat.1.jpg), pass --data {root / only}"
        )
    if not found.paths:
        raise UserError(f"{root}: no photos found (layout {layout}); check the folder or pass --layout")
    return found


def class_order(names: list[str], requested: list[str] | None = None, tutorial: bool = False) -> list[str]:
    """The class list whose positions are the label indices.

    Sorted names by default (Keras' convention); the tutorial's dog=0, cat=1 in tutorial mode;
    or an explicit order from `--classes`.
    """
    present = sorted(set(names))
    if requested:
        missing = sorted(set(present) - set(requested))
        unknown = sorted(set(requested) - set(present))
        if missing or unknown or len(set(requested)) != len(requested):
            raise UserError(
                f"--classes {','.join(requested)} must list each class found exactly once "
                f"(found: {','.join(present)})"
            )
        return list(requested)
    if tutorial and {name.lower() for name in present} == set(TUTORIAL_CLASS_ORDER) and len(present) == 2:
        # Kaggle's cat/dog names or PetImages' Cat/Dog folders: dog = 0, cat = 1, as the tutorial.
        by_lower = {name.lower(): name for name in present}
        return [by_lower[name] for name in TUTORIAL_CLASS_ORDER]
    return present
