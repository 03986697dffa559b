"""What this process runs on: versions, backend, image layout, threads and allocator."""

from __future__ import annotations

import os
import platform

from cnnlab.runtime import ALLOCATOR_ENVIRONMENT, allocator_is_tuned
from cnnlab.version import __version__


def library_versions() -> dict:
    """Versions of the libraries that decide results, for every run folder."""
    import importlib.metadata as metadata

    versions = {"python": platform.python_version(), "cnnlab": __version__}
    for name in ("keras", "torch", "tensorflow", "numpy", "pillow", "scikit-learn", "scipy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def runtime_info(load_backend: bool = True) -> dict:
    info = {
        **library_versions(),
        "platform": platform.platform(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "allocator_tuned": allocator_is_tuned(),
        "allocator_environment": {name: os.environ.get(name) for name in ALLOCATOR_ENVIRONMENT},
    }
    if load_backend:
        from cnnlab.backend import ensure_keras

        keras = ensure_keras()

        info["backend"] = keras.backend.backend()
        info["image_data_format"] = keras.config.image_data_format()
        if info["backend"] == "torch":
            import torch

            info["torch_threads"] = torch.get_num_threads()
    return info
