"""The convolution explorer: NumPy cross-correlation against SciPy, kernels, and `cnnlab filters`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.signal import correlate2d

from cnnlab.cli import build_parser, run
from cnnlab.explain.convolution import correlate, output_shape
from cnnlab.explain.filters import load_photo
from cnnlab.explain.kernels import DEFAULT_KERNELS, KERNELS, resolve_kernel, resolve_kernels

RANDOM = np.random.default_rng(0)
IMAGE = RANDOM.uniform(0, 255, (13, 10))  # odd x even, so 'same' padding splits both ways
KERNEL_SHAPES = [(3, 3), (5, 5), (3, 5), (2, 2), (1, 4)]


@pytest.mark.parametrize("shape", KERNEL_SHAPES)
def test_valid_matches_scipy_and_stride_subsamples_it(shape):
    kernel = RANDOM.normal(size=shape)
    reference = correlate2d(IMAGE, kernel, mode="valid")
    np.testing.assert_allclose(correlate(IMAGE, kernel), reference, atol=1e-9)
    for stride in (2, 3):
        np.testing.assert_allclose(correlate(IMAGE, kernel, stride=stride), reference[::stride, ::stride], atol=1e-9)


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (3, 5), (1, 3)])
def test_same_matches_scipy_for_odd_kernels(shape):
    kernel = RANDOM.normal(size=shape)
    np.testing.assert_allclose(correlate(IMAGE, kernel, padding="same"),
                               correlate2d(IMAGE, kernel, mode="same"), atol=1e-9)


def test_same_with_stride_pads_like_tensorflow():
    kernel = RANDOM.normal(size=(3, 3))
    same = correlate2d(IMAGE, kernel, mode="same")
    result = correlate(IMAGE, kernel, stride=2, padding="same")
    assert result.shape == (7, 5)  # ceil(13 / 2), ceil(10 / 2)
    # Odd side (13 rows): one zero either side, as at stride 1. Even side (10 columns): the only
    # zero goes after (TensorFlow's split), so windows start at columns 0, 2, ... of the image.
    np.testing.assert_allclose(result, same[::2, 1::2], atol=1e-9)


@pytest.mark.parametrize("height, width, kernel, stride, padding, expected", [
    (375, 500, (3, 3), 1, "valid", (373, 498)),
    (375, 500, (3, 3), 2, "valid", (187, 249)),
    (375, 500, (5, 5), 3, "valid", (124, 166)),
    (375, 500, (3, 3), 1, "same", (375, 500)),
    (375, 500, (3, 3), 2, "same", (188, 250)),
    (10, 10, (4, 4), 3, "same", (4, 4)),
])
def test_output_shapes(height, width, kernel, stride, padding, expected):
    image = np.zeros((height, width))
    assert output_shape(height, width, kernel, stride, padding) == expected
    assert correlate(image, np.ones(kernel), stride, padding).shape == expected


def test_colour_filters_each_channel():
    rgb = RANDOM.uniform(0, 255, (9, 8, 3))
    kernel = KERNELS["sobel-x"].matrix
    result = correlate(rgb, kernel, stride=2, padding="same")
    assert result.shape == (5, 4, 3)
    for channel in range(3):
        np.testing.assert_allclose(result[..., channel], correlate(rgb[..., channel], kernel, 2, "same"))


def test_bad_convolution_arguments():
    with pytest.raises(ValueError, match="larger than"):
        correlate(np.zeros((2, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="stride"):
        correlate(IMAGE, np.ones((3, 3)), stride=0)
    with pytest.raises(ValueError, match="padding"):
        correlate(IMAGE, np.ones((3, 3)), padding="full")


def _edges():
    """A vertical edge (dark left, bright right) and the same edge turned horizontal."""
    vertical = np.zeros((12, 12))
    vertical[:, 6:] = 200.0
    return vertical, vertical.T.copy()


@pytest.mark.parametrize("detector, other", [("vertical-edge", "horizontal-edge"), ("sobel-x", "sobel-y")])
def test_edge_filters_respond_only_to_their_direction(detector, other):
    vertical, horizontal = _edges()
    for image, responds, silent in ((vertical, detector, other), (horizontal, other, detector)):
        assert np.abs(correlate(image, KERNELS[responds].matrix)).max() >= 600  # 3 rows x 200 grey levels
        assert np.abs(correlate(image, KERNELS[silent].matrix)).max() == 0


def test_tutorial_edge_filters_are_transposes_and_the_default():
    assert DEFAULT_KERNELS == ("vertical-edge", "horizontal-edge")
    np.testing.assert_array_equal(KERNELS["horizontal-edge"].matrix, [[1, 1, 1], [0, 0, 0], [-1, -1, -1]])
    np.testing.assert_array_equal(KERNELS["vertical-edge"].matrix, KERNELS["horizontal-edge"].matrix.T)
    assert "Prewitt" in KERNELS["vertical-edge"].description
    assert [kernel.name for kernel in resolve_kernels(())] == list(DEFAULT_KERNELS)
    for kernel in KERNELS.values():  # blurs keep the brightness: unit gain
        if "blur" in kernel.name:
            assert kernel.matrix.sum() == pytest.approx(1.0)


def test_kernel_text_and_files(tmp_path):
    np.testing.assert_array_equal(resolve_kernel("1,0,-1; 2,0,-2; 1,0,-1").matrix, [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    assert resolve_kernel("0.5,-1.5e1").matrix.shape == (1, 2)
    assert resolve_kernel("Sobel_X").name == "sobel-x"
    (tmp_path / "mine.json").write_text("[[0, 1], [2, 3]]")
    np.save(tmp_path / "other.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
    from_json, from_npy = resolve_kernels([str(tmp_path / "mine.json"), str(tmp_path / "other.npy")])
    assert from_json.name == "mine" and from_json.matrix.tolist() == [[0, 1], [2, 3]]
    assert from_npy.name == "other" and from_npy.matrix.shape == (2, 3) and from_npy.matrix.dtype == np.float64
    assert [k.name for k in resolve_kernels(["1;2", "3;4", "sharpen", "sharpen"])] == \
        ["custom-1", "custom-2", "sharpen", "sharpen-2"]


@pytest.mark.parametrize("spec, message", [
    ("1,0,-1;2,0", "different lengths"),
    ("1,x,3", "'x' is not a number"),
    ("1,2;;3,4", "empty row"),
    ("1,nan", "finite"),
    ("sobelx", "known kernels: vertical-edge, horizontal-edge, sobel-x"),
    ("missing.npy", "not found"),
])
def test_bad_kernels_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_kernel(spec)


@pytest.mark.parametrize("name, content, message", [
    ("ragged.json", "[[1, 2], [3]]", "different lengths"),
    ("words.json", '[["a", 1]]', "not a number"),
    ("flat.json", "[1, 2, 3]", "list of rows"),
    ("broken.json", "[[1, 2", "not a valid .json"),
    ("empty.json", "[]", "empty"),
])
def test_bad_kernel_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        resolve_kernel(str(tmp_path / name))


def test_bad_npy_kernels(tmp_path):
    np.save(tmp_path / "cube.npy", np.ones((2, 2, 2)))
    np.save(tmp_path / "objects.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not numpy")
    for name, message in (("cube.npy", "2-D"), ("objects.npy", "not a valid .npy"), ("text.npy", "not a valid .npy")):
        with pytest.raises(ValueError, match=message):
            resolve_kernel(str(tmp_path / name))


def test_load_photo_own_size_resized_and_exif(tmp_path):
    picture = Image.fromarray(RANDOM.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    picture.save(tmp_path / "plain.png")
    assert load_photo(tmp_path / "plain.png").shape == (30, 40, 3)
    assert load_photo(tmp_path / "plain.png", (20, 10)).shape == (10, 20, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned by 90 degrees
    picture.save(tmp_path / "turned.jpg", exif=exif)
    assert load_photo(tmp_path / "turned.jpg").shape == (40, 30, 3)
    (tmp_path / "notes.jpg").write_text("not a photo")
    with pytest.raises(ValueError, match="notes.jpg: not an image"):
        load_photo(tmp_path / "notes.jpg")


def _check_outputs(out, kernel_names, input_shape):
    summary = json.loads((out / "filters.json").read_text())
    assert summary["panels"] == 1 + len(kernel_names)
    assert [record["name"] for record in summary["kernels"]] == kernel_names
    assert summary["input_shape"] == list(input_shape)
    with Image.open(out / "filters.png") as figure:
        assert figure.width > 0 and figure.height > 0
    for record in summary["kernels"]:
        path = out / record["file"]
        assert path.stat().st_size > 0
        with Image.open(path) as image:
            assert [image.height, image.width] == record["output_shape"][:2]
        assert record["min"] <= record["max"]
    return summary


def test_command_on_a_synthetic_photo(tmp_path, capsys):
    photo = RANDOM.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    photo[:, 16:] = 250
    Image.fromarray(photo).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    status = run(["filters", str(tmp_path / "photo.png"), "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / name) for name in ("filters.png", "vertical-edge.png", "horizontal-edge.png", "filters.json")]
    summary = _check_outputs(out, list(DEFAULT_KERNELS), (24, 32))
    assert summary["kernels"][0]["output_shape"] == [22, 30]

    status = run(["filters", str(tmp_path / "photo.png"), "--kernel", "laplacian", "--kernel=-1,0,1",
                  "--stride", "2", "--padding", "same", "--colour", "--out", str(tmp_path / "colour")])
    assert status == 0
    summary = _check_outputs(tmp_path / "colour", ["laplacian", "custom-1"], (24, 32, 3))
    assert summary["kernels"][1]["output_shape"] == [12, 16, 3]


def test_command_on_a_real_photo(shared_photos, tmp_path, capsys):
    kernels = ["vertical-edge", "horizontal-edge", "gaussian-blur-5x5", "sharpen"]
    arguments = ["filters", str(shared_photos / "cat.1.jpg"), "--size", "64x48", "--out", str(tmp_path)]
    assert run(arguments + [f"--kernel={name}" for name in kernels]) == 0
    summary = _check_outputs(tmp_path, kernels, (48, 64))
    edge = summary["kernels"][0]
    assert edge["min"] < 0 < edge["max"]  # a real photo has edges of both signs
    with Image.open(tmp_path / "filters.png") as figure:
        assert figure.width > figure.height  # five panels, four to a row: wider than tall


def test_cli_parses_repeated_kernels_and_channels():
    arguments = build_parser().parse_args(["filters", "a.jpg", "--kernel", "sobel-x", "--kernel=-1,1", "--out", "o"])
    assert arguments.kernel == ["sobel-x", "-1,1"] and arguments.colour is False and arguments.padding == "valid"
    assert build_parser().parse_args(["filters", "a.jpg", "--colour", "--out", "o"]).colour is True


def test_a_non_image_is_a_one_line_error(tmp_path):
    (tmp_path / "cat.1.jpg").write_text("this is a text file, not a photo\n")
    result = subprocess.run([sys.executable, "-m", "cnnlab", "filters", str(tmp_path / "cat.1.jpg"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cat.1.jpg" in lines[0] and "not an image" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing written for a bad photo


def test_a_tiny_file_claiming_6000x6000_fails_at_once(tmp_path):
    # It used to be decoded to 36 M grey pixels and filtered: 47 s and 6.2 GB.
    import time

    from cnnlab.errors import UserError
    from cnnlab.explain.filters import FiltersConfig, explore_filters
    from hostile_files import huge_header_jpeg

    path = huge_header_jpeg(tmp_path)
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"truncated image data \(the file is cut short\)"):
        explore_filters(FiltersConfig(image=str(path), out=str(tmp_path / "out")))
    assert time.perf_counter() - started < 5


def test_an_empty_file_is_called_empty(tmp_path):
    from cnnlab.errors import UserError

    (tmp_path / "cat.1.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"cat\.1\.jpg: empty file \(0 bytes\)$"):
        load_photo(tmp_path / "cat.1.jpg")
