"""What training writes into a run folder, epoch by epoch, and reads back to resume.

Every file is replaced atomically, and state.json (the commit point) is written after the
files it names, so a process killed at any instant (even `kill -9`) leaves a folder that
resumes from the last finished epoch: no epoch is repeated or lost in metrics.jsonl. These
methods are part of cnnlab.runs.Run (a mixin, kept apart to keep each module small).
"""

from __future__ import annotations

import re
from pathlib import Path

from cnnlab.errors import UserError
from cnnlab.runs import files
from cnnlab.runs.lock import exclusive


# What cnnlab's atomic writers name a file before renaming it into place.
TEMPORARY_NAME = re.compile(r"^\.(\d+\..+|.+\.\d+\.partial)$")


class TrainingWrites:
    path: Path

    def lock(self):
        """A context manager: this process is the run folder's only writer while it is held."""
        return exclusive(self.path)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the half-written files a killed writer left (cnnlab's own temporary names only:
        `.<pid>.<name>` and `.<name>.<pid>.partial`). Call it holding the lock: then no other
        writer can own them."""
        removed = []
        for folder in (self.path, self.path / files.CHECKPOINTS, self.path / files.LOGS):
            for path in folder.glob(".*") if folder.is_dir() else ():
                if path.is_file() and TEMPORARY_NAME.match(path.name):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def save_checkpoint(self, model, optimizer, epoch: int) -> tuple[str, str]:
        """The model's weights and the optimizer's state after `epoch` (1-based), under
        checkpoint/; returns their names as state.json records them."""
        weights, optimizer_state = files.checkpoint_names(epoch)
        (self.path / files.CHECKPOINTS).mkdir(exist_ok=True)
        files.save_weights(model, self.path / weights)
        files.save_optimizer(optimizer, self.path / optimizer_state)
        return weights, optimizer_state

    def commit_state(self, state: dict) -> None:
        """Write state.json (the commit point), then everything derived from it."""
        files.write_json(self.path / files.STATE, state)

    def publish_committed_state(self, state: dict) -> None:
        """Derive metrics.jsonl, last/best.weights.h5 from the committed state.json. Called after
        every commit and again on resume: a kill between the commit and these writes would
        otherwise leave them one epoch behind for good when no epoch remains to be trained."""
        files.write_metrics_file(self.path, state["history"])
        files.publish(self.path, self.path / state["last_weights"], files.weights_name(files.LAST))
        files.publish(self.path, self.path / state["best_weights"], files.weights_name(files.BEST))
        files.remove_unreferenced_checkpoints(self.path, state)

    def record_configuration(self, train: dict, recipe: dict) -> None:
        """Rewrite config.json's training settings and recipe (a run extended by --resume --epochs)."""
        config = files.read_json(self.path / files.CONFIG)
        config.update(train=train, recipe=recipe)
        files.write_json(self.path / files.CONFIG, config)
        self.__dict__.pop("config", None)

    def load_last_weights(self, model, state: dict) -> None:
        model.load_weights(self.path / state["last_weights"])

    def load_optimizer(self, optimizer, model, state: dict) -> None:
        files.load_optimizer(optimizer, model, self.path / state["last_optimizer"])

    def started_by(self, train: dict) -> bool:
        """True when the folder holds only what this same configuration writes before its first epoch."""
        try:
            return files.read_json(self.path / files.CONFIG)["train"] == train
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def check_for_training(self, resume: bool, train: dict | None = None) -> dict | None:
        """The committed state to resume from, or None to start afresh; UserError when the
        folder may not be trained into (cnnlab never overwrites a folder)."""
        state = files.read_state(self.path)
        if state is None and resume and train is not None and self.started_by(train):
            return None  # cut before its first epoch was committed: start it again in place
        if state is not None and not resume:
            raise UserError(f"{self.path} already holds a run; pass --resume to continue it, or choose another --out")
        if state is None and self.path.exists() and any(p for p in self.path.iterdir() if not p.name.startswith(".")):
            if resume:
                raise UserError(f"{self.path}: no finished epoch to resume from; remove the folder or choose another --out")
            raise UserError(f"{self.path} exists and is not empty; choose another --out (cnnlab never overwrites a folder)")
        return state

    def resume_plan(self, resume: bool, train: dict) -> dict:
        """What the folder says: a fresh start (state None) or the state, stored configuration,
        precision and split hash to resume with."""
        state = self.check_for_training(resume, train)
        if state is None:
            return {"state": None}
        stored = files.read_json(self.path / files.CONFIG)
        return {"state": state, "train": stored["train"], "precision": stored.get("precision", "float32"),
                "split_hash": files.read_json(self.path / files.DATA)["split_hash"]}
