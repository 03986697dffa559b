"""A dependency-free progress display: a live bar with rate and ETA on a terminal, and only a
summary line when the output is a file or a CI log (so logs stay readable)."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class Progress:
    """Counts work done; `update()` redraws at most a few times a second."""

    def __init__(self, total: int, description: str, unit: str = "img", stream=None, live: bool | None = None):
        self.total = max(0, total)
        self.description = description
        self.unit = unit
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.done = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self.postfix = ""

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def rate(self) -> float:
        elapsed = self.elapsed()
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def update(self, count: int = 1, postfix: str | None = None) -> None:
        self.done += count
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.live and (now - self._last_draw > 0.2 or self.done >= self.total):
            self._last_draw = now
            self._draw()

    def line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        eta = self.eta()
        eta_text = format_duration(eta) if eta is not None else "--:--"
        width = 24
        filled = int(width * min(1.0, fraction))
        bar = "#" * filled + "." * (width - filled)
        text = (
            f"{self.description} [{bar}] {self.done}/{self.total} "
            f"{self.rate():.1f} {self.unit}/s elapsed {format_duration(self.elapsed())} ETA {eta_text}"
        )
        return f"{text} {self.postfix}".rstrip()

    def _draw(self) -> None:
        self.stream.write("\r" + self.line() + "\x1b[K")
        self.stream.flush()

    def close(self, summary: str | None = None) -> None:
        if self.live:
            self._draw()
            self.stream.write("\n")
        elif summary is None:
            self.stream.write(
                f"{self.description}: {self.done}/{self.total} in {format_duration(self.elapsed())} "
                f"({self.rate():.1f} {self.unit}/s) {self.postfix}".rstrip() + "\n"
            )
        if summary:
            self.stream.write(summary + "\n")
        self.stream.flush()
