"""The pictures of `cnnlab explain`: learned kernels, feature maps and the Grad-CAM overlay.

Drawn with Matplotlib's object-oriented API on an Agg canvas (no pyplot, no global backend
switch, no display), as the filter explorer's figure is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError

MAX_COLUMNS = 8  # feature maps per row
CELL_INCHES = 1.3
HEATMAP_COLOURS = "jet"
OVERLAY_OPACITY = 0.45


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _bare(axis) -> None:
    axis.set_xticks([])
    axis.set_yticks([])


def kernel_grid(count: int) -> tuple[int, int]:
    """(rows, columns) for `count` kernels: about square, at least 8 across when there are 8."""
    columns = min(count, max(MAX_COLUMNS, math.ceil(math.sqrt(count))))
    return -(-count // columns), columns


def kernel_pictures(weights: np.ndarray) -> np.ndarray:
    """(kh, kw, in, out) Conv2D weights -> (out, kh, kw, 3) RGB or (out, kh, kw) grey in [0, 1].

    Keras stores Conv2D kernels as (kh, kw, in, out) whatever the image data format. With three
    input channels (the photo's R, G, B) each kernel is shown in colour; otherwise as the mean
    over its input channels. Each kernel is scaled to its own min..max, so its pattern shows
    whatever its magnitude (a flat kernel is mid-grey).
    """
    if weights.ndim != 4:
        raise UserError(f"expected Conv2D weights (kh, kw, in, out), got shape {weights.shape}")
    kernels = np.moveaxis(weights.astype(np.float64), -1, 0)  # (out, kh, kw, in)
    if kernels.shape[-1] != 3:
        kernels = kernels.mean(axis=-1)
    low = kernels.min(axis=tuple(range(1, kernels.ndim)), keepdims=True)
    span = kernels.max(axis=tuple(range(1, kernels.ndim)), keepdims=True) - low
    return np.where(span > 0, (kernels - low) / np.where(span > 0, span, 1.0), 0.5)


def draw_kernels(path: Path, weights: np.ndarray, layer: str, model: str) -> tuple[int, int]:
    """One cell per kernel of the first convolution; returns the grid's (rows, columns)."""
    pictures = kernel_pictures(weights)
    rows, columns = kernel_grid(len(pictures))
    figure = _figure(columns * 0.9 + 0.4, rows * 0.9 + 1.0)
    colour = "RGB: the weights on the red, green and blue inputs" if pictures.ndim == 4 else "mean over input channels"
    figure.suptitle(f"{model}: the {len(pictures)} learned {weights.shape[0]}x{weights.shape[1]} kernels of {layer}\n"
                    f"each scaled to its own min..max; {colour}", fontsize=9)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for index, (axis, picture) in enumerate(zip(axes, pictures)):
        axis.imshow(picture, cmap=None if picture.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(str(index), fontsize=7, pad=2)
        _bare(axis)
    for axis in axes[len(pictures):]:
        axis.set_axis_off()
    figure.savefig(path, dpi=100)
    return rows, columns


def draw_feature_maps(path: Path, name: str, photo: np.ndarray, maps: dict[str, np.ndarray], channels: int) -> None:
    """The photo as the model saw it, then the first `channels` maps of each layer (one block per
    layer, its name as the title). Each map is scaled to its own range (viridis: dark = low);
    'flat' marks a map with one value everywhere (e.g. a ReLU that never fired)."""
    shown = {layer: values[:channels] for layer, values in maps.items()}
    columns = min(MAX_COLUMNS, max(len(values) for values in shown.values()))
    blocks = [(layer, values, -(-len(values) // columns)) for layer, values in shown.items()]
    aspect = photo.shape[0] / photo.shape[1]
    cell = CELL_INCHES
    heights = [2.2 * cell * aspect + 0.5] + [rows * (cell * aspect + 0.25) + 0.45 for _, _, rows in blocks]
    figure = _figure(columns * cell + 0.4, sum(heights))
    panels = figure.subfigures(len(heights), 1, height_ratios=heights, squeeze=False).ravel()
    axis = panels[0].subplots()
    axis.imshow(photo, interpolation="antialiased")
    axis.set_title(f"{name} as the model sees it ({photo.shape[1]}x{photo.shape[0]})", fontsize=9)
    _bare(axis)
    for panel, (layer, values, rows) in zip(panels[1:], blocks):
        total = len(maps[layer])
        panel.suptitle(f"{layer}: {total} maps of {values.shape[2]}x{values.shape[1]}"
                       + (f", the first {len(values)} shown" if len(values) < total else ""), fontsize=9)
        axes = panel.subplots(rows, columns, squeeze=False).ravel()
        for index, (axis, values_map) in enumerate(zip(axes, values)):
            flat = values_map.max() == values_map.min()
            axis.imshow(values_map, cmap="viridis", interpolation="nearest")
            axis.set_title(f"{index}" + (" flat" if flat else ""), fontsize=7, pad=2)
            _bare(axis)
        for axis in axes[len(values):]:
            axis.set_axis_off()
    figure.savefig(path, dpi=100)


def draw_grad_cam(path: Path, title: str, photo: np.ndarray, heatmap: np.ndarray, layer: str,
                  peak: float | None) -> None:
    """Photo | Grad-CAM heatmap (0..1) | the heatmap over the photo."""
    aspect = photo.shape[0] / photo.shape[1]
    figure = _figure(3 * 3.0 + 0.8, 3.0 * aspect + 1.1)
    note = ("no positive evidence: every channel weighted sum was <= 0" if not peak
            else "red = regions that raised the predicted class's score")
    figure.suptitle(f"{title}\nGrad-CAM on {layer}: {note}", fontsize=10)
    axes = figure.subplots(1, 3)
    axes[0].imshow(photo, interpolation="antialiased")
    axes[0].set_title("input", fontsize=9)
    image = axes[1].imshow(heatmap, cmap=HEATMAP_COLOURS, vmin=0, vmax=1, interpolation="bilinear")
    axes[1].set_title("Grad-CAM", fontsize=9)
    axes[2].imshow(photo, interpolation="antialiased")
    axes[2].imshow(heatmap, cmap=HEATMAP_COLOURS, vmin=0, vmax=1, alpha=OVERLAY_OPACITY, interpolation="bilinear")
    axes[2].set_title("overlay", fontsize=9)
    for axis in axes:
        _bare(axis)
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="relative importance")
    figure.savefig(path, dpi=100)
