"""Convolution kernels by name, or from text, JSON or .npy: the inputs of `cnnlab filters`.

The tutorial shows a vertical and a horizontal edge filter as 3x3 matrices, one the transpose
of the other, but its exact values cannot be recovered from the published figure. We use the
Prewitt-style pair instead ([[1, 1, 1], [0, 0, 0], [-1, -1, -1]] and its transpose), which has
that shape and does what the tutorial describes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError


@dataclass(frozen=True)
class Kernel:
    name: str
    matrix: np.ndarray  # 2-D float64, applied as cross-correlation (no flip), as Keras does
    description: str


def _kernel(name: str, rows, description: str, scale: float = 1.0) -> Kernel:
    matrix = np.asarray(rows, dtype=np.float64) * scale
    matrix.setflags(write=False)  # the registry is shared: nobody may edit a built-in in place
    return Kernel(name, matrix, description)


_HORIZONTAL_EDGE = [[1, 1, 1], [0, 0, 0], [-1, -1, -1]]
_GAUSSIAN_5 = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])

KERNELS: dict[str, Kernel] = {kernel.name: kernel for kernel in (
    _kernel("vertical-edge", np.transpose(_HORIZONTAL_EDGE),
            "the tutorial's vertical edge filter (its values are not recoverable; Prewitt-style "
            "stand-in, the transpose of horizontal-edge): bright left of a vertical edge -> positive"),
    _kernel("horizontal-edge", _HORIZONTAL_EDGE,
            "the tutorial's horizontal edge filter (its values are not recoverable; Prewitt-style "
            "stand-in [[1,1,1],[0,0,0],[-1,-1,-1]]): bright above a horizontal edge -> positive"),
    _kernel("sobel-x", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
            "Sobel horizontal gradient: finds vertical edges, smoothing along them"),
    _kernel("sobel-y", [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
            "Sobel vertical gradient: finds horizontal edges, smoothing along them"),
    _kernel("laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
            "Laplacian: edges in every direction, and fine texture"),
    _kernel("box-blur", np.ones((3, 3)), "3x3 box blur: the mean of each neighbourhood", scale=1 / 9),
    _kernel("gaussian-blur", [[1, 2, 1], [2, 4, 2], [1, 2, 1]], "3x3 Gaussian blur (binomial weights)", scale=1 / 16),
    _kernel("gaussian-blur-5x5", _GAUSSIAN_5, "5x5 Gaussian blur (binomial weights): a stronger blur", scale=1 / 256),
    _kernel("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "sharpen: the pixel plus its difference from its neighbours"),
    _kernel("emboss", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "emboss: the picture as if lit from the top left"),
)}
DEFAULT_KERNELS = ("vertical-edge", "horizontal-edge")
FILE_SUFFIXES = (".json", ".npy")


def known_names() -> str:
    return ", ".join(KERNELS)


def checked_matrix(values, source: str) -> np.ndarray:
    """A list of rows or an array -> a 2-D float matrix, or ValueError naming the problem and `source`."""
    if isinstance(values, np.ndarray):
        if values.ndim != 2:
            raise UserError(f"kernel {source}: expected a 2-D matrix, got {values.ndim} dimension(s) {values.shape}")
        if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
            raise UserError(f"kernel {source}: expected numbers, got an array of {values.dtype}")
        rows = values.astype(np.float64)
    else:
        if not isinstance(values, list) or not all(isinstance(row, list) for row in values):
            raise UserError(f"kernel {source}: expected a list of rows (a list of lists of numbers)")
        for row in values:
            for value in row:
                # bool is an int in Python, but true/false in a kernel file is surely a mistake
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise UserError(f"kernel {source}: {value!r} is not a number")
        lengths = sorted({len(row) for row in values})
        if len(lengths) > 1:
            raise UserError(f"kernel {source}: rows have different lengths ({', '.join(map(str, lengths))}); "
                             "a kernel must be rectangular")
        rows = np.array(values, dtype=np.float64)
    if rows.size == 0:
        raise UserError(f"kernel {source}: the matrix is empty")
    if not np.isfinite(rows).all():
        raise UserError(f"kernel {source}: values must be finite (no nan or inf)")
    return rows


def parse_matrix_text(text: str) -> np.ndarray:
    """'1,0,-1;2,0,-2;1,0,-1' -> a 3x3 matrix: rows split by ';', values by ',' (or spaces)."""
    rows = []
    for row_text in text.strip().split(";"):
        if not row_text.strip():
            raise UserError(f"kernel {text!r}: empty row; write rows separated by ';', e.g. '1,0,-1;2,0,-2;1,0,-1'")
        row = []
        for value in re.split(r"[,\s]+", row_text.strip()):
            try:
                row.append(float(value))
            except ValueError:
                raise UserError(f"kernel {text!r}: {value!r} is not a number") from None
        rows.append(row)
    return checked_matrix(rows, repr(text))


def load_matrix_file(path: Path) -> np.ndarray:
    """A .json list of lists, or a 2-D .npy array (never unpickled: a kernel file runs no code)."""
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(path.read_text())
        else:
            values = np.load(path, allow_pickle=False)
    except OSError as error:
        raise UserError(f"kernel file {path}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:  # json.JSONDecodeError is a ValueError; so is np.load on a non-.npy file
        raise UserError(f"kernel file {path}: not a valid {path.suffix.lower()} matrix ({error})") from None
    return checked_matrix(values, str(path))


def resolve_kernel(spec: str, index: int = 1) -> Kernel:
    """A built-in name, a matrix written as text, or a .json/.npy file -> a Kernel.

    Custom kernels are named after their file (`edges.npy` -> 'edges') or 'custom-<index>'.
    """
    spec = spec.strip()
    name = spec.lower().replace("_", "-")
    if name in KERNELS:
        return KERNELS[name]
    path = Path(spec)
    if path.suffix.lower() in FILE_SUFFIXES or path.is_file():
        if not path.is_file():
            raise UserError(f"kernel file {spec} not found")
        return Kernel(path.stem, load_matrix_file(path), f"custom kernel from {path.name}")
    # Anything with a digit or a separator is meant as a matrix; anything else is a misspelt name.
    if re.search(r"[\d,;]", spec):
        return Kernel(f"custom-{index}", parse_matrix_text(spec), f"custom kernel {spec}")
    raise UserError(f"unknown kernel {spec!r}; known kernels: {known_names()}; "
                     "or give a matrix such as '1,0,-1;2,0,-2;1,0,-1', or a .json/.npy file")


def resolve_kernels(specs) -> list[Kernel]:
    """Resolve every spec (the two tutorial edge filters when none) with unique, file-safe names."""
    kernels, used = [], {"filters"}  # 'filters' is taken by the figure and the JSON summary
    custom_count = 0
    for spec in specs or DEFAULT_KERNELS:
        is_custom = spec.strip().lower().replace("_", "-") not in KERNELS
        custom_count += is_custom
        kernel = resolve_kernel(spec, custom_count)
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", kernel.name).strip("-.") or "kernel"
        name, suffix = base, 2
        while name in used:
            name, suffix = f"{base}-{suffix}", suffix + 1
        used.add(name)
        kernels.append(Kernel(name, kernel.matrix, kernel.description))
    return kernels


def matrix_text(matrix: np.ndarray, largest: int = 7) -> str:
    """The kernel as aligned rows for a figure; a common fraction is pulled out ('1/16 x')."""
    if max(matrix.shape) > largest:
        return f"{matrix.shape[0]}x{matrix.shape[1]} kernel"
    denominator = next((d for d in (1, 2, 4, 8, 9, 16, 25, 256) if np.allclose(matrix * d, np.round(matrix * d))), None)
    if denominator is None:
        cells, header = [[f"{value:.3g}" for value in row] for row in matrix], ""
    else:
        cells = [[f"{value:g}" for value in row] for row in np.round(matrix * denominator) + 0.0]
        header = f"1/{denominator} x\n" if denominator > 1 else ""
    width = max(len(cell) for row in cells for cell in row)
    return header + "\n".join(" ".join(cell.rjust(width) for cell in row) for row in cells)
