"""Robust, fast decoding of one photo into a fixed-size RGB uint8 array.

Real archives (Kaggle's, Microsoft's PetImages) hold zero-byte and truncated JPEGs, text files
named .jpg, PNGs saved as .jpg, CMYK, 16-bit, palette and transparent images. Every such case
either decodes to a sensible RGB picture or raises `BadImage` with a one-line reason; nothing
else escapes, and the source file is only ever read. Which files are read at all, and how, is
photo_file's policy; how a JPEG cut short is found, truncation's.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data import truncation
from cnnlab.data.photo_file import MAX_PHOTO_BYTES, BadImage, read_photo
from cnnlab.errors import UserError

if TYPE_CHECKING:
    import numpy as np

# NumPy is imported where pixels become arrays, not here: `cnnlab survey` reads headers only
# and starts a tenth of a second sooner without it (benchmarks/cold_start.py).

FITS = ("stretch", "pad", "crop")
# Pillow refuses images over ~179 M pixels and warns over ~89 M. Photos for this tool are a
# few megapixels; anything over 40 M pixels is refused before a byte of pixel data is decoded,
# so a tiny file that claims a huge size (a decompression bomb) costs nothing.
MAX_PIXELS = 40_000_000
# The tutorial's `Image.resize((94, 125))` uses Pillow's default filter, bicubic.
RESAMPLE = Image.Resampling.BICUBIC
EXIF_ORIENTATION_TAG = 0x0112
PAD_COLOUR = (0, 0, 0)
# Bounds of --size: a 4096 x 4096 picture is already 48 MB of pixels per image in a cache, and
# a size past these fails every photo for lack of memory rather than teaching anything.
MAX_SIZE_SIDE = 4096
MAX_SIZE_PIXELS = 16_000_000
TRUNCATED = truncation.TRUNCATED
# Pillow's errors for bytes that do not make a picture (struct.error and IndexError: its parsers
# of odd metadata). MemoryError is not among them: it is reported as what it is.
_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, Image.DecompressionBombError)


@dataclass(frozen=True)
class DecodeOptions:
    width: int = 94
    height: int = 125
    fit: str = "stretch"
    # DCT-domain downscaling of JPEGs before the resize: 1.6x faster on these ~500x375 photos
    # (only a 1/2 scale fits above 94x125) and within ~1.3 grey levels of a full decode on
    # average (benchmarks/data_pipeline.py). Off = the tutorial's exact pixels.
    draft: bool = True

    def __post_init__(self):
        if self.fit not in FITS:
            raise UserError(f"unknown fit {self.fit!r}; choose one of {', '.join(FITS)}")
        if self.width < 1 or self.height < 1:
            raise UserError(f"image size must be positive, got {self.width}x{self.height}")


def parse_size(text: str) -> tuple[int, int]:
    """'94x125' -> (94, 125): width then height, as Pillow and the tutorial write it."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 94x125") from None
    if width < 1 or height < 1:
        raise UserError(f"--size {text!r}: width and height must be positive")
    if width > MAX_SIZE_SIDE or height > MAX_SIZE_SIDE or width * height > MAX_SIZE_PIXELS:
        raise UserError(f"--size {text!r} is too large: each side at most {MAX_SIZE_SIDE} and at most "
                        f"{MAX_SIZE_PIXELS:,} pixels in all; choose a smaller --size")
    return width, height


def _reason(error: BaseException, fallback: str) -> str:
    """One line for the report from a Pillow error; every kind of truncation reads the same."""
    text = str(error) or type(error).__name__
    return TRUNCATED if "truncat" in text.lower() else f"{fallback} ({text})"


