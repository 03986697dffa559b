"""Where a long command's time and memory go: one record per stage (wall seconds, and the
process's peak resident memory once the stage is over).

`cnnlab reproduce` trains every model in one process and returns freed memory between them, so
its peak is that of its largest stage; the peak so far only rises, and a stage whose record shows
a rise needed more than every stage before it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from cnnlab.progress import format_duration
from cnnlab.runtime import peak_resident_megabytes


@dataclass
class Stage:
    name: str
    seconds: float
    peak_resident_mb: float | None  # the process's peak so far, when the stage ended
    reused: bool = False  # its output was on disk from an earlier invocation


@dataclass
class StageLog:
    stages: list[Stage] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)

    def start(self) -> None:
        self._started = time.perf_counter()

    def finish(self, name: str, reused: bool = False) -> Stage:
        stage = Stage(name, round(time.perf_counter() - self._started, 1), peak_resident_megabytes(), reused)
        self.stages.append(stage)
        self.start()
        return stage

    def to_list(self) -> list[dict]:
        return [asdict(stage) for stage in self.stages]

    def markdown(self) -> str:
        """A table of the stages, the rises of the peak marked."""
        lines = ["## Where this invocation's time and memory went", "",
                 "Wall time of each stage, and the process's peak resident memory once it was over. Memory is "
                 "returned between stages, so a rise means that stage needed more than all before it.", "",
                 "| stage | wall time | peak memory so far |", "|---|---:|---:|"]
        previous = 0.0
        for stage in self.stages:
            peak = stage.peak_resident_mb
            if peak is None:
                memory = "-"
            else:
                memory = f"{peak / 1024:.2f} GB" + (" (rose)" if peak > previous * 1.05 and previous else "")
                previous = max(previous, peak)
            when = "reused" if stage.reused else format_duration(stage.seconds)
            lines.append(f"| {stage.name} | {when} | {memory} |")
        return "\n".join(lines) + "\n"
