"""Builders of real-world bad and unusual image files, for the decoding and prepare tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def gradient(width: int = 60, height: int = 40) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height pixels."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


def write_bad_files(folder: Path, label: str = "cat") -> dict[str, str]:
    """Write one file of each broken kind; returns {file name: expected reason fragment}."""
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    gradient(300, 200).save(good, "JPEG", quality=90)
    (folder / f"{label}.9001.jpg").write_bytes(b"")
    (folder / f"{label}.9002.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (folder / f"{label}.9003.jpg").write_bytes(b"this is a text file, not a photo\n" * 20)
    (folder / f"{label}.9004.jpg").write_bytes(png_bomb())
    (folder / f"{label}.9005.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)  # JPEG magic, no data
    # Under Pillow's own limits but over cnnlab's 40 M-pixel cap.
    (folder / f"{label}.9006.png").write_bytes(png_bomb(7_000, 7_000))
    return {
        f"{label}.9001.jpg": "empty",
        f"{label}.9002.jpg": "truncated",
        f"{label}.9003.jpg": "not an image",
        f"{label}.9004.jpg": "bomb",
        f"{label}.9005.jpg": "",
        f"{label}.9006.png": "bomb",
    }


def write_unusual_good_files(folder: Path, label: str = "dog") -> list[str]:
    """Usable but awkward files: PNG/GIF/WebP named .jpg, CMYK, grey, 16-bit, palette, RGBA."""
    folder.mkdir(parents=True, exist_ok=True)
    image = gradient()
    image.save(folder / f"{label}.9101.jpg", "PNG")
    image.convert("P").save(folder / f"{label}.9102.jpg", "GIF")
    image.save(folder / f"{label}.9103.jpg", "WEBP")
    image.convert("CMYK").save(folder / f"{label}.9104.jpg", "JPEG")
    image.convert("L").save(folder / f"{label}.9105.jpg", "JPEG")
    sixteen = (np.linspace(0, 65535, 60 * 40).reshape(40, 60)).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / f"{label}.9106.png")
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / f"{label}.9107.png")
    rgba = image.convert("RGBA")
    rgba.putalpha(0)
    rgba.save(folder / f"{label}.9108.png")
    return [f"{label}.{number}.{'png' if number >= 9106 else 'jpg'}" for number in range(9101, 9109)]
