"""The options of `cnnlab studio`, checked before anything heavy is imported."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import UserError
from cnnlab.serve.config import DEFAULT_MAX_PHOTOS, DEFAULT_MAX_UPLOAD_MB, ServingLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500  # beside serve's 8000, so both can run at once
DEFAULT_RUNS = "runs"
MIN_TOKEN_LENGTH = 8  # a token an attacker on the network could guess in a few tries protects nothing
# Characters that travel unchanged in a header, a cookie and a query string.
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")


@dataclass(frozen=True)
class StudioConfig(ServingLimits):
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
        self.check_serving_options()  # port, host, upload and decode-memory limits, as serve checks them
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
