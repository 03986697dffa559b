"""Decoding real-world photos: every bad kind refused with a reason, every awkward kind usable."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from cnnlab.data.decode import BadImage, DecodeOptions, decode_file, decode_image, parse_size
from cnnlab.errors import UserError
from imagefiles import gradient, write_bad_files, write_unusual_good_files


def test_every_bad_kind_is_refused_with_its_reason(tmp_path):
    expected = write_bad_files(tmp_path)
    for name, fragment in expected.items():
        pixels, md5, reason = decode_file(str(tmp_path / name), DecodeOptions())
        assert pixels is None, name
        assert reason and fragment in reason, (name, reason)
        # No digest for files refused before they were read whole: empty, or not an image by their header.
        assert len(md5) == 32 or name.endswith(("9001.jpg", "9003.jpg"))


def test_awkward_but_valid_files_decode_to_rgb(tmp_path):
    names = write_unusual_good_files(tmp_path)
    for name in names:
        pixels = decode_image((tmp_path / name).read_bytes(), DecodeOptions(40, 30))
        assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8, name


def test_transparent_pixels_are_composited_on_white():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 255))
    image.paste((0, 0, 255, 0), (10, 0, 20, 20))  # right half fully transparent blue
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    pixels = decode_image(buffer.getvalue(), DecodeOptions(20, 20))
    assert tuple(pixels[10, 2]) == (255, 0, 0)
    assert tuple(pixels[10, 17]) == (255, 255, 255)


def test_sixteen_bit_images_are_scaled_not_clipped():
    values = np.full((10, 10), 32768, dtype=np.uint16)  # half of full scale
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    pixels = decode_image(buffer.getvalue(), DecodeOptions(10, 10))
    assert abs(int(pixels[5, 5, 0]) - 128) <= 1  # clipping would give 255


def _two_colour_jpeg(orientation: int, width=400, height=200) -> bytes:
    """Left half red, right half blue, with an EXIF orientation tag."""
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    array[:, width // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("draft", [False, True])
def test_exif_orientation_is_applied(draft):
    # Orientation 6: the camera was turned; the picture must be rotated 90 degrees clockwise,
    # which moves the left (red) half to the top.
    pixels = decode_image(_two_colour_jpeg(6), DecodeOptions(25, 50, draft=draft))
    assert pixels.shape == (50, 25, 3)
    top, bottom = pixels[5, 12].astype(int), pixels[45, 12].astype(int)
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    unrotated = decode_image(_two_colour_jpeg(1), DecodeOptions(50, 25, draft=draft))
    assert unrotated[12, 5, 0] > 200 and unrotated[12, 45, 2] > 200


def test_fit_modes_keep_or_change_the_aspect_ratio():
    wide = io.BytesIO()
    Image.new("RGB", (200, 100), (200, 200, 200)).save(wide, "PNG")
    padded = decode_image(wide.getvalue(), DecodeOptions(50, 50, "pad"))
    assert padded.shape == (50, 50, 3)
    assert padded[2, 25].max() == 0 and padded[25, 25].min() > 150  # black bars above and below
    cropped = decode_image(wide.getvalue(), DecodeOptions(50, 50, "crop"))
    assert cropped.min() > 150  # all picture, no bars
    stretched = decode_image(wide.getvalue(), DecodeOptions(50, 50, "stretch"))
    assert stretched.min() > 150


def test_draft_decoding_stays_close_to_a_full_decode():
    buffer = io.BytesIO()
    gradient(500, 375).save(buffer, "JPEG", quality=90)
    exact = decode_image(buffer.getvalue(), DecodeOptions(draft=False)).astype(int)
    fast = decode_image(buffer.getvalue(), DecodeOptions(draft=True)).astype(int)
    assert np.abs(exact - fast).mean() < 3.0


def test_options_are_validated():
    with pytest.raises(ValueError, match="fit"):
        DecodeOptions(fit="squash")
    assert parse_size("94x125") == (94, 125)
    for bad in ("94", "ax125", "0x5"):
        with pytest.raises(ValueError, match="--size"):
            parse_size(bad)
    with pytest.raises(BadImage, match="empty"):
        decode_image(b"")


# ---- issue 17: cut JPEGs, sizes, memory, what is read ----------------------------------------------

def _cut(data: bytes, fraction: float, end_marker: bool) -> bytes:
    return data[: int(len(data) * fraction)] + (b"\xff\xd9" if end_marker else b"")


def _progressive(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, "JPEG", quality=85, progressive=True)
    return buffer.getvalue()


def _inside_longest_scan(data: bytes) -> int:
    """A position in the middle of the longest scan's compressed data (between two SOS markers)."""
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA] + [len(data)]
    start, end = max(itertools.pairwise(starts), key=lambda pair: pair[1] - pair[0])
    return (start + end) // 2


