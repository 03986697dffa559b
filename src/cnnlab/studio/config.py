"""The options of `cnnlab studio`, checked before anything heavy is imported."""

from __future__ import annotations

import ipaddress
import re
import math
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500  # beside serve's 8000, so both can run at once
DEFAULT_RUNS = "runs"
DEFAULT_MAX_UPLOAD_MB = 8.0  # serve's: a phone photo is 2-5 MB
DEFAULT_MAX_PHOTOS = 32
MEGABYTE = 1024 * 1024
MIN_TOKEN_LENGTH = 8  # a token an attacker on the network could guess in a few tries protects nothing
# Characters that travel unchanged in a header, a cookie and a query string.
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")


@dataclass(frozen=True)
class StudioConfig:
    data: str | None = None  # the folder of photos the Data and Train tabs read (only read, never changed)
    runs: str = DEFAULT_RUNS  # where runs are trained and found, each addressed by its folder name
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # Required on every request when set; required to be set when host is not a loopback address.
    token: str | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_photos: int = DEFAULT_MAX_PHOTOS
    decode_memory_mb: float | None = None  # None: serve's default (a quarter of the memory limit, at most 2 GB)
    # Where prepared caches of --data go; None: cnnlab's cache folder ($CNNLAB_CACHE_DIR, ~/.cache/cnnlab).
    caches: str | None = None

    def __post_init__(self):
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise UserError(f"--port must be between 0 and 65535, got {self.port!r}")
        if not self.host:
            raise UserError("--host must not be empty (127.0.0.1 serves this machine only)")
        if self.data is not None and not Path(self.data).is_dir():
            raise UserError(f"--data {self.data}: no such folder of photos")
        if Path(self.runs).exists() and not Path(self.runs).is_dir():
            raise UserError(f"--runs {self.runs} is a file; name a folder for the runs")
        if self.token is not None and (len(self.token) < MIN_TOKEN_LENGTH or not TOKEN_CHARACTERS.fullmatch(self.token)):
            raise UserError(f"--token must be at least {MIN_TOKEN_LENGTH} characters of letters, digits, '.', '_', "
                            "'~' and '-'")
        if not self.loopback_only and not self.token:
            raise UserError(f"--host {self.host} lets other machines reach the studio, which can train on and show "
                            "your photos: pass --token SECRET (then open the page with ?token=SECRET)")
        if not isinstance(self.max_upload_mb, (int, float)) or not math.isfinite(self.max_upload_mb) \
                or self.max_upload_mb <= 0:
            raise UserError(f"--max-upload-mb must be a positive number, got {self.max_upload_mb!r}")
        if isinstance(self.max_photos, bool) or not isinstance(self.max_photos, int) or self.max_photos < 1:
            raise UserError(f"--max-photos must be a positive whole number, got {self.max_photos!r}")
        if self.decode_memory_mb is not None and (
                isinstance(self.decode_memory_mb, bool) or not isinstance(self.decode_memory_mb, (int, float))
                or not math.isfinite(self.decode_memory_mb) or self.decode_memory_mb <= 0):
            raise UserError(f"--decode-memory-mb must be a positive number, got {self.decode_memory_mb!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MEGABYTE)

    @property
    def decode_memory_bytes(self) -> int:
        from cnnlab.serve.limits import default_decode_memory

        return int(self.decode_memory_mb * MEGABYTE) if self.decode_memory_mb is not None else default_decode_memory()

    @property
    def loopback_only(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
