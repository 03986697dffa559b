"""From a folder of photos to the cache a model's recipe needs, in one step.

`cnnlab train MODEL --data PHOTOS` prepares (or reuses, incrementally: only new or changed photos
are decoded) a cache at the recipe's input size and fit, then trains on it. The cache goes where
`--cache` says, or under the user's cache folder (never inside the photo folder, which cnnlab
only reads): $CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab, in a
folder named after the photos, their path's hash and the decoded size.

A cache decoded at another size or fit than the recipe's is refused with the command that
makes the right one, unless the user asks for it knowingly (TrainConfig.any_input_size): a
resnet9-tiny trained on a 94x125 stretched cache is not the 64x64 crop model its recipe names.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cnnlab.data.cache import PrepareOptions, PrepareResult, prepare
from cnnlab.data.cache_folder import MANIFEST_NAME
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.splits import SplitOptions
from cnnlab.errors import UserError

CACHE_ENVIRONMENT = "CNNLAB_CACHE_DIR"


def is_cache(folder: str | os.PathLike) -> bool:
    """True when `folder` holds a prepared cnnlab cache (a manifest at its top)."""
    return (Path(folder) / MANIFEST_NAME).is_file()


def cache_root() -> Path:
    if os.environ.get(CACHE_ENVIRONMENT):
        return Path(os.environ[CACHE_ENVIRONMENT])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def default_cache_folder(photos: str | os.PathLike, decode: DecodeOptions) -> Path:
    """One cache per photo folder and decoded size: <root>/<folder name>-<path hash>-<W>x<H>-<fit>."""
    resolved = Path(photos).resolve()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.name).strip("-.") or "photos"
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:10]
    return cache_root() / f"{name}-{digest}-{decode.width}x{decode.height}-{decode.fit}"


def recipe_decode(recipe) -> DecodeOptions:
    return DecodeOptions(recipe.input_width, recipe.input_height, recipe.fit)


def prepare_for_recipe(photos: str | os.PathLike, recipe, cache: str | os.PathLike | None = None,
                       split: SplitOptions | None = None, workers: int = 0,
                       show_progress: bool = True) -> PrepareResult:
    """Prepare (or bring up to date) the cache of `photos` at the recipe's size and fit."""
    photos = Path(photos)
    if not photos.is_dir():
        raise UserError(f"--data {photos}: no such folder of photos")
    if is_cache(photos):
        raise UserError(f"--data {photos} is a prepared cache, not a folder of photos; pass it as --cache {photos}")
    decode = recipe_decode(recipe)
    folder = Path(cache) if cache is not None else default_cache_folder(photos, decode)
    if folder.resolve().is_relative_to(photos.resolve()):
        raise UserError(f"--cache {folder} is inside the photo folder {photos}, which cnnlab only reads; "
                        "choose a cache folder elsewhere")
    options = PrepareOptions(decode=decode, split=split or SplitOptions(), workers=workers)
    return prepare(photos, folder, options, show_progress=show_progress)


def check_cache_fits(decode: dict, recipe, model: str, any_input_size: bool) -> None:
    """UserError, with the command that fixes it, when the cache's photos are not the recipe's input."""
    if any_input_size:
        return
    have = (int(decode["width"]), int(decode["height"]), decode.get("fit", "stretch"))
    want = (recipe.input_width, recipe.input_height, recipe.fit)
    if have != want:
        raise UserError(
            f"this cache holds {have[0]}x{have[1]} {have[2]} photos but {model}'s recipe takes {want[0]}x{want[1]} "
            f"{want[2]}: train from the photos (--data PHOTOS prepares the right cache), or prepare one with "
            f"`cnnlab prepare PHOTOS --out CACHE --size {want[0]}x{want[1]} --fit {want[2]}`; "
            "--any-input-size trains at the cache's size on purpose")
