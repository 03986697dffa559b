"""Size, mode and sampling of a plain JPEG from its header bytes, without Pillow: `survey`'s fast path.

Pillow's JPEG plugin parses every segment in Python (quantisation tables into lists, EXIF for the
DPI, MPO directories), which was most of a survey of thousands of photos. `read_plain_jpeg` walks
the markers of a header already in memory and answers only where its answer is certainly
Pillow's: the segments Pillow reads without any chance of an error (checked here against the
same conditions that make Pillow raise), one baseline, extended or progressive Huffman frame of
8-bit samples with 1, 3 or 4 components, and a size under the decompression-bomb cap. Anything
else (junk or fill bytes between segments, a second frame, MPO or Photoshop directories, EXIF
that Pillow would parse for the DPI, a header longer than the bytes given) returns None, and the
caller opens the file with Pillow as before. tests/test_jpeg_header.py checks the agreement on
every hostile kind of file and on the shared photos.
"""

from __future__ import annotations

from dataclasses import dataclass

# Start-of-frame markers Pillow reads as Huffman-coded (truncation.HUFFMAN_FRAMES); the rest of
# C0-CF (lossless, differential, arithmetic) is rare enough to be left to Pillow.
_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
_PROGRESSIVE = 0xC2
_MODES = {1: "L", 3: "RGB", 4: "CMYK"}  # Pillow's SOF handler: components -> mode
_START_OF_SCAN = 0xDA
_QUANTISATION = 0xDB
# Segments Pillow skips or stores as they are, whatever their content.
_SKIPPED = frozenset({0xC4, 0xDD, 0xFE})  # Huffman tables, restart interval, comment
_APP0, _APP1, _APP2, _APP13, _APP14 = 0xE0, 0xE1, 0xE2, 0xED, 0xEE


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    mode: str
    frame: int  # the start-of-frame marker's second byte, 0xC0 ... 0xC2
    largest_sampling: int  # the largest horizontal or vertical sampling factor of any component

    def minimum_bytes(self) -> int:
        """The fewest bytes that can hold this picture (truncation.minimum_bytes_for)."""
        from cnnlab.data.truncation import minimum_bytes_for

        return minimum_bytes_for(self.width, self.height, self.largest_sampling)


def _quantisation_tables_valid(segment: bytes) -> bool:
    """Pillow's DQT loop raises "bad quantization table marker" on a table cut short."""
    offset = 0
    while offset < len(segment):
        precision = 1 if segment[offset] // 16 == 0 else 2
        length = 1 + precision * 64
        if len(segment) - offset < length:
            return False
        offset += length
    return True


def _application_segment_safe(marker: int, segment: bytes) -> bool:
    """Whether Pillow's APP handler reads this segment without an error and without a parse that
    could change the image it returns (an MPO directory, Photoshop resources)."""
    if marker == _APP0 and segment.startswith(b"JFIF"):
        return len(segment) >= 7  # Pillow reads the version at offset 5 unguarded
    if marker == _APP2 and segment.startswith(b"MPF\0"):
        return False  # may make the file an MPO
    if marker == _APP2 and segment.startswith(b"ICC_PROFILE\0"):
        return len(segment) >= 14  # Pillow reads the fragment count at offset 13 when it meets the frame
    if marker == _APP13 and segment.startswith(b"Photoshop 3.0\x00"):
        return False
    if marker == _APP14 and segment.startswith(b"Adobe"):
        return len(segment) >= 7
    return True


def _sets_dpi(segment: bytes) -> bool:
    """A JFIF segment whose density unit is inches or centimetres: Pillow then never parses EXIF."""
    return segment.startswith(b"JFIF") and len(segment) >= 12 and segment[7] in (1, 2)


def _frame(marker: int, segment: bytes, max_pixels: int) -> JpegHeader | None:
    # Pillow's SOF handler reads 3 bytes per component to the end of the segment, unguarded.
    if len(segment) < 6 or (len(segment) - 6) % 3 or segment[0] != 8 or segment[5] not in _MODES:
        return None
    height = int.from_bytes(segment[1:3], "big")
    width = int.from_bytes(segment[3:5], "big")
    if width < 1 or height < 1 or width * height > max_pixels:
        return None  # Pillow's refusal or the decompression-bomb check words these
    factors = [factor for offset in range(7, len(segment), 3) for factor in divmod(segment[offset], 16)]
    return JpegHeader(width, height, _MODES[segment[5]], marker, max(factors + [1]))


def read_plain_jpeg(data: bytes, max_pixels: int) -> JpegHeader | None:
    """The header of the JPEG that `data` begins with, or None where Pillow must be asked."""
    if not data.startswith(b"\xff\xd8"):
        return None
    position, frame = 2, None
    exif, dpi = False, False
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2:position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            return None
        segment = data[position + 4:end]
        if marker == _START_OF_SCAN:
            # Pillow would read EXIF for the DPI here; its parser's errors are its own to word.
            return frame if frame is not None and not (exif and not dpi) else None
        if marker in _FRAMES:
            if frame is not None:
                return None
            frame = _frame(marker, segment, max_pixels)
            if frame is None:
                return None
        elif marker == _QUANTISATION:
            if not _quantisation_tables_valid(segment):
                return None
        elif 0xE0 <= marker <= 0xEF:
            if not _application_segment_safe(marker, segment):
                return None
            exif = exif or (marker == _APP1 and segment.startswith(b"Exif\0\0"))
            dpi = dpi or (marker == _APP0 and _sets_dpi(segment))
        elif marker not in _SKIPPED:
            return None
        position = end
    return None
