"""Process-level setup: memory allocator, Keras backend and image layout.

Everything here must run before Keras (and so PyTorch or TensorFlow) is imported, which is
why the CLI calls `prepare_process()` first and library users call `configure_keras()`.
"""

from __future__ import annotations

import os
import sys

# With glibc's defaults PyTorch hands activation buffers back to the OS after every step and
# faults them in again on the next one: 9.3 M page faults and 35 s of kernel time in a 46 s
# training run, measured here. Keeping freed memory in the process doubled CNN training speed.
# glibc reads these variables only at process start, so the CLI re-executes itself once with
# them set (see `prepare_process`).
ALLOCATOR_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": "34359738368",
    "MALLOC_TRIM_THRESHOLD_": "34359738368",
    "MALLOC_TOP_PAD_": "1073741824",
}
# Set by the re-executed process so that it never re-executes again.
REEXEC_MARKER = "CNNLAB_ALLOCATOR_APPLIED"
# Users who bring their own allocator (tcmalloc/jemalloc via LD_PRELOAD) or want glibc's
# defaults set CNNLAB_ALLOCATOR=system.
ALLOCATOR_SWITCH = "CNNLAB_ALLOCATOR"

DEFAULT_BACKEND = "torch"
# Each backend's fast layout on a CPU: PyTorch's convolutions are NCHW (with channels_last,
# Keras transposes at every convolution: 2.2x slower, measured), TensorFlow's CPU kernels are
# NHWC. CNNLAB_IMAGE_FORMAT overrides.
IMAGE_DATA_FORMATS = {"torch": "channels_first", "tensorflow": "channels_last", "jax": "channels_last"}
IMAGE_FORMAT_SWITCH = "CNNLAB_IMAGE_FORMAT"


def allocator_is_tuned() -> bool:
    """True when this process started with the allocator settings above (or tcmalloc)."""
    if "tcmalloc" in os.environ.get("LD_PRELOAD", "") or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return True
    return all(os.environ.get(name) == value for name, value in ALLOCATOR_ENVIRONMENT.items())


def prepare_process(argv: list[str], command: list[str] | None = None) -> None:
    """Re-execute this process once with the tuned allocator, unless it already has one.

    Only glibc Linux needs this; elsewhere it is a no-op. Never raises: speed is a bonus.
    command: what to re-execute (default: `python -m cnnlab`); scripts such as the benchmarks
    pass [sys.executable, their own path].
    """
    if os.environ.get(REEXEC_MARKER) or os.environ.get(ALLOCATOR_SWITCH, "").lower() == "system":
        return
    if not sys.platform.startswith("linux") or allocator_is_tuned():
        return
    environment = dict(os.environ)
    environment.update(ALLOCATOR_ENVIRONMENT)
    environment[REEXEC_MARKER] = "1"
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [*(command or [sys.executable, "-m", "cnnlab"]), *argv], environment)
    except OSError:
        return


def configure_keras(backend: str | None = None) -> None:
    """Choose the backend (PyTorch unless KERAS_BACKEND says otherwise) and its image layout
    (channels_first on PyTorch, channels_last on TensorFlow and JAX)."""
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    # TensorFlow's C++ start-up chatter hides our own messages.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    layout = os.environ.get(IMAGE_FORMAT_SWITCH) or IMAGE_DATA_FORMATS.get(keras.backend.backend(), "channels_last")
    if layout not in ("channels_first", "channels_last"):
        raise ValueError(f"{IMAGE_FORMAT_SWITCH}={layout!r}: use channels_first or channels_last")
    keras.config.set_image_data_format(layout)


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def fast_bfloat16() -> bool:
    """True where bfloat16 arithmetic is much faster than float32 on Keras' PyTorch backend:
    an NVIDIA GPU with bfloat16 support, or a CPU with AMX tiles (oneDNN's bfloat16 matrix
    products ran 3.6x float32's speed here; without AMX, bfloat16 gains little or loses)."""
    import keras

    if keras.backend.backend() != "torch":
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
        raise ValueError(f"unknown precision {precision!r}; choose float32, mixed_bfloat16 or auto")
    return precision
