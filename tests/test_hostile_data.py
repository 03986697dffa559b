"""Every hostile kind of file (tests/hostile_files.py) through every entry point that reads photos.

Entry points: survey, prepare (tutorial split over Kaggle names, and stratified), decode_file,
filters, and predict's path expansion + decode. Each outcome is a listed skip with a reason or
a one-line UserError: never a traceback, never a hang (SIGALRM, and subprocess timeouts, end
any test after TIMEOUT_SECONDS), never a silent wrong result (a bad file in a cache, a valid
one decoded to the wrong colours). The folder of photos is never changed, and nothing is
written outside --out.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from cnnlab.data import selection as selection_module
from cnnlab.data import survey as survey_module
from cnnlab.data.cache import PrepareOptions, prepare, read_manifest
from cnnlab.data.decode import DecodeOptions, decode_file
from cnnlab.data.photo_file import printable_path
from cnnlab.data.reader import open_cache
from cnnlab.data.splits import SplitOptions
from cnnlab.data.survey import format_survey, survey
from cnnlab.errors import UserError
from cnnlab.explain.filters import FiltersConfig, explore_filters
from cnnlab.inference.inputs import expand_paths
from hostile_files import COLOURS, KINDS, quadrants

TIMEOUT_SECONDS = 60
WIDTH, HEIGHT = 32, 24  # decoded size in these tests
OPTIONS = DecodeOptions(WIDTH, HEIGHT)
TUTORIAL = SplitOptions("tutorial", train=2, val=1, test=0)  # per class: cat.1, cat.2 train; the last (hostile) val
STRATIFIED = SplitOptions("stratified", val=2, test=2)  # every photo is used
# survey reads headers only: pixel data cut short further on is found by a decode (prepare).
HEADER_SEES_IT = {name for name in KINDS} - {"truncated_jpeg_with_eoi", "truncated_jpeg_without_eoi"}


# conftest's no_hang: a hang fails the test instead of blocking the run.
pytestmark = pytest.mark.usefixtures("no_hang")


# ---- helpers ------------------------------------------------------------------------------------

def good_photos(folder: Path) -> None:
    """Three valid JPEGs per class, Kaggle style (cat.1.jpg ... dog.3.jpg)."""
    folder.mkdir(parents=True, exist_ok=True)
    for label in ("cat", "dog"):
        for number in (1, 2, 3):
            quadrants(48 + 8 * number, 40).save(folder / f"{label}.{number}.jpg", "JPEG", quality=95)


def snapshot(folder: Path) -> dict:
    """Every entry below `folder`: its type and its bytes or link target (a FIFO is never opened)."""
    entries = {}
    for directory, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(directory, name)
            status = os.lstat(path)
            if stat.S_ISLNK(status.st_mode):
                entries[os.fsencode(path)] = ("link", os.readlink(path))
            elif stat.S_ISREG(status.st_mode):
                entries[os.fsencode(path)] = ("file", Path(path).read_bytes())
            else:
                entries[os.fsencode(path)] = ("other", stat.S_IFMT(status.st_mode))
    return entries


def reference(path: Path, width: int, height: int) -> np.ndarray:
    """What the photo must decode to, computed with Pillow directly (upright, RGB, on white)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I"):  # 16-bit grey: scale 0-65535 to 0-255, not clip
            grey = (np.asarray(image, dtype=np.float64) / 257).round().astype(np.uint8)
            image = Image.fromarray(grey).convert("RGB")
        elif image.mode in ("RGBA", "LA") or "transparency" in image.info:
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
        else:
            image = image.convert("RGB")
        return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC))


