"""The one place that configures Keras: backend, image layout and precision.

Keras picks its backend once, when it is first imported, from KERAS_BACKEND. cnnlab's default
is PyTorch with channels_first images (PyTorch's convolutions are NCHW; with channels_last
Keras transposes at every convolution, 2.2x slower: benchmarks/training_speed.py with
CNNLAB_IMAGE_FORMAT=channels_last against the default). Every cnnlab
module gets Keras through this module:

    from cnnlab.backend import keras

The first such import configures Keras, unless the caller imported Keras before cnnlab: then
the caller's own backend and image layout are respected, untouched. `configure_keras()` is the
explicit call for a caller who wants to choose (a backend name, or KERAS_BACKEND and
CNNLAB_IMAGE_FORMAT in the environment).

Importing this module imports no Keras (6.5 s and 478 MB on PyTorch, which pulls SciPy,
scikit-learn and Matplotlib): commands that list models or predict through ONNX Runtime never
pay for it. It only notes whether Keras was already loaded, so that "the caller came first" is
decided by who imported Keras before cnnlab, not by who asked for it first; and when Keras is
not loaded yet, it makes PyTorch the default of KERAS_BACKEND, so that `import cnnlab.models,
keras` gets cnnlab's backend as it did when cnnlab.models imported Keras itself.

The memory allocator, which must be set before the process starts, is cnnlab.runtime's.
"""

from __future__ import annotations

import os
import sys

from cnnlab.errors import UserError

DEFAULT_BACKEND = "torch"
# Each backend's fast layout on a CPU: PyTorch's convolutions are NCHW, TensorFlow's CPU
# kernels NHWC. CNNLAB_IMAGE_FORMAT overrides.
IMAGE_DATA_FORMATS = {"torch": "channels_first", "tensorflow": "channels_last", "jax": "channels_last"}
IMAGE_FORMAT_SWITCH = "CNNLAB_IMAGE_FORMAT"

_configured = False
# Keras loaded before any cnnlab module that uses it: the caller set it up, and cnnlab leaves it be.
_CALLER_IMPORTED_KERAS = "keras" in sys.modules
if not _CALLER_IMPORTED_KERAS:
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)


def configure_keras(backend: str | None = None):
    """Choose the backend (PyTorch unless KERAS_BACKEND says otherwise) and its image layout
    (channels_first on PyTorch, channels_last on TensorFlow and JAX); returns keras.

    The backend can only be chosen before Keras is first imported in this process."""
    global _configured
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    # TensorFlow's C++ start-up chatter hides our own messages.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    layout = os.environ.get(IMAGE_FORMAT_SWITCH) or IMAGE_DATA_FORMATS.get(keras.backend.backend(), "channels_last")
    if layout not in ("channels_first", "channels_last"):
        raise UserError(f"{IMAGE_FORMAT_SWITCH}={layout!r}: use channels_first or channels_last")
    keras.config.set_image_data_format(layout)
    if keras.backend.backend() == "torch":
        _flush_denormals()
    _configured = True
    return keras


def _flush_denormals() -> None:
    """Have the CPU treat denormal floats (below 1.2e-38) as zero in this process's threads.

    Arithmetic on denormals takes a slow path on x86 CPUs. A model whose sigmoid saturates (the
    tutorial's mlp) gets zero gradients, and Adam's decaying moment estimates then sink into that
    range: its epochs slowed from 21 to 37 s over 5 epochs, and ran at 14-16 s with flushing, the
    same losses (`cnnlab train mlp`, 2 cores). TensorFlow, the tutorial's engine, flushes them in
    its CPU worker threads too, so this is also its arithmetic. Set before the first parallel
    operation, so that the worker threads PyTorch starts later inherit it."""
    import torch

    torch.set_flush_denormal(True)


def ensure_keras():
    """keras, configured once: by configure_keras() when cnnlab is first, else as the caller left it."""
    global _configured
    if not _configured:
        if _CALLER_IMPORTED_KERAS:
            _configured = True  # the caller imported (and perhaps configured) Keras first: respect it
        else:
            configure_keras()  # also when the caller imported Keras after cnnlab: cnnlab came first
    import keras

    return keras


def forget_finished_models() -> None:
    """Clear Keras' global state (layer-name counters, the functional API's records) and collect
    the models no one holds any more. A process that trains model after model (`cnnlab reproduce`)
    otherwise keeps each finished model's memory: measured, 1.76 GB resident after conv1, 2.31 GB
    after conv2 and conv1 again; with this, flat. Each model is then also named as in a fresh
    process. The image layout and the dtype policy are kept."""
    if _configured or "keras" in sys.modules:
        ensure_keras().backend.clear_session(free_memory=True)


def image_data_format() -> str:
    """Keras' image layout without importing Keras: the one in use once Keras is loaded, else the
    one cnnlab's set-up will choose (CNNLAB_IMAGE_FORMAT, else the backend's fast layout)."""
    if _configured or "keras" in sys.modules:
        return ensure_keras().config.image_data_format()
    layout = os.environ.get(IMAGE_FORMAT_SWITCH) or IMAGE_DATA_FORMATS.get(
        os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND), "channels_last")
    if layout not in ("channels_first", "channels_last"):
        raise UserError(f"{IMAGE_FORMAT_SWITCH}={layout!r}: use channels_first or channels_last")
    return layout


def __getattr__(name: str):
    # `from cnnlab.backend import keras`: the configured module, configured on first request.
    if name == "keras":
        return ensure_keras()
    raise AttributeError(f"module 'cnnlab.backend' has no attribute {name!r}")


def backend_name() -> str:
    return ensure_keras().backend.backend()


def channels_first() -> bool:
    """True when images are (channels, height, width) in the current Keras configuration."""
    return ensure_keras().config.image_data_format() == "channels_first"


def no_gradient():
    """A context for inference on the configured backend: on PyTorch, torch.no_grad(). Calling a
    Keras model directly (not through predict) with trainable weights otherwise records the whole
    forward pass for a backward pass that never comes, keeping every layer's output alive: a
    resnet9 evaluation at 256 photos a batch peaked at 3.3 GB instead of ~1 GB (issue 18,
    benchmarks/README.md)."""
    import contextlib

    if backend_name() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def fast_bfloat16() -> bool:
    """True where bfloat16 arithmetic is much faster than float32 on Keras' PyTorch backend:
    an NVIDIA GPU with bfloat16 support, or a CPU with AMX tiles (oneDNN's bfloat16 matrix
    products ran 3.6x float32's speed: `make bench`, training_speed's matmul ceiling; without
    AMX, bfloat16 gains little or loses)."""
    if backend_name() != "torch":
        return False
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu._is_amx_tile_supported())  # private; torch 2.13 (pinned)
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str) -> str:
    """A recipe's precision as a Keras dtype policy name: 'auto' becomes 'mixed_bfloat16' where
    fast_bfloat16(), else 'float32'; the other values pass through."""
    if precision == "auto":
        return "mixed_bfloat16" if fast_bfloat16() else "float32"
    if precision not in ("float32", "mixed_bfloat16"):
        raise UserError(f"unknown precision {precision!r}; choose float32, mixed_bfloat16 or auto")
    return precision
