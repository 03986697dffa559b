"""Low-level file helpers for the cache: streamed .npy writing and atomic replacement."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
from cnnlab.errors import UserError

# The .npy header is written last (the row count is known only at the end), into a fixed-size
# slot reserved at the start of the file. 128 bytes holds any uint8 4-D shape and keeps the
# pixel data 64-byte aligned, as the format asks.
NPY_HEADER_BYTES = 128
_MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for a C-ordered uint8 array, padded to NPY_HEADER_BYTES."""
    description = repr({"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    body_length = NPY_HEADER_BYTES - len(_MAGIC) - 2
    text = description.ljust(body_length - 1) + "\n"
    if len(text) != body_length:
        raise UserError(f"shape {shape} does not fit the cache's .npy header")
    return _MAGIC + body_length.to_bytes(2, "little") + text.encode("latin1")


def finish_npy(handle, shape: tuple[int, ...]) -> None:
    """Write the header into the reserved slot and flush the file to disk."""
    handle.flush()
    handle.seek(0)
    handle.write(npy_header(shape))
    handle.flush()
    os.fsync(handle.fileno())


def read_npy_shape(path: Path) -> tuple[int, ...]:
    with open(path, "rb") as handle:
        start = handle.read(NPY_HEADER_BYTES)
    return tuple(ast.literal_eval(start[10:].decode("latin1"))["shape"])


def reorder_rows(path: Path, order: list[int], row_shape: tuple[int, ...]) -> None:
    """Rearrange a finished .npy file of rows in place: row i becomes old row order[i]; rows not in
    `order` are dropped (the file is cut). One row in memory, no second file: each cycle of the
    permutation is followed once, saving only its first row."""
    rows = read_npy_shape(path)[0]
    kept = set(order)
    full = list(order) + [row for row in range(rows) if row not in kept]  # dropped rows go last
    images = np.memmap(path, dtype=np.uint8, mode="r+", offset=NPY_HEADER_BYTES, shape=(rows, *row_shape))
    done = np.zeros(rows, dtype=bool)
    for start in range(rows):
        if done[start]:
            continue
        saved, position = np.array(images[start]), start
        while True:
            done[position] = True
            source = full[position]
            if source == start:
                images[position] = saved
                break
            images[position] = images[source]
            position = source
    images.flush()
    del images
    with open(path, "r+b") as handle:
        handle.truncate(NPY_HEADER_BYTES + len(order) * int(np.prod(row_shape)))
        finish_npy(handle, (len(order), *row_shape))


class RowReader:
    """Reads single rows of a cache's pixel file with plain reads (no memory map), so copying
    rows from an old cache does not keep its pages mapped into this process."""

    def __init__(self, path: Path, row_shape: tuple[int, ...]):
        self.handle = open(path, "rb")
        self.row_shape = row_shape
        self.row_bytes = int(np.prod(row_shape))

    def read(self, row: int) -> bytes:
        self.handle.seek(NPY_HEADER_BYTES + row * self.row_bytes)
        data = self.handle.read(self.row_bytes)
        if len(data) != self.row_bytes:
            raise UserError(f"{self.handle.name}: row {row} is incomplete; delete the cache and prepare again")
        return data

    def close(self) -> None:
        self.handle.close()


def replace_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
