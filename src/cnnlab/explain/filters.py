"""The convolution explorer behind `cnnlab filters`: a photo through edge, blur and custom kernels.

As in the tutorial, the photo is turned grey (one channel, so one kernel gives one picture)
unless colour is asked for, then each kernel is applied with NumPy (cross-correlation, as a
Keras Conv2D layer computes it) and the results are drawn beside the original.

How a response is shown (the raw values are in filters.json):
- kernels whose weights sum to zero (edge and gradient detectors) respond with signed values
  around 0; we show their absolute value, edge strength, black = flat and white = strong, scaled
  so the 99.5th percentile is white (a few extreme pixels would otherwise make the rest black).
  The sign (dark-to-light or light-to-dark) is dropped from the picture on purpose: it reads
  like the tutorial's edge images.
- other kernels (blur, sharpen, emboss) produce a picture: divided by their sum (unit gain, so an
  unnormalised blur still looks like the photo) and clipped to the photo's 0-255 range.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.decode import BadImage, DecodeOptions, decode_image, open_checked
from cnnlab.data.photo_file import printable_path, read_photo
from cnnlab.explain.convolution import PADDINGS, correlate
from cnnlab.explain.kernels import Kernel, matrix_text, resolve_kernels
from cnnlab.errors import UserError
from cnnlab.outputs import output_folder

# ITU-R BT.601 luma, the weights of Pillow's convert("L"), kept in floating point.
LUMINANCE = np.array([0.299, 0.587, 0.114])
EXIF_ORIENTATION_TAG = 0x0112
BRIGHT_PERCENTILE = 99.5
PANELS_PER_ROW = 4


@dataclass(frozen=True)
class FiltersConfig:
    image: str
    out: str
    kernels: tuple[str, ...] = ()  # names, matrices as text, or .json/.npy files; () = the tutorial's two
    stride: int = 1
    padding: str = "valid"
    colour: bool = False  # False: filter the luminance, as the tutorial; True: every RGB channel
    size: tuple[int, int] | None = None  # (width, height) to resize to first; None = the photo's own size

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise UserError(f"unknown padding {self.padding!r}; choose one of {', '.join(PADDINGS)}")
        if self.stride < 1:
            raise UserError(f"--stride must be at least 1, got {self.stride}")


def load_photo(path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A photo as (height, width, 3) uint8 through the project's decoder (EXIF orientation applied).

    Raises ValueError naming the file for anything that is not a usable photo. The file is read
    through photo_file's checks: a FIFO, a device or a looping link is refused, never opened.
    """
    try:
        data = read_photo(path)
        if size is None:
            # The decoder always resizes; asking for the photo's own (upright) size makes that a copy.
            with open_checked(io.BytesIO(data)) as header:
                width, height = header.size
                if header.getexif().get(EXIF_ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # turned by 90 degrees
                    width, height = height, width
            return decode_image(data, DecodeOptions(width, height, draft=False))
        return decode_image(data, DecodeOptions(*size))
    except BadImage as reason:
        raise UserError(f"{printable_path(path)}: {reason}") from None


def greyscale(photo: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) float luminance in 0-255."""
    return photo.astype(np.float64) @ LUMINANCE


def is_detector(matrix: np.ndarray) -> bool:
    """Weights summing to zero: flat regions give 0, so the response is signed edge/texture strength."""
    return abs(matrix.sum()) <= 1e-9 * np.abs(matrix).sum()


def display_pixels(response: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A response as uint8 pixels for viewing (the rule is in the module docstring)."""
    if is_detector(matrix):
        strength = np.abs(response)
        top = np.percentile(strength, BRIGHT_PERCENTILE) if strength.size else 0.0
        scaled = strength / top * 255.0 if top > 0 else np.zeros_like(strength)
    else:
        scaled = response / matrix.sum()
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def explore_filters(config: FiltersConfig) -> list[Path]:
    """Apply every kernel to the photo; write filters.png, one PNG per kernel and filters.json.

    Returns the written paths (the figure first, the summary last).
    """
    kernels = resolve_kernels(config.kernels)  # bad kernels fail before any decoding or writing
    photo = load_photo(config.image, config.size)
    source = photo.astype(np.float64) if config.colour else greyscale(photo)
    responses = [correlate(source, kernel.matrix, config.stride, config.padding) for kernel in kernels]

    out = Path(config.out)
    output_folder(out)
    written, records = [out / "filters.png"], []
    pixels = [display_pixels(response, kernel.matrix) for response, kernel in zip(responses, kernels)]
    for kernel, response, image in zip(kernels, responses, pixels):
        path = out / f"{kernel.name}.png"
        Image.fromarray(image).save(path)
        written.append(path)
        records.append({
            "name": kernel.name, "description": kernel.description, "matrix": kernel.matrix.tolist(),
            "file": path.name, "output_shape": list(response.shape),
            "min": float(response.min()), "max": float(response.max()),
            "display": "absolute value, 99.5th percentile = white" if is_detector(kernel.matrix)
                       else "divided by the kernel sum, clipped to 0-255",
        })
    original = photo if config.colour else np.clip(source + 0.5, 0, 255).astype(np.uint8)
    # Printable: Matplotlib cannot draw the surrogate escapes of a name that is not UTF-8.
    _draw_figure(written[0], printable_path(Path(config.image).name), original, kernels, pixels, config)

    summary = out / "filters.json"
    summary.write_text(json.dumps({
        "image": printable_path(config.image), "input_shape": list(source.shape),
        "channels": "rgb" if config.colour else "luminance (ITU-R BT.601)",
        "operation": "cross-correlation (no kernel flip), as Keras Conv2D computes it",
        "stride": config.stride, "padding": config.padding,
        "figure": written[0].name, "panels": 1 + len(kernels), "kernels": records,
    }, indent=2) + "\n")
    written.append(summary)
    return written


def _draw_figure(path: Path, title: str, original: np.ndarray, kernels: list[Kernel],
                 pixels: list[np.ndarray], config: FiltersConfig) -> None:
    """Original | each result, titled with the kernel's name, its matrix printed underneath."""
    # The object-oriented API with an Agg canvas: no pyplot, no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    channels = "RGB, each channel filtered" if config.colour else "luminance, as filtered"
    panels = [(f"{title}\n{original.shape[1]}x{original.shape[0]}", original, f"input ({channels})")]
    panels += [(f"{kernel.name}\n{image.shape[1]}x{image.shape[0]}", image, matrix_text(kernel.matrix))
               for kernel, image in zip(kernels, pixels)]
    columns = min(len(panels), PANELS_PER_ROW)
    rows = -(-len(panels) // columns)
    aspect = original.shape[0] / original.shape[1]
    panel_width = 3.6
    text_lines = max(label.count("\n") + 1 for _, _, label in panels)
    panel_height = panel_width * aspect + 0.75 + 0.16 * text_lines  # image + title + matrix
    figure = Figure(figsize=(columns * panel_width, rows * panel_height), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"cross-correlation, as Keras Conv2D: stride {config.stride}, padding '{config.padding}'",
                    fontsize=11)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (name, image, label) in zip(axes, panels):
        axis.imshow(image, cmap=None if image.ndim == 3 else "gray", vmin=0, vmax=255, interpolation="antialiased")
        axis.set_title(name, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel(label, fontsize=8, family="monospace")
    for axis in axes[len(panels):]:
        axis.set_axis_off()
    figure.savefig(path, dpi=100)
