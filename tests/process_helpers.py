"""Code run in a fresh Python process, for what this one cannot show: its peak memory, Keras'
global state, allocator settings read only at start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.runtime import peak_resident_megabytes

# Memory tests read /proc/self/status (VmRSS, VmHWM): Linux only.
needs_proc_status = pytest.mark.skipif(peak_resident_megabytes() is None,
                                       reason="no VmHWM in /proc/self/status (not Linux)")


def json_from_a_fresh_process(code: str, environment: dict | None = None, timeout: int = 300):
    """Run `code` in a new interpreter; the JSON value on its last line of output."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
