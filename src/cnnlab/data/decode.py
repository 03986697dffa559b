"""Robust, fast decoding of one photo into a fixed-size RGB uint8 array.

Real archives (Kaggle's, Microsoft's PetImages) hold zero-byte and truncated JPEGs, text files
named .jpg, PNGs saved as .jpg, CMYK, 16-bit, palette and transparent images. Every such case
either decodes to a sensible RGB picture or raises `BadImage` with a one-line reason; nothing
else escapes, and the source file is only ever read.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from cnnlab.errors import UserError

FITS = ("stretch", "pad", "crop")
# Pillow refuses images over ~179 M pixels and warns over ~89 M. Photos for this tool are a
# few megapixels; anything over 40 M pixels is refused before a byte of pixel data is decoded,
# so a tiny file that claims a huge size (a decompression bomb) costs nothing.
MAX_PIXELS = 40_000_000
# The tutorial's `Image.resize((94, 125))` uses Pillow's default filter, bicubic.
RESAMPLE = Image.Resampling.BICUBIC
EXIF_ORIENTATION_TAG = 0x0112
PAD_COLOUR = (0, 0, 0)


class BadImage(Exception):
    """A file that cannot be used as a photo; the message is the reason, for the report."""


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
    return width, height


def open_checked(source) -> Image.Image:
    """Open an image lazily (header only), refusing non-images and decompression bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as error:
        raise BadImage(f"decompression bomb refused ({error})") from None
    except (Image.DecompressionBombWarning, OSError, SyntaxError, ValueError) as error:
        raise BadImage(f"unreadable header ({error})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise BadImage(f"decompression bomb refused ({width}x{height} exceeds the {MAX_PIXELS:,}-pixel cap)")
    if width < 1 or height < 1:
        raise BadImage(f"empty image ({width}x{height})")
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


def decode_image(source, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """Decode a path, file object or bytes into a (height, width, 3) uint8 array.

    Raises BadImage (with a reason) for anything that is not a usable photo.
    """
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise BadImage("empty file (0 bytes)")
        source = io.BytesIO(source)
    image = open_checked(source)
    try:
        with image:
            _apply_draft(image, options)
            image.load()  # truncated data raises here: we never set LOAD_TRUNCATED_IMAGES
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # first frame of an animation
            image = ImageOps.exif_transpose(image)
            image = to_rgb(image)
            image = fit_image(image, options)
            return np.asarray(image, dtype=np.uint8).copy()
    except BadImage:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, Image.DecompressionBombError) as error:
        text = str(error) or type(error).__name__
        if "truncated" in text.lower():
            raise BadImage(f"truncated image data ({text})") from None
        raise BadImage(f"corrupt image data ({text})") from None


def decode_file(path: str, options: DecodeOptions) -> tuple[np.ndarray | None, str, str | None]:
    """Read a file once: (pixels or None, md5 of its bytes, reason if bad). Never raises."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return None, "", f"cannot read file ({error.strerror or error})"
    digest = hashlib.md5(data).hexdigest()
    try:
        return decode_image(data, options), digest, None
    except BadImage as reason:
        return None, digest, str(reason)
