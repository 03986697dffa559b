"""The Data tab: what is in --data (cnnlab's survey), sample photos per class, the split.

The survey reads file headers only (cnnlab.data.survey); the shape histogram counts every
photo's width and height in bins. Thumbnails are decoded on request, small, within the decode
memory budget serve uses (a 100-megapixel photo cannot take the studio's memory with it), and
never written anywhere: the photo folder is only read.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter

import numpy as np

from cnnlab.studio.folders import Folders

SAMPLES_PER_CLASS = 12
THUMBNAIL_SIZE = 160  # longest side, pixels
HISTOGRAM_BINS = 10


def survey_data(folders: Folders, samples: int = SAMPLES_PER_CLASS) -> dict:
    """The survey, a histogram of widths and heights, and the first photos of each class."""
    from cnnlab.data.survey import survey

    root = folders.require_data()
    catalogue = folders.catalogue(refresh=True)
    report = survey(root, top=1_000_000)
    shapes = report.pop("top_shapes")
    report["top_shapes"] = shapes[:10]
    report["histogram"] = {axis: histogram([(shape[axis], shape["count"]) for shape in shapes])
                           for axis in ("width", "height")}
    per_class: dict[str, list[str]] = {}
    for path, label in catalogue.items():
        chosen = per_class.setdefault(label, [])
        if len(chosen) < samples:
            chosen.append(path)
    report["samples"] = per_class
    return report


def histogram(values: list[tuple[int, int]], bins: int = HISTOGRAM_BINS) -> list[dict]:
    """[(value, count)] -> bins of equal width over the range: {"low", "high", "count"}."""
    if not values:
        return []
    points = np.array([value for value, _ in values], dtype=np.float64)
    weights = np.array([count for _, count in values], dtype=np.float64)
    low, high = points.min(), points.max()
    if low == high:
        return [{"low": int(low), "high": int(high), "count": int(weights.sum())}]
    counts, edges = np.histogram(points, bins=bins, range=(low, high), weights=weights)
    return [{"low": int(round(edges[index])), "high": int(round(edges[index + 1])), "count": int(counts[index])}
            for index in range(len(counts))]


def split_counts(folders: Folders, val: float | int | None = None, test: float | int | None = None,
                 seed: int | None = None) -> dict:
    """How a stratified split with these options divides each class (what training will use)."""
    from cnnlab.data.splits import SplitOptions, plan_splits

    catalogue = folders.catalogue()
    paths, labels = list(catalogue), list(catalogue.values())
    options = SplitOptions("stratified", None, val, test, seed).resolved()
    plan = plan_splits(paths, labels, options)
    counts: dict[str, Counter] = {}
    for label, split in zip(labels, plan.assignment):
        counts.setdefault(label, Counter())[split or "unused"] += 1
    return {"options": options.to_dict(), "flags": options.flags(),
            "per_class": {label: {name: counter.get(name, 0) for name in ("train", "val", "test")}
                          for label, counter in sorted(counts.items())}}


def thumbnail(folders: Folders, relative: str, decoding) -> bytes:
    """A JPEG of the photo, longest side THUMBNAIL_SIZE. UserError for an unreadable photo;
    BudgetRefusal when the decode memory is full or the photo could never fit it."""
    from PIL import Image

    pixels = decode_for_view(folders, relative, decoding, THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def decode_for_view(folders: Folders, relative: str, decoding, longest_side: int) -> np.ndarray:
    """A photo of --data (by its listed name) decoded to `longest_side`, within the decode
    memory budget. UserError for an unreadable photo; BudgetRefusal when the budget is full."""
    from cnnlab.data.decode import BadImage, DecodeOptions, decode_image
    from cnnlab.data.photo_file import read_photo
    from cnnlab.errors import UserError
    from cnnlab.serve.views import view_size

    path = folders.photo_path(relative)
    try:
        data = read_photo(path)
        options = DecodeOptions(*view_size(data, longest_side))
        with reserved(decoding, data, options):
            return decode_image(data, options)
    except (BadImage, OSError) as reason:
        raise UserError(f"{relative}: {reason}") from None


class BudgetRefusal(Exception):
    """The decode memory cannot take this photo now (status 503) or ever (413)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def reserved(decoding, data: bytes, *options):
    """Hold the photo's decode cost in serve's DecodeBudget (through a PredictionService's
    `reserved`, the same estimate serve uses) while it is decoded; BudgetRefusal if it cannot."""
    with decoding.reserved(data, *options) as refusal:
        if refusal is not None:
            error, kind = refusal
            raise BudgetRefusal(413 if kind == "too_large" else 503, error)
        yield