def centres(height: int = HEIGHT, width: int = WIDTH) -> list[tuple[int, int]]:
    return [(height // 4, width // 4), (height // 4, 3 * width // 4), (3 * height // 4, width // 4),
            (3 * height // 4, 3 * width // 4)]


def assert_correct_rgb(pixels: np.ndarray, path: Path) -> None:
    assert pixels.shape == (HEIGHT, WIDTH, 3) and pixels.dtype == np.uint8
    expected = reference(path, WIDTH, HEIGHT)
    for row, column in centres():
        assert np.abs(pixels[row, column].astype(int) - expected[row, column]).max() <= 8, (row, column)


def assert_one_line(error: BaseException, fragment: str) -> None:
    text = str(error)
    assert "\n" not in text and fragment in text, text
    text.encode()  # printable (strict UTF-8) whatever the file names


@pytest.fixture(params=sorted(KINDS))
def hostile(request, tmp_path):
    """(folder, path of the hostile file, its Kind): a Kaggle folder of good photos plus one hostile file."""
    kind = KINDS[request.param]
    folder = tmp_path / "photos"
    good_photos(folder)
    path = kind.write(folder, kind.name)
    return request.param, folder, path, kind


def vanish_after_listing(monkeypatch, module, key: str, path: Path) -> None:
    """For the vanishing kind: the file is deleted right after `module` lists the folder."""
    if key != "vanishing":
        return
    listing = module.find_labelled_files

    def list_then_delete(*arguments, **options):
        found = listing(*arguments, **options)
        os.remove(path)
        return found

    monkeypatch.setattr(module, "find_labelled_files", list_then_delete)


def without(entries: dict, path: Path) -> dict:
    return {name: value for name, value in entries.items() if name != os.fsencode(path)}


# ---- the matrix: every kind through every entry point -------------------------------------------

def test_decode_file(hostile):
    key, _, path, kind = hostile
    if key == "vanishing":
        os.remove(path)
    pixels, _, reason = decode_file(str(path), OPTIONS)
    if kind.valid:
        assert reason is None
        assert_correct_rgb(pixels, path)
    else:
        assert pixels is None and kind.reason in reason, reason


def test_survey(hostile, monkeypatch):
    key, folder, path, kind = hostile
    before = snapshot(folder)
    vanish_after_listing(monkeypatch, survey_module, key, path)
    report = survey(folder)
    text = format_survey(report)
    text.encode()  # strict UTF-8: a name that is not UTF-8 is printable
    json.dumps(report, ensure_ascii=False).encode()
    reasons = {item["path"]: item["reason"] for item in report["unreadable"]}
    name = printable_path(path.name)
    if kind.valid or key not in HEADER_SEES_IT:
        assert name not in reasons and report["readable_per_class"]["cat"] == 4
    else:
        assert kind.reason in reasons[name] and report["readable_per_class"]["cat"] == 3
        assert f"  {name}: {reasons[name]}" in text
    assert without(snapshot(folder), path) == without(before, path)


@pytest.mark.parametrize("split", [TUTORIAL, STRATIFIED], ids=["tutorial", "stratified"])
def test_prepare(hostile, split, monkeypatch, tmp_path):
    key, folder, path, kind = hostile
    before, outside = snapshot(folder), set(os.listdir(tmp_path))
    vanish_after_listing(monkeypatch, selection_module, key, path)
    result = prepare(folder, tmp_path / "cache", PrepareOptions(decode=OPTIONS, split=split, workers=1),
                     show_progress=False)
    manifest = read_manifest(tmp_path / "cache")
    records = {record["path"]: row for row, record in enumerate(manifest["records"])}
    skipped = {item["path"]: item["reason"] for item in manifest["skipped"]}
    if kind.valid:
        assert path.name in records and not skipped  # the record keeps the real name: it finds the file
        pixels = open_cache(tmp_path / "cache").images[records[path.name]]
        assert_correct_rgb(np.asarray(pixels), path)
        assert (folder / manifest["records"][records[path.name]]["path"]).exists()
    else:
        assert path.name not in records  # never a bad file in the cache
        assert kind.reason in skipped[printable_path(path.name)]
    assert len(records) == (5 if split is TUTORIAL else 6) + kind.valid  # tutorial: cat.3 is left unused
    for item in result.skipped:  # what the CLI prints: printable whatever the names
        f"  skipped {item['path']}: {item['reason']}".encode()
    json.loads((tmp_path / "cache" / "prepare-report.json").read_text())
    assert without(snapshot(folder), path) == without(before, path)
    assert set(os.listdir(tmp_path)) == outside | {"cache"}


def test_filters(hostile, tmp_path):
    key, folder, path, kind = hostile
    if key == "vanishing":
        os.remove(path)
    before = snapshot(folder)
    config = FiltersConfig(image=str(path), out=str(tmp_path / "filters"))
    if kind.valid:
        written = explore_filters(config)
        summary = json.loads(written[-1].read_text())
        assert summary["image"] == printable_path(path) and (tmp_path / "filters" / "filters.png").stat().st_size
    else:
        with pytest.raises(UserError) as error:
            explore_filters(config)
        assert_one_line(error.value, kind.reason)
        assert printable_path(path) in str(error.value)
        assert not (tmp_path / "filters").exists()  # refused before writing anything
    assert snapshot(folder) == before


def test_predict_inputs(hostile):
    key, folder, path, kind = hostile
    from_folder = {source.path: source for source in expand_paths([str(folder)])}
    by_name = expand_paths([str(path)])
    assert str(path) in from_folder and [source.path for source in by_name] == [str(path)]
    if key == "vanishing":
        os.remove(path)
    for source in (from_folder[str(path)], by_name[0]):
        assert source.problem is None
        pixels, _, reason = decode_file(source.path, OPTIONS)
        if kind.valid:
            assert_correct_rgb(pixels, path)
        else:
            assert pixels is None and kind.reason in reason


# ---- the valid odd formats decode to the right colours, not just to some picture -----------------

def _decoded(tmp_path, key) -> tuple[np.ndarray, Path]:
    kind = KINDS[key]
    path = kind.write(tmp_path, kind.name)
    pixels, _, reason = decode_file(str(path), OPTIONS)
    assert reason is None
    return pixels, path


def _luminance(colour) -> float:
    red, green, blue = colour
    return 0.299 * red + 0.587 * green + 0.114 * blue


@pytest.mark.parametrize("key", ["gif", "webp", "tiff", "bmp", "non_utf8_name"])
def test_plain_formats_keep_their_colours(tmp_path, key):
    pixels, _ = _decoded(tmp_path, key)
    for (row, column), colour in zip(centres(), COLOURS):
        assert np.abs(pixels[row, column].astype(int) - colour).max() <= 12, (key, colour)


def test_cmyk_is_not_inverted(tmp_path):
    pixels, _ = _decoded(tmp_path, "cmyk_jpeg")
    red = pixels[centres()[0]].astype(int)
    assert red[0] > 150 and red[1] < 110 and red[2] < 110, red


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    pixels, _ = _decoded(tmp_path, "grey16_png")
    for (row, column), colour in zip(centres(), COLOURS):
        assert abs(int(pixels[row, column, 0]) - _luminance(colour)) <= 3
        assert len(set(pixels[row, column].tolist())) == 1  # grey


def test_transparent_palette_pixels_are_white(tmp_path):
    pixels, _ = _decoded(tmp_path, "palette_png_with_transparency")
    assert tuple(pixels[centres()[3]]) == (255, 255, 255)
    assert np.abs(pixels[centres()[0]].astype(int) - COLOURS[0]).max() <= 12


def test_exif_rotation_is_applied(tmp_path):
    # Orientation 6: shown turned 90 degrees clockwise, so the stored bottom-left (blue) quadrant
    # comes to the top-left and the stored top-left (red) one to the top-right.
    pixels, _ = _decoded(tmp_path, "exif_rotated_jpeg")
    assert np.abs(pixels[centres()[0]].astype(int) - COLOURS[2]).max() <= 12
    assert np.abs(pixels[centres()[1]].astype(int) - COLOURS[0]).max() <= 12


# ---- all kinds at once through the command line: no traceback, no hang ------------------------

def _all_kinds(folder: Path) -> dict[str, Path]:
    """Every kind but the vanishing one (it needs a listing to vanish after), cat.9001 ... cat.9019."""
    good_photos(folder)
    paths = {}
    for number, key in enumerate(sorted(KINDS), start=9001):
        if key != "vanishing":
            kind = KINDS[key]
            paths[key] = kind.write(folder, kind.name.replace("9001", str(number)))
    return paths


def _cnnlab(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, arguments)], capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS, errors="backslashreplace", check=False)


def test_prepare_and_survey_commands_on_every_kind(tmp_path):
    paths = _all_kinds(tmp_path / "photos")
    before, outside = snapshot(tmp_path / "photos"), set(os.listdir(tmp_path))
    result = _cnnlab("prepare", tmp_path / "photos", "--out", tmp_path / "cache", "--split", "stratified",
                     "--val", "2", "--test", "2", "--size", f"{WIDTH}x{HEIGHT}", "--workers", "1")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    manifest = read_manifest(tmp_path / "cache")
    kept = {record["path"] for record in manifest["records"]}
    for key, path in paths.items():
        kind = KINDS[key]
        if kind.valid:
            assert path.name in kept, key
        else:
            assert path.name not in kept, key
            line = next(line for line in result.stdout.splitlines() if f"skipped {printable_path(path.name)}:" in line)
            assert kind.reason in line, (key, line)
    assert snapshot(tmp_path / "photos") == before and set(os.listdir(tmp_path)) == outside | {"cache"}

    surveyed = _cnnlab("survey", tmp_path / "photos")
    assert surveyed.returncode == 0 and "Traceback" not in surveyed.stderr, surveyed.stderr
    for key, path in paths.items():
        if not KINDS[key].valid and key in HEADER_SEES_IT:
            assert f"  {printable_path(path.name)}: " in surveyed.stdout, key


@pytest.mark.parametrize("key", ["fifo", "symlink_to_dev_zero", "huge_header_jpeg", "zero_byte", "non_utf8_name"])
def test_filters_command(tmp_path, key):
    kind = KINDS[key]
    path = kind.write(tmp_path / "photos", kind.name)
    result = _cnnlab("filters", path, "--out", tmp_path / "out")
    assert "Traceback" not in result.stderr, result.stderr
    if kind.valid:
        assert result.returncode == 0 and (tmp_path / "out" / "filters.png").is_file()
    else:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and kind.reason in lines[0], result.stderr


# ---- predict's rows: a name that is not UTF-8 costs nobody's results ------------------------------

@pytest.mark.parametrize("format", ["csv", "json", "table"])
def test_prediction_rows_with_a_name_that_is_not_utf8(tmp_path, format):
    from types import SimpleNamespace

    from cnnlab.inference.writers import make_writer

    odd = str(tmp_path / os.fsdecode(b"cat.\xff\xfe.jpg"))
    rows = [SimpleNamespace(path=odd, label="cat", probabilities={"cat": 0.9, "dog": 0.1}, error=None),
            SimpleNamespace(path=odd + ".bad", label=None, probabilities={}, error="not an image (unrecognised format)"),
            SimpleNamespace(path=str(tmp_path / "dog.1.jpg"), label="dog", probabilities={"cat": 0.2, "dog": 0.8}, error=None)]
    out = tmp_path / f"predictions.{format}"
    with open(out, "w", newline="", encoding="utf-8") as stream:  # strict, as `predict --out` opens it
        writer = make_writer(format, stream, ["cat", "dog"], 0.5, {"run": "r"}, paths=[row.path for row in rows])
        writer.begin()
        writer.write(rows)
        writer.end()
    text = out.read_text(encoding="utf-8")
    if format == "json":
        paths = [row["path"] for row in json.loads(text)["predictions"]]
        assert paths == [printable_path(odd), printable_path(odd) + ".bad", str(tmp_path / "dog.1.jpg")]
        assert paths[0].endswith("cat.\\xff\\xfe.jpg")
    else:
        assert text.count("cat.\\xff\\xfe.jpg") == 2 and "dog.1.jpg" in text  # every row, printable