def _total_bytes(source) -> int | None:
    try:
        return os.fstat(source.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        position = source.seek(0, os.SEEK_END)
        source.seek(0)
        return position
    except (AttributeError, OSError):
        return None


def open_checked(source) -> Image.Image:
    """Open an image lazily (header only), refusing non-images, decompression bombs and files too
    short for the picture their header claims.

    `source` is bytes, a file object, or a path (read whole, through photo_file's checks).
    """
    if isinstance(source, (str, os.PathLike)):
        source = read_photo(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise BadImage("empty file (0 bytes)")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as error:
        raise BadImage(f"decompression bomb refused ({error})") from None
    except (Image.DecompressionBombWarning, OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        raise BadImage(_reason(error, "unreadable header")) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise BadImage(f"decompression bomb refused ({width}x{height} exceeds the {MAX_PIXELS:,}-pixel cap)")
    if width < 1 or height < 1:
        image.close()
        raise BadImage(f"empty image ({width}x{height})")
    total = _total_bytes(source)
    if image.format in ("JPEG", "MPO") and total is not None and truncation.too_small(source, image, total):
        image.close()
        raise BadImage(TRUNCATED)
    return image


def _reduction_factor(width: int, height: int, options: DecodeOptions) -> float:
    """How many times smaller the source may be decoded while staying >= the final size."""
    ratios = (width / options.width, height / options.height)
    # Pad shrinks the image until its larger side fits; stretch and crop until the smaller does.
    return max(ratios) if options.fit == "pad" else min(ratios)


def _apply_draft(image: Image.Image, options: DecodeOptions) -> None:
    if image.format != "JPEG" or not options.draft:
        return
    width, height = image.size
    orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the target's sides swap
        options = DecodeOptions(options.height, options.width, options.fit, options.draft)
    factor = _reduction_factor(width, height, options)
    scale = next((s for s in (8, 4, 2) if s <= factor), 1)
    if scale > 1:
        # Ask for the scale explicitly: given only the final size, draft() picks too little.
        image.draft("RGB", (width // scale, height // scale))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency composited on white, 16-bit scaled down."""
    mode = image.mode
    if mode == "RGB":
        return image
    import numpy as np

    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "P" and "transparency" in image.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_image(image: Image.Image, options: DecodeOptions) -> Image.Image:
    size = (options.width, options.height)
    if options.fit == "stretch":
        return image.resize(size, RESAMPLE)
    if options.fit == "crop":
        return ImageOps.fit(image, size, RESAMPLE)
    return ImageOps.pad(image, size, RESAMPLE, color=PAD_COLOUR)


def _loaded(data: bytes, options: DecodeOptions) -> Image.Image:
    """Open, set the draft scale and decode the pixels; truncated data raises here, as we never
    set LOAD_TRUNCATED_IMAGES."""
    image = open_checked(data)
    try:
        _apply_draft(image, options)
        image.load()
    except BaseException:
        image.close()
        raise
    return image


def _source_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return read_photo(source)
    data = source.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise BadImage(f"file too large (over {MAX_PHOTO_BYTES // 2**20} MB, the cap for a photo)")
    return data


def decode_image(source, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """Decode a path, file object or bytes into a (height, width, 3) uint8 array.

    Raises BadImage (with a reason) for anything that is not a usable photo.
    """
    import numpy as np

    data = _source_bytes(source)
    if not data:
        raise BadImage("empty file (0 bytes)")
    size = None
    try:
        image = _loaded(data, options)
        size = image.size
        with image:
            if image.format in ("JPEG", "MPO") and truncation.ends_early(data, image, lambda other: _loaded(other, options)):
                raise BadImage(TRUNCATED)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # first frame of an animation
            picture = ImageOps.exif_transpose(image)
            picture = to_rgb(picture)
            picture = fit_image(picture, options)
            return np.asarray(picture, dtype=np.uint8).copy()
    except BadImage:
        raise
    except MemoryError:
        # The machine's limit, not the file's fault: never reported as corrupt data.
        what = f"this {size[0]}x{size[1]} image" if size else "this image"
        raise BadImage(f"not enough memory to decode {what} at {options.width}x{options.height} "
                       "(the file itself may be fine)") from None
    except _DATA_ERRORS as error:
        raise BadImage(_reason(error, "corrupt image data")) from None


def decode_file(path: str, options: DecodeOptions) -> tuple[np.ndarray | None, str, str | None]:
    """Read a file once: (pixels or None, md5 of its bytes, reason if bad). Never raises for a bad file."""
    try:
        data = read_photo(path)
    except BadImage as reason:
        return None, "", str(reason)
    digest = hashlib.md5(data).hexdigest()
    try:
        return decode_image(data, options), digest, None
    except BadImage as reason:
        return None, digest, str(reason)
