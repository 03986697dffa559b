"""What runs inside the studio's worker process: one training or evaluation job, then exit.

    python -m cnnlab.studio.worker JOB.json

The job is a fresh interpreter (a subprocess, not multiprocessing, whose spawn re-runs the
caller's main script), so a crash, a runaway memory use or a stop (the studio terminates it)
takes nothing down but the job, and the server keeps answering while Keras trains. Everything
the job produces goes into the run folder through cnnlab.workflow (which commits each finished
epoch atomically): a job killed at any instant leaves a run that `resume` continues. What it
prints goes to the job's log, which the studio shows; progress inside an epoch goes to a small
JSON file replaced atomically (a reader never sees half of one), at most a few times a second.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

PHASES = ("starting", "preparing", "training", "evaluating", "finished")
WRITE_EVERY_S = 0.25


class Progress:
    """The job's progress file: {"phase", "epoch", "epochs", "step", "steps", "loss"}."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.values = {"phase": "starting", "epoch": 0, "epochs": 0, "step": 0, "steps": 0, "loss": None}
        self.written = 0.0

    def __setitem__(self, key, value):
        self.values[key] = value
        if key != "step" or time.monotonic() - self.written >= WRITE_EVERY_S:
            self.write()

    def write(self) -> None:
        temporary = self.path.with_name(self.path.name + ".partial")
        temporary.write_text(json.dumps(self.values))
        os.replace(temporary, self.path)
        self.written = time.monotonic()

    @staticmethod
    def read(path: str | os.PathLike) -> dict:
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return {}


def main(arguments: list[str]) -> None:
    """The worker process's entry point: the job file names the kind, settings and progress file;
    the process's output is the job's log. Exits 0 on success, 2 for a user error, 1 for a bug."""
    job = json.loads(Path(arguments[0]).read_text())
    # The studio's pid as it wrote it: the worker may start after the studio is already gone.
    follow_the_studio(int(job.get("studio") or os.getppid()))
    kind, settings, progress = job["kind"], job["settings"], Progress(job["progress"])
    progress.write()
    if settings.get("caches"):
        os.environ["CNNLAB_CACHE_DIR"] = settings["caches"]
    os.environ.setdefault("KERAS_BACKEND", "torch")
    from cnnlab.errors import UserError

    try:
        if kind == "train":
            train_job(settings, progress)
        else:
            evaluate_job(settings, progress)
        progress["phase"] = "finished"
    except UserError as error:
        print(f"error: {error}", flush=True)
        sys.exit(2)
    except Exception:  # noqa: BLE001 - a bug: its traceback goes to the log, the last line to the page
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)


def follow_the_studio(studio: int, every_seconds: float = 1.0) -> None:
    """End this worker as Stop would (SIGTERM) once the studio that started it is gone: killed or
    crashed, it could no longer show, stop or queue this job, and a studio started again must be
    able to resume the run (the run folder's lock would refuse it while this one trains). The
    trainer commits whole epochs, so the run resumes from the last one."""
    import signal
    import threading

    def watch():
        while os.getppid() == studio:
            time.sleep(every_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="follow-the-studio", daemon=True).start()


def cache_folder(photos: str, width: int, height: int, fit: str, split: dict) -> Path:
    """cnnlab's own cache folder for these photos at this size, one per split asked for: a
    second split of the same photos must not re-split the cache earlier runs were trained on."""
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.training.from_photos import default_cache_folder

    folder = default_cache_folder(photos, DecodeOptions(width, height, fit))
    if split:
        suffix = "-".join(f"{key}{split[key]}" for key in sorted(split))
        folder = folder.with_name(f"{folder.name}-split-{suffix}")
    return folder


def train_job(settings: dict, progress) -> None:
    import cnnlab.workflow as workflow
    from cnnlab.models import get_model_spec

    callbacks = [shared_progress(progress)]
    out = settings["out"]
    if settings.get("resume"):
        progress["phase"] = "training"
        run = workflow.train(settings["model"], out=out, resume=True, epochs=settings.get("epochs"),
                             progress=False, callbacks=callbacks)
    else:
        recipe = get_model_spec(settings["model"]).recipe
        width, height = settings.get("size") or (recipe.input_width, recipe.input_height)
        split = {key: settings[key] for key in ("val", "test", "seed") if settings.get(key) is not None}
        progress["phase"] = "preparing"
        prepared = workflow.prepare(settings["photos"], cache_folder(settings["photos"], width, height, recipe.fit, split),
                                    size=(width, height), fit=recipe.fit, split="stratified" if split else None,
                                    val=split.get("val"), test=split.get("test"), seed=split.get("seed", 0),
                                    progress=False)
        print(f"prepared: {prepared.summary}", flush=True)
        progress["phase"] = "training"
        overrides = {key: settings[key] for key in ("patience", "init_weights") if settings.get(key) is not None}
        run = workflow.train(settings["model"], cache=prepared.cache, out=out, epochs=settings.get("epochs"),
                             batch_size=settings.get("batch_size"), learning_rate=settings.get("learning_rate"),
                             photos=settings["photos"], any_input_size=(width, height) != (recipe.input_width,
                                                                                           recipe.input_height),
                             progress=False, callbacks=callbacks, **overrides)
    progress["phase"] = "evaluating"
    # Evaluated at once, so Inspect and Compare have the validation predictions they read.
    print(repr(run.evaluate()), flush=True)


def evaluate_job(settings: dict, progress) -> None:
    import cnnlab.workflow as workflow

    progress["phase"] = "evaluating"
    print(repr(workflow.open_run(settings["out"]).evaluate()), flush=True)


def shared_progress(progress):
    """A Keras callback writing the epoch and step into the progress file as training goes."""
    from cnnlab.backend import keras

    class SharedProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            progress.values.update(epoch=epoch + 1, epochs=self.params.get("epochs") or 0,
                                   steps=self.params.get("steps") or 0, loss=None)
            progress["step"] = 0

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                progress.values["loss"] = float(logs["loss"])
            progress["step"] = batch + 1

    return SharedProgress()


if __name__ == "__main__":
    main(sys.argv[1:])
