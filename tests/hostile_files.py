"""A generator of hostile photo files: each function writes one kind into a folder and returns its path.

Broken files (cut short, empty, not images, bombs), awkward but valid ones (CMYK, 16-bit,
palette with transparency, EXIF-rotated, GIF, WebP, TIFF, BMP) and things that are not files
at all (symbolic link loops, dangling links, a link to /dev/zero, a FIFO), plus a valid photo
with a non-UTF-8 name and one that vanishes after it is listed. `KINDS` names each with the
reason cnnlab must give for it, or None when it must decode. Every valid kind is drawn from
`quadrants()`, four flat colours, so a decoded pixel can be checked against Pillow's own.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imagefiles import png_bomb

TRUNCATED = "truncated image data (the file is cut short)"
WIDTH, HEIGHT = 64, 48
COLOURS = ((220, 30, 30), (30, 200, 40), (40, 60, 210), (230, 220, 40))  # top-left, top-right, bottom-left, bottom-right


def quadrants(width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """Four flat colours: decoded pixels in the middle of each are easy to check."""
    array = np.zeros((height, width, 3), np.uint8)
    array[: height // 2, : width // 2] = COLOURS[0]
    array[: height // 2, width // 2:] = COLOURS[1]
    array[height // 2:, : width // 2] = COLOURS[2]
    array[height // 2:, width // 2:] = COLOURS[3]
    return Image.fromarray(array)


def noisy_jpeg_bytes(width: int = 320, height: int = 240) -> bytes:
    """A JPEG whose compressed data is long (noise compresses badly): cutting it loses picture."""
    rng = np.random.default_rng(17)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def _save(folder: Path, name: str, image: Image.Image, format: str, **options) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return _write(folder, name, buffer.getvalue())


# ---- broken files ---------------------------------------------------------------------------

def truncated_jpeg_with_eoi(folder: Path, name: str = "cat.9001.jpg") -> Path:
    """Cut in the middle of its compressed data, then closed with FF D9: Pillow decodes it silently."""
    data = noisy_jpeg_bytes()
    return _write(folder, name, data[: len(data) * 55 // 100] + b"\xff\xd9")


def truncated_jpeg_without_eoi(folder: Path, name: str = "cat.9001.jpg") -> Path:
    data = noisy_jpeg_bytes()
    return _write(folder, name, data[: len(data) * 55 // 100])


def huge_header_jpeg(folder: Path, name: str = "cat.9001.jpg", size: int = 631) -> Path:
    """`size` bytes (a header and a sliver of data, closed with FF D9) whose header claims 6000x6000."""
    buffer = io.BytesIO()
    quadrants().save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5: frame + 9] = struct.pack(">HH", 6000, 6000)  # height, then width
    assert data.index(b"\xff\xda") < size - 2, "the header must fit"
    return _write(folder, name, bytes(data[: size - 2]) + b"\xff\xd9")


def zero_byte(folder: Path, name: str = "cat.9001.jpg") -> Path:
    return _write(folder, name, b"")


def not_an_image(folder: Path, name: str = "cat.9001.jpg") -> Path:
    return _write(folder, name, b"<html><body>404 Not Found</body></html>\n" * 10)


def decompression_bomb(folder: Path, name: str = "cat.9001.png") -> Path:
    """A PNG of about 70 bytes claiming 100,000 x 100,000 pixels, over Pillow's MAX_IMAGE_PIXELS."""
    return _write(folder, name, png_bomb(100_000, 100_000))


# ---- awkward but valid files ----------------------------------------------------------------

def cmyk_jpeg(folder: Path, name: str = "cat.9001.jpg") -> Path:
    return _save(folder, name, quadrants().convert("CMYK"), "JPEG", quality=95)


def grey16_png(folder: Path, name: str = "cat.9001.png") -> Path:
    """16-bit grey: the quadrants' luminance times 257, so 8-bit value v is stored as v * 257."""
    grey = np.asarray(quadrants().convert("L"), dtype=np.uint16) * 257
    return _save(folder, name, Image.fromarray(grey), "PNG")


def palette_png_with_transparency(folder: Path, name: str = "cat.9001.png") -> Path:
    """A palette PNG whose bottom-right quadrant is fully transparent (it must turn white)."""
    image = quadrants().convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    transparent = image.getpixel((WIDTH - 1, HEIGHT - 1))
    return _save(folder, name, image, "PNG", transparency=transparent)