@pytest.mark.parametrize("draft", [False, True])
def test_real_photos_cut_short_are_refused_and_whole_ones_are_not(shared_photos, draft):
    # Pillow decodes a JPEG cut short and closed with FF D9 without complaint, the rest of the
    # picture flat grey; cnnlab must refuse it, and must not refuse any whole photo.
    options = DecodeOptions(draft=draft)
    for path in sorted(shared_photos.glob("*.jpg"))[:12]:
        data = path.read_bytes()
        progressive = _progressive(data)
        for whole in (data, progressive):
            decode_image(whole, options)
        for fraction in (0.3, 0.6, 0.95):
            for end_marker in (True, False):
                with pytest.raises(BadImage, match=r"^truncated image data \(the file is cut short\)$"):
                    decode_image(_cut(data, fraction, end_marker), options)
        with pytest.raises(BadImage, match="truncated"):
            decode_image(progressive[: _inside_longest_scan(progressive)] + b"\xff\xd9", options)


def test_a_whole_grey_jpeg_is_not_taken_for_a_cut_one():
    # Its last pixel is the zero-coefficient grey that makes a JPEG a suspect: checked, and kept.
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (128, 128, 128)).save(buffer, "JPEG", quality=95)
    assert decode_image(buffer.getvalue(), DecodeOptions(32, 24)).min() >= 126


def test_a_tiny_file_claiming_a_huge_picture_is_refused_before_decoding(tmp_path, monkeypatch):
    from hostile_files import huge_header_jpeg

    path = huge_header_jpeg(tmp_path)
    assert path.stat().st_size == 631
    with Image.open(path) as image:
        assert image.size == (6000, 6000)

    def no_decoding(self, *arguments, **options):
        raise AssertionError("decoded the pixels of a file refused by its header")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    pixels, _, reason = decode_file(str(path), DecodeOptions())
    assert pixels is None and reason == "truncated image data (the file is cut short)"


def test_the_size_is_bounded():
    assert parse_size("4096x3906") == (4096, 3906)  # 15,998,976 pixels
    for too_large in ("4097x10", "10x4097", "4096x4096", "100000x100000"):
        with pytest.raises(UserError, match=r"--size .* too large"):
            parse_size(too_large)


def test_running_out_of_memory_is_not_called_corrupt_data(tmp_path, monkeypatch):
    from cnnlab.data import decode as decode_module

    path = tmp_path / "cat.1.png"
    gradient().save(path)

    def exhausted(*arguments, **options):
        raise MemoryError

    monkeypatch.setattr(decode_module, "fit_image", exhausted)
    pixels, _, reason = decode_file(str(path), DecodeOptions())
    assert pixels is None and reason.startswith("not enough memory") and "corrupt" not in reason


def test_files_over_the_size_cap_are_refused_before_reading(tmp_path, monkeypatch):
    from cnnlab.data import photo_file

    path = tmp_path / "cat.1.png"
    gradient(300, 200).save(path)
    monkeypatch.setattr(photo_file, "MAX_PHOTO_BYTES", path.stat().st_size - 1)
    pixels, _, reason = decode_file(str(path), DecodeOptions())
    assert pixels is None and reason.startswith("file too large")


def test_only_the_first_bytes_of_a_non_image_are_read(tmp_path):
    from cnnlab.data.photo_file import read_photo

    counters = Path("/proc/self/io")
    if not counters.is_file():
        pytest.skip("needs Linux's /proc/self/io")

    def bytes_read() -> int:
        return int(next(line for line in counters.read_text().splitlines() if line.startswith("rchar:")).split()[1])

    path = tmp_path / "cat.1.jpg"
    path.write_bytes(b"not a photo at all\n" * 1_000_000)  # 19 MB
    before = bytes_read()
    with pytest.raises(BadImage, match="not an image"):
        read_photo(path)
    assert bytes_read() - before < 1_000_000


def test_printable_paths_are_the_name_itself_unless_it_is_not_utf8():
    from cnnlab.data.photo_file import path_bytes, printable_path

    assert printable_path("dog/é.1.jpg") == "dog/é.1.jpg" and path_bytes("dog/é.1.jpg") == "dog/é.1.jpg".encode()
    odd = os.fsdecode(b"cat.\xff\xfe.jpg")
    assert printable_path(odd) == "cat.\\xff\\xfe.jpg" and path_bytes(odd) == b"cat.\xff\xfe.jpg"
