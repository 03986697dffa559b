"""Decode many files on several processes, streaming results back in input order."""

from __future__ import annotations

import multiprocessing
import os
from functools import partial
from typing import Iterator

from cnnlab.data.decode import DecodeOptions, decode_file

# Below this many files a worker pool costs more to start than it saves.
_POOL_THRESHOLD = 64


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def decode_in_parallel(paths: list[str], options: DecodeOptions, workers: int = 0,
                       progress=None) -> Iterator[tuple]:
    """Yield (pixels | None, md5, reason | None) per path, in order.

    Results stream through `imap`, so at most a few chunks of decoded images are in memory
    at once, however many paths there are.
    """
    workers = workers or default_workers()
    work = partial(decode_file, options=options)
    if workers <= 1 or len(paths) < _POOL_THRESHOLD:
        for path in paths:
            result = work(path)
            if progress:
                progress.update()
            yield result
        return
    # 'spawn' keeps workers clean even when the parent has imported PyTorch (fork + threads
    # can deadlock); the children import only Pillow and NumPy.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        for result in pool.imap(work, paths, chunksize=16):
            if progress:
                progress.update()
            yield result
