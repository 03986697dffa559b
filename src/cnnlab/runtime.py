"""Process-level setup: the memory allocator, which glibc reads only when a process starts.

The CLI calls `prepare_process()` before anything else; Keras itself is configured by
cnnlab.backend.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

# With glibc's defaults PyTorch hands activation buffers back to the OS after every step and
# faults them in again on the next one: 9.3 M page faults and 35 s of kernel time in a 46 s
# training run. Keeping freed memory in the process doubled CNN training speed (measured by
# benchmarks/training_speed.py with CNNLAB_ALLOCATOR=system against the default; benchmarks/README.md).
# glibc reads these variables only at process start, so the CLI re-executes itself once with
# them set (see `prepare_process`).
ALLOCATOR_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": "34359738368",
    "MALLOC_TRIM_THRESHOLD_": "34359738368",
    "MALLOC_TOP_PAD_": "1073741824",
}
# Set by the re-executed process so that it never re-executes again.
REEXEC_MARKER = "CNNLAB_ALLOCATOR_APPLIED"
# Users who bring their own allocator (tcmalloc/jemalloc via LD_PRELOAD) or want glibc's
# defaults set CNNLAB_ALLOCATOR=system.
ALLOCATOR_SWITCH = "CNNLAB_ALLOCATOR"


def allocator_is_tuned() -> bool:
    """True when this process started with the allocator settings above (or tcmalloc)."""
    if "tcmalloc" in os.environ.get("LD_PRELOAD", "") or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return True
    return all(os.environ.get(name) == value for name, value in ALLOCATOR_ENVIRONMENT.items())


def prepare_process(argv: list[str], command: list[str] | None = None) -> None:
    """Re-execute this process once with the tuned allocator, unless it already has one.

    Only glibc Linux needs this; elsewhere it is a no-op. Never raises: speed is a bonus.
    command: what to re-execute (default: `python -m cnnlab`); scripts such as the benchmarks
    pass [sys.executable, their own path].
    """
    if os.environ.get(REEXEC_MARKER) or os.environ.get(ALLOCATOR_SWITCH, "").lower() == "system":
        return
    if not sys.platform.startswith("linux") or allocator_is_tuned():
        return
    environment = dict(os.environ)
    environment.update(ALLOCATOR_ENVIRONMENT)
    environment[REEXEC_MARKER] = "1"
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [*(command or [sys.executable, "-m", "cnnlab"]), *argv], environment)
    except OSError:
        return


def peak_resident_megabytes() -> float | None:
    """This process's peak resident memory so far (VmHWM), in MB; None where /proc has no such line.

    With the tuned allocator freed memory stays in the process, so the peak only ever rises: a
    long command that reads it after each stage shows which stage raised it.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def return_freed_memory() -> None:
    """Collect garbage, then hand the allocator's free memory back to the operating system.

    The tuned allocator keeps freed memory for the next training step, which is what makes it
    fast, but a process that goes on to other work (the next model of `cnnlab reproduce`) would
    hold its largest stage's memory to the end: 0.48 GB resident between stages with this, against
    1.9-2.3 GB without (conv1 and conv2 trained in turn). glibc only; elsewhere collection alone.
    Never raises: it only saves memory."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return  # not glibc (musl has no malloc_trim)
