"""Synthetic photo folders and caches for tests that must run without the shared photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.cache import PrepareOptions, prepare
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.splits import SplitOptions


def stripes(count: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (count, size, size, 3) images of stripes with a random period (3-6 px), phase,
    colours and pixel noise; label 0 = horizontal, 1 = vertical. A mirror image or a shift
    keeps the class, so flip and translation augmentation are label-preserving here too."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    rng.shuffle(labels)
    coordinate = np.arange(size, dtype=np.float32)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        period, phase = rng.uniform(3, 6), rng.uniform(0, 2 * np.pi)
        wave = (np.sin(2 * np.pi * coordinate / period + phase) > 0).astype(np.float32)
        pattern = np.tile(wave[:, None], (1, size)) if label == 0 else np.tile(wave[None, :], (size, 1))
        dark, light = rng.uniform(0, 100, 3), rng.uniform(155, 255, 3)
        image = dark + pattern[..., None] * (light - dark) + rng.normal(0, 12, (size, size, 3))
        images[index] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels


def stripes_cache(root: Path, per_class: int = 24, size: int = 32, val: int = 8, test: int = 8) -> Path:
    """A prepared cache of stripe PNGs in class folders ('horizontal', 'vertical'), stratified
    split with `val` and `test` images in all; returns the cache folder."""
    images, labels = stripes(2 * per_class, size)
    photos = root / "photos"
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = photos / ("horizontal", "vertical")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    options = PrepareOptions(decode=DecodeOptions(size, size), split=SplitOptions("stratified", val=val, test=test),
                             workers=1)
    prepare(photos, root / "cache", options, show_progress=False)
    return root / "cache"
