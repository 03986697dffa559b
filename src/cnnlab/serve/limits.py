"""The limits of `cnnlab serve`: the request-body cap (ASGI middleware around the whole app) and
the decode memory budget (bytes of images being decoded at once).

It sits outside FastAPI so that no route, form parser or spooled temporary file ever holds more
than the cap: a Content-Length over it is refused at once; a body without one (chunked) is
counted as it streams and refused as soon as it passes the cap. The rest of an oversized body
is read and thrown away (up to DRAIN_LIMIT) before answering, because HTTP clients send the
whole body before reading the answer: closing on them mid-upload shows up as a reset
connection instead of the 413 that says what was wrong.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from pathlib import Path

DRAIN_LIMIT = 256 * 1024 * 1024  # past this much, the connection is dropped rather than drained
BODY_METHODS = (b"POST", b"PUT", b"PATCH")


class UploadLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"].encode() not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, f"bad Content-Length header {declared[:40].decode('latin-1')!r}")
                return
            if int(declared) > self.max_bytes:
                if int(declared) <= DRAIN_LIMIT:
                    await _drain(receive)
                await _answer(send, 413, self._too_large(f"{int(declared):,} bytes"))
                return

        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, already=received)
                    from starlette.exceptions import HTTPException  # here: the budget below needs no web framework

                    # Raised inside the route, where FastAPI's exception handlers turn it into the
                    # JSON 413 (an exception escaping the app would become a 500 on its way out).
                    raise HTTPException(413, self._too_large(f"more than {self.max_bytes:,} bytes"))
            return message

        await self.app(scope, counted_receive, send)

    def _too_large(self, size: str) -> str:
        return (f"upload too large: {size}, over the cap of {self.max_bytes / 1024 / 1024:g} MB per request "
                "(cnnlab serve --max-upload-mb)")


async def _drain(receive, already: int = 0) -> None:
    """Read and discard the rest of the body, up to DRAIN_LIMIT bytes in all."""
    total = already
    while total <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _answer(send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ---- the decode memory budget ---------------------------------------------------------------------
#
# A 77 KB 16-bit PNG of 6300 x 6300 pixels (under the decoder's 40-megapixel cap) costs about
# 1.1 GB while it is decoded (issue 17: 8 at once reached 8.8 GB). The upload cap bounds bytes on
# the wire, not decoded bytes; this budget bounds those. Each upload's cost is estimated from its
# header before decoding (cnnlab.serve.service.decode_cost) and reserved here; a request that
# cannot reserve within DECODE_WAIT_S is answered 503 with Retry-After, one that could never fit 413.

DECODE_MEMORY_FRACTION = 0.25  # of the process's memory limit: the model and the server keep the rest
DECODE_MEMORY_CEILING = 2 * 2**30  # past two worst-case images at once, 2 cores only queue them anyway
DECODE_WAIT_S = 5.0  # how long a request waits for decode memory before its 503
RETRY_AFTER_S = 5  # about the time one worst-case image takes to decode on 2 cores
UNLIMITED = 2**60  # cgroup v1 writes ~2^63 for "no limit"


def memory_limit() -> tuple[int, str]:
    """(bytes, what set them): the smallest of the cgroup limit, RLIMIT_AS and physical memory."""
    import resource

    limits = [(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "physical memory")]
    cgroup = cgroup_memory_limit()
    if cgroup is not None:
        limits.append((cgroup, "cgroup memory limit"))
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space != resource.RLIM_INFINITY:
        limits.append((address_space, "RLIMIT_AS"))
    return min(limits)


def cgroup_memory_limit(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """This process's memory limit from cgroup v2 (memory.max, up the tree) or v1, or None."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: the unified tree; a limit anywhere above us applies too
            folder = Path(root + path)
            while True:
                candidates.append(folder / "memory.max")
                if folder == Path(root) or folder.parent == folder:
                    break
                folder = folder.parent
        elif "memory" in controllers.split(","):  # v1, seen from the host or from inside a container
            candidates += [Path(root, "memory", path.lstrip("/"), "memory.limit_in_bytes"),
                           Path(root, "memory", "memory.limit_in_bytes")]
    values = []
    for candidate in candidates:
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < UNLIMITED:
            values.append(int(text))
    return min(values) if values else None


def default_decode_memory() -> int:
    return int(min(DECODE_MEMORY_FRACTION * memory_limit()[0], DECODE_MEMORY_CEILING))


class DecodeBudget:
    """Bytes of decoding in flight, first come first served: a semaphore counting bytes."""

    def __init__(self, capacity: int, wait_s: float = DECODE_WAIT_S):
        self.capacity, self.wait_s = int(capacity), wait_s
        self.in_use = 0
        self._condition = threading.Condition()
        self._queue: collections.deque = collections.deque()

    def acquire(self, amount: int) -> bool:
        """Reserve `amount` bytes, waiting up to wait_s behind earlier requests; False if not granted."""
        if amount > self.capacity:
            return False
        ticket = object()
        deadline = time.monotonic() + self.wait_s
        with self._condition:
            self._queue.append(ticket)
            try:
                # In order: a large image is not starved by a stream of small ones passing it.
                while self._queue[0] is not ticket or self.in_use + amount > self.capacity:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._condition.wait(left)
                self.in_use += amount
                return True
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()

    def release(self, amount: int) -> None:
        with self._condition:
            self.in_use -= amount
            self._condition.notify_all()


# glibc mallopt options, and what `cnnlab serve` sets them to (see serving_allocator).
M_TRIM_THRESHOLD, M_TOP_PAD = -1, -2
SERVING_TRIM_THRESHOLD = 16 * 2**20


def serving_allocator() -> None:
    """Undo, for this serving process, the allocator settings the CLI starts every command with
    (cnnlab.runtime: a 32 GB trim threshold and a 1 GB top pad, which double training speed).

    With them, the 64 MB heaps of worker-thread arenas never shrink, and malloc_trim cannot
    release their free tops: 190 MB of 4 concurrent 4-megapixel decodes stayed resident (45 MB
    with these values). 16 MB is under those heaps, and far over the model's activations for
    one request, which therefore stay in the heap as in training. Elsewhere than glibc, nothing."""
    if _libc is not None:
        _libc.mallopt(M_TRIM_THRESHOLD, SERVING_TRIM_THRESHOLD)
        _libc.mallopt(M_TOP_PAD, 0)


def return_freed_memory() -> None:
    """Give the pages of freed memory back to the system (glibc's malloc_trim; elsewhere nothing).

    Decoded images are freed in worker threads, whose glibc arenas keep freed pages for reuse;
    with the allocator settings the CLI starts with (cnnlab.runtime: a 32 GB trim threshold, for
    training speed) they would never go back: 4.1 GB stayed after a burst (issue 17)."""
    if _libc is not None:
        _libc.malloc_trim(0)


def _load_libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None


_libc = _load_libc()
