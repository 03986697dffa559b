"""Photos to model inputs: what a recipe's pixel_scale and Keras' image layout mean for a batch.

Training batches, evaluation, prediction, explanation and export all convert through this one
function, so a model sees the same numbers wherever its photos come from.
"""

from __future__ import annotations

import numpy as np

from cnnlab.backend import image_data_format


def to_model_input(pixels: np.ndarray, pixel_scale: str, layout: str | None = None) -> np.ndarray:
    """uint8 (n, height, width, 3) -> float32, scaled, in `layout` ('channels_first' or
    'channels_last'; default: Keras' image data format). ONNX Runtime passes its model's layout,
    so that the Keras-free path feeds the numbers the Keras one does without importing Keras."""
    batch = pixels.astype(np.float32)
    if pixel_scale == "unit":
        batch *= 1.0 / 255.0
    if (layout or image_data_format()) == "channels_first":
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return batch


def width_axis(layout: str | None = None) -> int:
    """The axis of a batch of model inputs that runs left to right (for test-time mirror images)."""
    return 3 if (layout or image_data_format()) == "channels_first" else 2
