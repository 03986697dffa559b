"""Decoding real-world photos: every bad kind refused with a reason, every awkward kind usable."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.decode import BadImage, DecodeOptions, decode_file, decode_image, parse_size
from imagefiles import gradient, write_bad_files, write_unusual_good_files


def test_every_bad_kind_is_refused_with_its_reason(tmp_path):
    expected = write_bad_files(tmp_path)
    for name, fragment in expected.items():
        pixels, md5, reason = decode_file(str(tmp_path / name), DecodeOptions())
        assert pixels is None, name
        assert reason and fragment in reason, (name, reason)
        assert len(md5) == 32 or name.endswith("9001.jpg")


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
