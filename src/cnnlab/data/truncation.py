"""JPEGs cut short, which Pillow (13) decodes without a word when they end with an end-of-image marker.

What Pillow does with a JPEG cut in the middle of its compressed data:
- cut and nothing more: `load()` raises OSError "image file is truncated (N bytes not processed)"
  (we never set ImageFile.LOAD_TRUNCATED_IMAGES);
- cut and ended with the end-of-image marker FF D9 (a careless download, copy or repair does
  this): libjpeg meets the marker inside the compressed data, warns "Corrupt JPEG data:
  premature end of data segment" and fills the rest of the picture with zero coefficients,
  that is flat grey (RGB 128, 128, 128). Pillow's decoder silences libjpeg's warnings
  (JpegDecode.c: `output_message` does nothing, and `if (jerr.pub.num_warnings) return BROKEN`
  is commented out), so `load()` succeeds and nothing tells the caller.

So cnnlab checks for itself, in two ways:
1. Before decoding, from the header alone: every block of a Huffman-coded JPEG costs at least
   one bit, so a file smaller than `minimum_bytes` cannot hold the picture its header claims
   (the 631-byte file claiming 6000x6000 is refused at once, not decoded to 36 M grey pixels).
2. After decoding (`ends_early`): decode a second time with filler bytes put just before the
   final end-of-image marker. In a complete file the compressed data has ended there, so
   libjpeg skips the filler as junk between markers and the picture is identical; in a cut
   file libjpeg is still reading compressed data, decodes the filler as picture and the result
   differs. The second decode is paid only by suspects: progressive JPEGs (a cut there leaves
   a blurred rather than grey part) and sequential ones whose last decoded pixel, the
   bottom-right corner, is exactly the zero-coefficient grey.

A progressive JPEG cut exactly between two scans is a shorter but complete progressive file
(libjpeg itself does not warn); it decodes to a coarser picture and is accepted.
"""

from __future__ import annotations

import math
import os

from PIL import Image

from cnnlab.data.photo_file import BadImage

TRUNCATED = "truncated image data (the file is cut short)"
END_OF_IMAGE = b"\xff\xd9"
# Filler decoded as picture by a cut file: any bytes but 0xFF (which would start a marker).
FILLER = bytes(range(1, 255))
# Start-of-frame markers of Huffman-coded JPEGs: baseline, extended sequential, progressive.
# (Arithmetic-coded frames can spend far less than a bit per block; they get no size bound.)
HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
_NOT_FRAMES = frozenset({0xC4, 0xC8, 0xCC})  # DHT, JPG, DAC share the C0-CF range with SOFn
_MID_GREY = frozenset({127, 128})  # zero coefficients: 128, or 127 once Pillow inverts Adobe CMYK
_MAX_SEGMENTS = 4096


def frame_marker(handle) -> int | None:
    """The start-of-frame marker (0xC0 ... 0xCF) of the JPEG in `handle`, by walking its segments."""
    position = handle.tell()
    try:
        handle.seek(0)
        if handle.read(2) != b"\xff\xd8":
            return None
        for _ in range(_MAX_SEGMENTS):
            if handle.read(1) != b"\xff":
                return None
            marker = handle.read(1)
            while marker == b"\xff":  # fill bytes before a marker
                marker = handle.read(1)
            if not marker:
                return None
            code = marker[0]
            if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
                continue
            if code in (0xD9, 0xDA):  # end of image or start of scan before any frame
                return None
            if 0xC0 <= code <= 0xCF and code not in _NOT_FRAMES:
                return code
            length = handle.read(2)
            if len(length) < 2:
                return None
            handle.seek(int.from_bytes(length, "big") - 2, os.SEEK_CUR)
        return None
    finally:
        handle.seek(position)


def minimum_bytes(image: Image.Image) -> int:
    """Fewest bytes a Huffman-coded JPEG of this size can have: one bit per MCU at the least.

    An MCU (minimum coded unit) covers 8 x 8 pixels times the largest sampling factor; every
    one holds at least one block of each component, and the first scan of any block spends at
    least one Huffman code (one bit or more) on its DC coefficient.
    """
    factors = [factor for layer in getattr(image, "layer", ()) for factor in layer[1:3]]
    return minimum_bytes_for(*image.size, max(factors + [1]))


def minimum_bytes_for(width: int, height: int, largest_sampling: int) -> int:
    """minimum_bytes from the picture's size and its largest sampling factor (jpeg_header's path)."""
    unit = 8 * largest_sampling
    return math.ceil(width / unit) * math.ceil(height / unit) // 8


def too_small(handle, image: Image.Image, total_bytes: int) -> bool:
    """Whether the JPEG opened from `handle` is too small to hold the picture its header claims."""
    return frame_marker(handle) in HUFFMAN_FRAMES and total_bytes < minimum_bytes(image)


def _ends_mid_grey(image: Image.Image) -> bool:
    corner = image.getpixel((image.width - 1, image.height - 1))
    return all(value in _MID_GREY for value in (corner if isinstance(corner, tuple) else (corner,)))


def ends_early(data: bytes, image: Image.Image, reload) -> bool:
    """Whether the JPEG `data`, decoded (loaded) as `image`, was cut and then closed with FF D9.

    `reload(data)` must open and load other bytes exactly as `image` was (same draft scale).
    """
    if not (image.info.get("progressive") or _ends_mid_grey(image)):
        return False
    end = data.rfind(END_OF_IMAGE)
    if end < 0:
        return False  # no end marker: Pillow itself refuses a cut file without one
    while end > 0 and data[end - 1] == 0xFF:  # fill bytes, or half of a cut FF 00 pair
        end -= 1
    try:
        probe = reload(data[:end] + FILLER + data[end:])
    except (BadImage, OSError, SyntaxError, ValueError, EOFError):
        return True  # the filler was read as compressed data and broke it
    import numpy as np  # here, not at the top: `cnnlab survey` never gets this far

    with probe:
        return probe.size != image.size or not np.array_equal(np.asarray(probe), np.asarray(image))
