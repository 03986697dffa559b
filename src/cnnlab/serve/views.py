"""Pictures for the web page's `POST /explain`: what edge filters and the model see in a photo.

- edge views: the photo at a viewing size (longest side VIEW_SIZE, aspect kept), turned grey
  and cross-correlated with the convolution explorer's kernels (cnnlab.explain.filters), shown
  as `cnnlab filters` shows them;
- the model's input: the photo as the run decodes it (its size and fit), enlarged for viewing;
- Grad-CAM: that input with the heatmap laid over it in red (cnnlab.explain.saliency).
Each is a PNG data URL, so the page needs no second request and no file is written.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from cnnlab.data.decode import DecodeOptions, decode_image, open_checked
from cnnlab.explain.convolution import correlate
from cnnlab.explain.filters import display_pixels, greyscale
from cnnlab.explain.kernels import resolve_kernels

VIEW_SIZE = 224  # longest side of the edge views, in pixels
VIEW_KERNELS = ("vertical-edge", "horizontal-edge", "sobel-x", "laplacian")
EXIF_ORIENTATION_TAG = 0x0112
HEAT_COLOUR = np.array([255.0, 32.0, 0.0])
HEAT_OPACITY = 0.6


def png_data_url(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def view_size(data: bytes, longest: int = VIEW_SIZE) -> tuple[int, int]:
    """(width, height) with the photo's upright aspect ratio and the longest side <= `longest`."""
    with open_checked(io.BytesIO(data)) as header:
        width, height = header.size
        if header.getexif().get(EXIF_ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # turned by 90 degrees
            width, height = height, width
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def edge_views(data: bytes) -> list[dict]:
    """The grey photo and one picture per kernel. Raises BadImage as the decoder does."""
    photo = decode_image(data, DecodeOptions(*view_size(data)))
    grey = greyscale(photo)
    views = [{"name": "grey", "description": "the photo in grey (luminance), what the filters see",
              "image": png_data_url(np.clip(grey + 0.5, 0, 255).astype(np.uint8))}]
    for kernel in resolve_kernels(VIEW_KERNELS):
        response = correlate(grey, kernel.matrix, 1, "same")
        views.append({"name": kernel.name, "description": kernel.description,
                      "image": png_data_url(display_pixels(response, kernel.matrix))})
    return views


def enlarge(pixels: np.ndarray, longest: int = VIEW_SIZE // 2) -> np.ndarray:
    """A small model input blown up with nearest-neighbour, so its pixels stay visible."""
    height, width = pixels.shape[:2]
    factor = max(1, longest // max(height, width))
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


def heat_overlay(pixels: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The heatmap (height, width) in [0, 1] over the (height, width, 3) photo, in red."""
    weight = (HEAT_OPACITY * np.clip(heatmap, 0.0, 1.0))[..., None]
    return np.clip(pixels * (1 - weight) + HEAT_COLOUR * weight + 0.5, 0, 255).astype(np.uint8)
