"""Progress display through tqdm: a live bar with rate and ETA on a terminal or in a Jupyter
notebook, and plain lines when the output is a file or a CI log (so logs stay readable).

Where the output goes decides the display:
- a terminal: tqdm's text bar, redrawn in place;
- a notebook (an IPython kernel writing to its own sys.stdout/sys.stderr) with ipywidgets
  installed (`pip install 'cnnlab[notebook]'`): tqdm's widget, as tqdm.auto chooses it;
- anything else (a file, a pipe, a CI log, a notebook without ipywidgets, a StringIO): no bar
  and no carriage returns, only whole lines: one every `log_every` seconds for long work, and
  a summary when the work is done.
"""

from __future__ import annotations

import sys
import time

from tqdm.std import tqdm

# How often a display that is not live writes a line of its own (a CI log sees a slow prepare
# or download advance, without one line per photo).
LOG_EVERY_SECONDS = 60.0


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def notebook_bar():
    """tqdm's notebook widget class when this process is a Jupyter kernel and ipywidgets is
    installed, else None: the test tqdm.auto makes, without its fallback to a text bar full of
    carriage returns (a notebook without widgets gets lines instead)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        shell = ipython.get_ipython()
        if shell is None or "IPKernelApp" not in shell.config:
            return None
        from tqdm.notebook import IProgress, tqdm_notebook
    except Exception:  # any failure here means no widget; never a reason to fail the work
        return None
    return tqdm_notebook if IProgress is not None else None


def is_live(stream) -> bool:
    """Whether a bar drawn to `stream` is seen live: a terminal, or a notebook's own output with
    widgets. Lines otherwise."""
    if stream in (sys.stdout, sys.stderr) and notebook_bar() is not None:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class Progress:
    """Counts work done. Live: a tqdm bar (redrawn at most every 0.2 s). Otherwise whole lines.

    unit_scale: counts are bytes or the like, shown as 1.2M (tqdm's format_sizeof); initial:
    work done before this run (a resumed download), which the rate does not count; leave=False
    erases a live bar when it closes (training replaces it with its epoch line)."""

    def __init__(self, total: int, description: str, unit: str = "img", stream=None, live: bool | None = None,
                 initial: int = 0, unit_scale: bool = False, leave: bool = True,
                 log_every: float | None = LOG_EVERY_SECONDS):
        self.total = max(0, total)
        self.description = description
        self.unit = unit
        self.unit_scale = unit_scale
        self.stream = stream or sys.stderr
        self.live = is_live(self.stream) if live is None else live
        self.done = self.initial = initial
        self.started = time.perf_counter()
        self.log_every = log_every
        self._last_line = self.started
        self.postfix = ""
        self.bar = self._make_bar(leave) if self.live else None

    def _make_bar(self, leave: bool):
        settings = dict(total=self.total or None, desc=self.description, unit=self.unit, initial=self.initial,
                        unit_scale=self.unit_scale, leave=leave, mininterval=0.2)
        widget = notebook_bar() if self.stream in (sys.stdout, sys.stderr) else None
        if widget is not None:
            return widget(**settings)
        return tqdm(file=self.stream, dynamic_ncols=True, **settings)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def rate(self) -> float:
        """Work per second, counting this run's work only."""
        elapsed = self.elapsed()
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 and self.total else None

    def update(self, count: int = 1, postfix: str | None = None) -> None:
        self.done += count
        if postfix is not None:
            self.postfix = postfix
        if self.bar is not None:
            if postfix is not None:
                self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(count)
        elif self.log_every is not None and time.perf_counter() - self._last_line >= self.log_every:
            self._last_line = time.perf_counter()
            self._write(self.line())

    def _amounts(self) -> tuple[str, str]:
        """(done[/total], rate) as a line shows them: counts, or sizes like 12.3MB for bytes."""
        if self.unit_scale:
            def amount(count):
                return f"{tqdm.format_sizeof(count)}{self.unit}"
            rate = f"{tqdm.format_sizeof(self.rate())}{self.unit}/s"
        else:
            amount = str
            rate = f"{self.rate():.1f} {self.unit}/s"
        return (f"{amount(self.done)}/{amount(self.total)}" if self.total else amount(self.done)), rate

    def line(self) -> str:
        """One readable line while the work goes on: done/total, rate, elapsed, ETA, postfix."""
        done, rate = self._amounts()
        eta = self.eta()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        text = (f"{self.description}: {done}{share}, {rate}, elapsed {format_duration(self.elapsed())}, "
                f"ETA {format_duration(eta) if eta is not None else '--:--'}")
        return f"{text} {self.postfix}".rstrip()

    def summary(self) -> str:
        """The line a finished display writes when it is not live."""
        done, rate = self._amounts()
        return f"{self.description}: {done} in {format_duration(self.elapsed())} ({rate}) {self.postfix}".rstrip()

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, summary: str | None = None) -> None:
        """End the display: a live bar stays as drawn last (or is erased: leave=False); lines get
        the summary line. `summary` replaces that line, or follows the live bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            if summary:
                self._write(summary)
        else:
            self._write(summary or self.summary())
