"""2-D convolution as CNN layers compute it, in NumPy: cross-correlation with stride and padding.

Keras' Conv2D (like every deep-learning framework) does not flip the kernel, so strictly it
computes a cross-correlation: out[i, j] = sum over (a, b) of image[i*s + a, j*s + b] * kernel[a, b].
We do the same, so a kernel here means exactly what it would mean as a layer's weights
(`scipy.signal.correlate2d`, not `convolve2d`, is the matching reference).
"""

from __future__ import annotations

import numpy as np

from cnnlab.errors import UserError

PADDINGS = ("valid", "same")


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """Zeros before and after one axis for Keras/TensorFlow 'same' padding.

    The output keeps ceil(size / stride) positions; when the total padding is odd the extra
    zero goes after (bottom/right), as TensorFlow does, so results match a Keras model.
    """
    output = -(-size // stride)
    total = max((output - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def output_shape(height: int, width: int, kernel_shape: tuple[int, int], stride: int = 1,
                 padding: str = "valid") -> tuple[int, int]:
    """The (height, width) of the result: 'valid' shrinks to (H - kh) // stride + 1, 'same' keeps ceil(H / stride)."""
    if padding == "same":
        return -(-height // stride), -(-width // stride)
    return (height - kernel_shape[0]) // stride + 1, (width - kernel_shape[1]) // stride + 1


def correlate(image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: str = "valid") -> np.ndarray:
    """Cross-correlate a (H, W) image, or each channel of a (H, W, C) image, with a 2-D kernel."""
    if padding not in PADDINGS:
        raise UserError(f"unknown padding {padding!r}; choose one of {', '.join(PADDINGS)}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise UserError(f"stride must be a positive whole number, got {stride!r}")
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.size == 0:
        raise UserError(f"the kernel must be a non-empty 2-D matrix, got shape {kernel.shape}")
    if image.ndim == 3:
        return np.stack([correlate(image[..., channel], kernel, stride, padding)
                         for channel in range(image.shape[2])], axis=-1)
    if image.ndim != 2:
        raise UserError(f"expected a (height, width) or (height, width, channels) image, got shape {image.shape}")

    kernel_height, kernel_width = kernel.shape
    if padding == "same":
        image = np.pad(image, (same_padding(image.shape[0], kernel_height, stride),
                               same_padding(image.shape[1], kernel_width, stride)))
    height, width = image.shape
    if kernel_height > height or kernel_width > width:
        raise UserError(f"the {kernel_height}x{kernel_width} kernel is larger than the {height}x{width} image "
                         "(rows x columns); use 'same' padding or a bigger image")
    out_height = (height - kernel_height) // stride + 1
    out_width = (width - kernel_width) // stride + 1

    # One shifted, strided view of the image per kernel weight: kh * kw vectorised multiply-adds
    # instead of a Python loop over pixels, and with a stride only the kept positions are computed.
    result = np.zeros((out_height, out_width))
    for row in range(kernel_height):
        for column in range(kernel_width):
            weight = kernel[row, column]
            if weight != 0:
                result += weight * image[row:row + (out_height - 1) * stride + 1:stride,
                                         column:column + (out_width - 1) * stride + 1:stride]
    return result
