"""Making the folder a command writes into: one line naming the flag when it cannot be made."""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.errors import UserError


def output_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create `path` (and its parents) if needed; UserError when it is a file, lies under one,
    or cannot be written (read-only, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{flag} {path} is a file, not a folder; choose another {flag}") from None
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot create this folder ({error.strerror or error}); "
                        f"choose a writable {flag}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: this folder is not writable; choose another {flag}")
    return path
