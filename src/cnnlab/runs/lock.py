"""One trainer per run folder at a time: an advisory lock on the folder itself.

Two `cnnlab train --out RUN` at once would interleave their checkpoints and leave one run's
config.json beside the other's weights. The trainer holds an exclusive flock(2) on RUN while it
runs. The kernel drops the lock when the process ends, however it ends (kill -9 included), so a
lock can never go stale and there is nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from cnnlab.errors import UserError


@contextmanager
def exclusive(path: Path):
    """Hold RUN for one writer; UserError when another process holds it or RUN cannot be made.

    A folder this call created and left empty (a start refused before anything was written) is
    removed again, so a refused command leaves nothing behind."""
    path = Path(path)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise UserError(f"--out {path}: cannot create or open this folder ({error.strerror or error}); "
                        "choose a writable --out") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{path}: another `cnnlab train` is writing this run folder now; wait for it to "
                            "finish (then --resume) or choose another --out") from None
        try:
            yield path
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
        if created:
            try:
                path.rmdir()  # only succeeds when empty
            except OSError:
                pass
