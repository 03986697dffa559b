"""The options of `cnnlab serve`, checked before anything heavy is imported."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from cnnlab.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 8.0  # a phone photo is 2-5 MB; several per request still fit
DEFAULT_MAX_PHOTOS = 32
ENGINES = ("keras", "onnx", "auto")  # cnnlab.inference.classifier.ENGINES; keras stays the server's default
MEGABYTE = 1024 * 1024


class ServingLimits:
    """What `serve` and `studio` share, mixed into their dataclass configs (which define host,
    port, max_upload_mb, max_photos and decode_memory_mb): the checks of those options, the
    limits in bytes, and whether the host reaches this machine only."""

    def check_serving_options(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise UserError(f"--port must be between 0 and 65535, got {self.port!r}")
        if not self.host:
            raise UserError("--host must not be empty (127.0.0.1 serves this machine only)")
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


@dataclass(frozen=True)
class ServeConfig(ServingLimits):
    run: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB  # cap on one request's body, all photos together
    max_photos: int = DEFAULT_MAX_PHOTOS  # files in one request
    threshold: float | None = None  # two-class runs: overrides the validation threshold
    # Bytes of images being decoded at once (cnnlab.serve.limits.DecodeBudget). None: a quarter
    # of the process's memory limit (cgroup, RLIMIT_AS or physical memory), at most 2 GB.
    decode_memory_mb: float | None = None
    engine: str = "keras"  # what runs the model: see cnnlab.inference.classifier.load

    def __post_init__(self):
        self.check_serving_options()
        if self.engine not in ENGINES:
            raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