def exif_rotated_jpeg(folder: Path, name: str = "cat.9001.jpg") -> Path:
    """Stored sideways with EXIF orientation 6: decoded upright, it is HEIGHT wide and WIDTH tall."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(folder, name, quadrants(), "JPEG", quality=95, exif=exif.tobytes())


def gif(folder: Path, name: str = "cat.9001.gif") -> Path:
    return _save(folder, name, quadrants().convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "GIF")


def webp(folder: Path, name: str = "cat.9001.webp") -> Path:
    return _save(folder, name, quadrants(), "WEBP", lossless=True)


def tiff(folder: Path, name: str = "cat.9001.tif") -> Path:
    return _save(folder, name, quadrants(), "TIFF")


def bmp(folder: Path, name: str = "cat.9001.bmp") -> Path:
    return _save(folder, name, quadrants(), "BMP")


def non_utf8_name(folder: Path, name: str = "cat.9001.jpg") -> Path:
    """A valid JPEG named b'cat.\\xff\\xfe.jpg' (Kaggle style, label cat): Python sees surrogate escapes."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = os.fsencode(folder) + b"/" + name.split(".")[0].encode() + b".\xff\xfe.jpg"
    buffer = io.BytesIO()
    quadrants().save(buffer, "JPEG", quality=95)
    with open(raw, "wb") as handle:
        handle.write(buffer.getvalue())
    return Path(os.fsdecode(raw))


def vanishing(folder: Path, name: str = "cat.9001.jpg") -> Path:
    """A valid JPEG that the test removes after it was listed and before it is read."""
    return _save(folder, name, quadrants(), "JPEG", quality=95)


# ---- things that are not files --------------------------------------------------------------

def symlink_loop(folder: Path, name: str = "cat.9001.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(name, folder / name)  # a link to itself
    return folder / name


def dangling_symlink(folder: Path, name: str = "cat.9001.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink("no-such-photo.jpg", folder / name)
    return folder / name


def symlink_to_dev_zero(folder: Path, name: str = "cat.9001.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/zero", folder / name)
    return folder / name


def fifo(folder: Path, name: str = "cat.9001.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / name)
    return folder / name


@dataclass(frozen=True)
class Kind:
    write: Callable[..., Path]
    reason: str | None  # the fragment cnnlab's reason must contain; None: a valid photo
    name: str = "cat.9001.jpg"  # Kaggle style: label cat

    @property
    def valid(self) -> bool:
        return self.reason is None


KINDS: dict[str, Kind] = {
    "truncated_jpeg_with_eoi": Kind(truncated_jpeg_with_eoi, TRUNCATED),
    "truncated_jpeg_without_eoi": Kind(truncated_jpeg_without_eoi, TRUNCATED),
    "huge_header_jpeg": Kind(huge_header_jpeg, TRUNCATED),
    "zero_byte": Kind(zero_byte, "empty file (0 bytes)"),
    "not_an_image": Kind(not_an_image, "not an image"),
    "decompression_bomb": Kind(decompression_bomb, "decompression bomb", "cat.9001.png"),
    "symlink_loop": Kind(symlink_loop, "symbolic link loop"),
    "dangling_symlink": Kind(dangling_symlink, "dangling symbolic link"),
    "symlink_to_dev_zero": Kind(symlink_to_dev_zero, "not a regular file (a character device)"),
    "fifo": Kind(fifo, "not a regular file (a FIFO)"),
    "vanishing": Kind(vanishing, "vanished"),
    "cmyk_jpeg": Kind(cmyk_jpeg, None),
    "grey16_png": Kind(grey16_png, None, "cat.9001.png"),
    "palette_png_with_transparency": Kind(palette_png_with_transparency, None, "cat.9001.png"),
    "exif_rotated_jpeg": Kind(exif_rotated_jpeg, None),
    "gif": Kind(gif, None, "cat.9001.gif"),
    "webp": Kind(webp, None, "cat.9001.webp"),
    "tiff": Kind(tiff, None, "cat.9001.tif"),
    "bmp": Kind(bmp, None, "cat.9001.bmp"),
    "non_utf8_name": Kind(non_utf8_name, None),
}
