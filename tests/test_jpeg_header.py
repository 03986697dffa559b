"""survey's fast JPEG header reader against Pillow: on every file, the fast path and Pillow's
`Image.open` (decode.open_checked) give the same width, height, mode and format, or the same
reason to skip it; and plain JPEGs really take the fast path."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.data import decode, survey as survey_module, truncation
from cnnlab.data.jpeg_header import read_plain_jpeg
from cnnlab.data.photo_file import BadImage
from hostile_files import KINDS, quadrants


def jpeg(image: Image.Image | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    (image or quadrants(96, 64)).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def exif_bytes() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x0128] = 2  # resolution unit
    exif[0x011A] = (300, 1)
    return exif.tobytes()


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def after_start(data: bytes, extra: bytes) -> bytes:
    """`extra` inserted right after the start-of-image marker."""
    return data[:2] + extra + data[2:]


def frame_offset(data: bytes) -> int:
    return data.index(b"\xff\xc0")


def with_frame_size(data: bytes, width: int, height: int) -> bytes:
    start = frame_offset(data) + 5
    return data[:start] + struct.pack(">HH", height, width) + data[start + 4:]


def mpo() -> bytes:
    buffer = io.BytesIO()
    quadrants(96, 64).save(buffer, "MPO", save_all=True, append_images=[quadrants(96, 64)])
    return buffer.getvalue()


PLAIN = {  # plain JPEGs: the fast path must answer these itself
    "baseline 4:2:0": jpeg(),
    "baseline 4:4:4": jpeg(subsampling=0),
    "4:2:2, odd size": jpeg(quadrants(101, 67), subsampling=1),
    "grey": jpeg(quadrants(96, 64).convert("L")),
    "cmyk (Adobe segment)": jpeg(quadrants(96, 64).convert("CMYK")),
    "progressive": jpeg(progressive=True),
    "dpi in JFIF, with EXIF": jpeg(dpi=(300, 300), exif=exif_bytes()),
    "icc profile": jpeg(icc_profile=b"\0" * 3000),
    "comment": jpeg(comment=b"hello"),
    "restart interval": jpeg(restart_marker_blocks=1),
    "cut short (header claims more)": with_frame_size(jpeg(), 4000, 4000),
}


def _odd() -> dict[str, bytes]:
    base = jpeg()
    frame = frame_offset(base)
    quantisation = base.index(b"\xff\xdb")
    length = struct.unpack(">H", base[frame + 2:frame + 4])[0]
    return {
        "EXIF without a DPI in JFIF": jpeg(exif=exif_bytes()),
        "MPO": mpo(),
        "short JFIF segment": base[:2] + segment(0xE0, b"JFIF\0") + base[2:],
        "short Adobe segment": after_start(base, segment(0xEE, b"Adobe")),
        "short ICC segment": after_start(base, segment(0xE2, b"ICC_PROFILE\0\1")),
        "Photoshop segment": after_start(base, segment(0xED, b"Photoshop 3.0\x008BIM\x03")),
        "quantisation table cut": base[:quantisation + 2] + struct.pack(">H", 40) + base[quantisation + 4:quantisation + 42]
        + base[quantisation + 4 + 65:],
        "junk between segments": after_start(base, b"\x00"),
        "fill bytes before a marker": after_start(base, b"\xff"),
        "12-bit samples": base[:frame + 4] + b"\x0c" + base[frame + 5:],
        "two components": base[:frame + 9] + b"\x02" + base[frame + 10:],
        "half a component": base[:frame + 2] + struct.pack(">H", length + 1) + base[frame + 4:frame + 2 + length]
        + b"\x00" + base[frame + 2 + length:],
        "zero width": with_frame_size(base, 0, 64),
        "over the pixel cap": with_frame_size(base, 7000, 7000),
        "over Pillow's bomb limit": with_frame_size(base, 60000, 60000),
        "two frames": base[:frame] + base[frame:frame + 2 + length] + base[frame:],
        "arithmetic frame": base[:frame + 1] + b"\xc9" + base[frame + 2:],
        "header cut before the scan": base[:frame + 2 + length],
        "a PNG named .jpg": (lambda buffer: (quadrants().save(buffer, "PNG"), buffer.getvalue())[1])(io.BytesIO()),
    }


ODD = _odd()


def outcome(path: Path):
    try:
        return survey_module.header_facts(str(path))
    except BadImage as reason:
        return "skipped", str(reason)
    except OSError as error:
        return "error", type(error).__name__


def pillow_outcome(path: Path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(survey_module, "read_plain_jpeg", lambda data, max_pixels: None)
        return outcome(path)


@pytest.mark.parametrize("name", sorted(PLAIN) + sorted(ODD))
def test_fast_path_and_pillow_agree(name, tmp_path, monkeypatch):
    data = PLAIN.get(name) or ODD[name]
    path = tmp_path / "cat.1.jpg"
    path.write_bytes(data)
    assert outcome(path) == pillow_outcome(path, monkeypatch)


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_jpegs_take_the_fast_path_with_pillows_minimum_size(name):
    header = read_plain_jpeg(PLAIN[name], survey_module.MAX_PIXELS)
    assert header is not None
    with Image.open(io.BytesIO(PLAIN[name])) as image:
        assert (header.width, header.height, header.mode) == (*image.size, image.mode)
        assert header.minimum_bytes() == truncation.minimum_bytes(image)


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_files_are_left_to_pillow(name):
    assert read_plain_jpeg(ODD[name], survey_module.MAX_PIXELS) is None


@pytest.mark.parametrize("key", sorted(set(KINDS) - {"vanishing"}))
def test_every_hostile_kind_reads_as_pillow_reads_it(key, tmp_path, monkeypatch):
    kind = KINDS[key]
    path = kind.write(tmp_path, kind.name)
    assert outcome(path) == pillow_outcome(path, monkeypatch)


def test_the_pixel_cap_is_decodes():
    assert survey_module.MAX_PIXELS == decode.MAX_PIXELS


def test_a_survey_of_the_shared_photos_is_the_same_without_the_fast_path(shared_photos, monkeypatch):
    fast = survey_module.survey(shared_photos, top=100_000)
    monkeypatch.setattr(survey_module, "read_plain_jpeg", lambda data, max_pixels: None)
    assert survey_module.survey(shared_photos, top=100_000) == fast
