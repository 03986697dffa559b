"""The report's photo figures: sample photos per class, the most confidently wrong photos
(fastai's "top losses") and the tutorial's edge-filter demo, reusing `cnnlab filters`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.errors import UserError
from cnnlab.report.figures import new_figure, png_bytes

MAX_CLASSES_SHOWN = 12


def sample_grid(cache, per_class: int = 8, split: str = "train") -> bytes:
    """A row of photos per class, as the cache holds them (the size the models see)."""
    classes = cache.classes[:MAX_CLASSES_SHOWN]
    rows = cache.indices(split)
    if len(rows) == 0:
        rows = np.arange(len(cache.labels))
    height, width, _ = cache.image_shape
    panel = 1.25
    figure = new_figure(per_class * panel * max(width / height, 0.5) + 1.2, len(classes) * panel * 1.08 + 0.5)
    axes = figure.subplots(len(classes), per_class, squeeze=False)
    for class_index, name in enumerate(classes):
        chosen = rows[cache.labels[rows] == class_index][:per_class]
        for column, axis in enumerate(axes[class_index]):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column < len(chosen):
                axis.imshow(np.asarray(cache.images[chosen[column]]), interpolation="antialiased")
            if column == 0:
                axis.set_ylabel(f"{name}\n({int(np.sum(cache.labels[rows] == class_index)):,})", fontsize=10)
    figure.suptitle(f"Sample {split} photos per class, as cached ({width}x{height}); photo count in brackets",
                    fontsize=11)
    return png_bytes(figure)


def top_losses(name: str, images: list[np.ndarray], captions: list[str], split: str) -> bytes:
    """Thumbnails of the most confidently wrong photos, each titled true / predicted / probability (PNG)."""
    return png_bytes(top_losses_figure(name, images, captions, split))


def top_losses_figure(name: str, images: list[np.ndarray], captions: list[str], split: str):
    """The same thumbnails as a Matplotlib Figure."""
    columns = min(len(images), 8)
    rows = -(-len(images) // columns)
    height, width = images[0].shape[:2]
    panel = 1.45
    figure = new_figure(max(columns * panel, 4.0), rows * (panel * min(height / width, 1.5) + 0.5) + 0.3)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, image, caption in zip(axes, images, captions):
        axis.imshow(image, interpolation="antialiased")
        axis.set_title(caption, fontsize=7)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in axes[len(images):]:
        axis.set_axis_off()
    figure.suptitle(f"{name}: most confidently wrong {split} photos", fontsize=10)
    return figure


def most_confidently_wrong(labels: np.ndarray, probabilities: np.ndarray, limit: int) -> list[int]:
    """Positions of wrong predictions, the highest loss (lowest probability of the truth) first.

    probabilities: (n, classes)."""
    predicted = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(predicted != labels)
    truth = probabilities[wrong, labels[wrong]]
    return [int(position) for position in wrong[np.argsort(truth, kind="stable")][:limit]]


def filter_demo(photo: str | Path | None, cache=None) -> tuple[bytes, str]:
    """The tutorial's two edge filters on one photo via `cnnlab filters`; (PNG, photo's name).

    photo None: the first validation photo of a class named 'cat' (the tutorial shows kittens),
    else of class 0, read from the cache's source folder, or its cached pixels when the source
    is gone."""
    from cnnlab.explain.filters import FiltersConfig, explore_filters

    with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as scratch:
        if photo is None:
            photo = _default_photo(cache, Path(scratch))
        written = explore_filters(FiltersConfig(image=str(photo), out=str(Path(scratch) / "filters")))
        return written[0].read_bytes(), Path(photo).name


def _default_photo(cache, scratch: Path) -> Path:
    if cache is None:
        raise UserError("no photo for the filter demo: pass --filters-photo or a cache")
    rows = cache.indices("val")
    if len(rows) == 0:
        rows = np.arange(len(cache.labels))
    preferred = cache.classes.index("cat") if "cat" in cache.classes else 0
    matching = rows[cache.labels[rows] == preferred]
    row = int(matching[0] if len(matching) else rows[0])
    source = Path(cache.paths([row])[0])
    if source.is_file():
        return source
    fallback = scratch / f"{source.stem}-cached.png"
    Image.fromarray(np.asarray(cache.images[row])).save(fallback)
    return fallback
