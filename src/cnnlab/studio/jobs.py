"""The studio's training queue: jobs run one at a time, each in a worker process of its own.

One at a time because training takes every core this machine has (two jobs would each take
twice as long and hold twice the memory) and a run folder has one writer (cnnlab.runs.lock).
A job is a process, not a thread: stopping it is terminating it (SIGTERM, then SIGKILL), which
a thread cannot be, and a crash inside Keras or PyTorch ends the job, not the studio. The run
folder commits each finished epoch atomically, so a stopped, killed or crashed job resumes from
its last finished epoch (`resume` queues `train --resume` on the same folder). The queue lives
in the server's memory: a closed browser loses nothing (the page reconnects and reads it again)
and a restarted studio finds every run in --runs, an unfinished one ready to resume.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import UserError
from cnnlab.studio import worker

KINDS = ("train", "evaluate")
STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
POLL_S = 0.2
LOG_TAIL_CHARACTERS = 4000
ACTIVE = ("queued", "running")


@dataclass
class Job:
    id: int
    kind: str
    run: str  # the run's folder name under --runs
    settings: dict
    folder: Path  # the job's own files: its description, progress and log
    status: str = "queued"  # queued, running, done, failed, stopped
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    process: object | None = None
    stop_requested: bool = False

    @property
    def log_path(self) -> Path:
        return self.folder / f"job-{self.id}.log"

    @property
    def progress_path(self) -> Path:
        return self.folder / f"job-{self.id}.progress.json"

    def describe(self) -> dict:
        progress = worker.Progress.read(self.progress_path) if self.status != "queued" else {}
        return {"id": self.id, "kind": self.kind, "run": self.run, "status": self.status, "message": self.message,
                "model": self.settings.get("model"), "resume": bool(self.settings.get("resume")),
                "created": self.created, "started": self.started, "finished": self.finished,
                "phase": progress.get("phase") if self.status == "running" else None,
                **{key: int(progress.get(key) or 0) for key in ("epoch", "epochs", "step", "steps")},
                "loss": progress.get("loss")}

    def start(self):
        """The worker process, its output going to the job's log."""
        description = self.folder / f"job-{self.id}.json"
        description.write_text(json.dumps({"kind": self.kind, "settings": self.settings,
                                           "progress": str(self.progress_path), "studio": os.getpid()}))
        with open(self.log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "cnnlab.studio.worker", str(description)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-LOG_TAIL_CHARACTERS:]


class JobQueue:
    def __init__(self, log_folder: Path | None = None):
        self.log_folder = Path(log_folder or tempfile.mkdtemp(prefix="cnnlab-studio-logs-"))
        self.log_folder.mkdir(parents=True, exist_ok=True)
        self.jobs: list[Job] = []
        self.condition = threading.Condition()
        self.numbers = itertools.count(1)
        self.closed = False
        self.thread = threading.Thread(target=self._work, name="studio-jobs", daemon=True)
        self.thread.start()

    # ---- what the routes call --------------------------------------------------------------

    def submit(self, kind: str, run: str, settings: dict) -> Job:
        if kind not in KINDS:
            raise UserError(f"unknown job {kind!r}; choose one of {', '.join(KINDS)}")
        with self.condition:
            busy = next((job for job in self.jobs if job.run == run and job.status in ACTIVE), None)
            if busy is not None:
                raise UserError(f"run {run!r} already has job {busy.id} {busy.status}; stop it first")
            number = next(self.numbers)
            job = Job(number, kind, run, dict(settings), self.log_folder)
            self.jobs.append(job)
            self.condition.notify_all()
            return job

    def stop(self, number: int) -> Job:
        with self.condition:
            job = self.get(number)
            if job.status == "queued":
                job.status, job.finished, job.message = "stopped", time.time(), "stopped before it started"
            elif job.status == "running":
                job.stop_requested = True
                if job.process is not None:
                    job.process.terminate()
            self.condition.notify_all()
            return job

    def get(self, number: int) -> Job:
        for job in self.jobs:
            if job.id == number:
                return job
        from cnnlab.studio.folders import NotFound

        raise NotFound(f"no job {number}")

    def snapshot(self) -> list[dict]:
        with self.condition:
            return [job.describe() for job in reversed(self.jobs)]

    def running(self) -> Job | None:
        return next((job for job in self.jobs if job.status == "running"), None)

    def wait_idle(self, timeout: float) -> bool:
        """True once no job is queued or running (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while any(job.status in ACTIVE for job in self.jobs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.condition.wait(min(left, POLL_S))
        return True

    def close(self) -> None:
        """Stop everything: queued jobs are dropped, the running one terminated (it resumes later)."""
        with self.condition:
            self.closed = True
            for job in self.jobs:
                if job.status in ACTIVE:
                    self.stop(job.id)
            self.condition.notify_all()
        self.thread.join(timeout=STOP_GRACE_S + 5)

    # ---- the worker thread -----------------------------------------------------------------

    def _next(self) -> Job | None:
        with self.condition:
            while not self.closed:
                job = next((job for job in self.jobs if job.status == "queued"), None)
                if job is not None:
                    job.status, job.started = "running", time.time()
                    try:
                        job.process = job.start()
                    except OSError as error:  # no Python to start, a full disk: the job fails, the queue goes on
                        job.status, job.finished = "failed", time.time()
                        job.message = f"could not start the worker ({error.strerror or error})"
                        self.condition.notify_all()
                        continue
                    return job
                self.condition.wait()
            return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            process = job.process
            terminated_at = None
            while process.poll() is None:
                time.sleep(POLL_S)
                if job.stop_requested and terminated_at is None:
                    terminated_at = time.monotonic()
                if terminated_at is not None and time.monotonic() - terminated_at > STOP_GRACE_S:
                    process.kill()
            with self.condition:
                job.finished = time.time()
                if job.stop_requested:
                    job.status, job.message = "stopped", "stopped; the run keeps every finished epoch (resume continues it)"
                elif process.returncode == 0:
                    job.status, job.message = "done", "finished"
                else:
                    job.status, job.message = "failed", last_line(job.log_tail()) or f"exit status {process.returncode}"
                job.process = None
                self.condition.notify_all()


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
