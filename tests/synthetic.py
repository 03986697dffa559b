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


SHAPES = ("circle", "square", "triangle")


def shape_image(shape: str, rng: np.random.Generator, size: int = 32, scale: int = 2) -> Image.Image:
    """One filled shape of random size, position and colour on a random background, with a
    little pixel noise. Drawn at `scale` times the size and reduced, so the edges are smooth."""
    from PIL import ImageDraw

    canvas = size * scale
    background = tuple(int(value) for value in rng.integers(0, 256, 3))
    # A foreground at least 120 away from the background in some channel keeps every shape visible.
    while True:
        foreground = tuple(int(value) for value in rng.integers(0, 256, 3))
        if max(abs(a - b) for a, b in zip(foreground, background)) >= 120:
            break
    image = Image.new("RGB", (canvas, canvas), background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.4) * canvas
    centre_x, centre_y = rng.uniform(radius, canvas - radius, 2)
    if shape == "circle":
        draw.ellipse([centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius], fill=foreground)
    elif shape == "square":
        side = radius * 0.9
        draw.rectangle([centre_x - side, centre_y - side, centre_x + side, centre_y + side], fill=foreground)
    elif shape == "triangle":
        angle = rng.uniform(0, 2 * np.pi)
        corners = [(centre_x + radius * np.cos(angle + turn * 2 * np.pi / 3),
                    centre_y + radius * np.sin(angle + turn * 2 * np.pi / 3)) for turn in range(3)]
        draw.polygon(corners, fill=foreground)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    pixels = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    pixels += rng.normal(0, 8, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def shapes_folder(root: Path, per_class: int, size: int = 32, seed: int = 0,
                  shapes: tuple[str, ...] = SHAPES) -> Path:
    """Class folders (root/circle/0000.png, ...) of `per_class` rendered shapes each."""
    rng = np.random.default_rng(seed)
    for shape in shapes:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            shape_image(shape, rng, size).save(folder / f"{index:04d}.png")
    return root
