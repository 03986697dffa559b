"""Best weights and early stopping: the epoch with the lowest validation loss is the run's best
(checked against scripted validation losses and each epoch's weights), patience stops a run and a
resume keeps it stopped, and a diverging run records null losses instead of crashing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.training.trainer import EpochCommit
from training_helpers import losses, make_config, model_weights, quiet_train, read_metrics, same_weights


@pytest.fixture
def scripted_val_losses(monkeypatch):
    """Replace each epoch's val_loss by a scripted value and snapshot the model's weights at
    every epoch end, so best-epoch selection can be checked against known numbers."""
    script: list[float] = []
    snapshots: list[list[np.ndarray]] = []
    original = EpochCommit.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs["val_loss"] = script[epoch]
        snapshots.append([np.array(weight, copy=True) for weight in self.model.get_weights()])
        return original(self, epoch, logs)

    monkeypatch.setattr(EpochCommit, "on_epoch_end", on_epoch_end)
    return script, snapshots


def test_best_weights_are_the_best_epochs_not_the_last(scripted_val_losses, tiny_cache, tmp_path):
    script, snapshots = scripted_val_losses
    script[:] = [0.9, 0.5, 0.7, 0.8]  # validation loss rises after epoch 2
    run = tmp_path / "run"
    state, _ = quiet_train(make_config(tiny_cache, run, epochs=4))
    assert state["best_epoch"] == 2 and state["best_val_loss"] == 0.5
    assert state["epochs_done"] == 4 and not state.get("stopped_early")  # ran out of epochs
    assert losses(read_metrics(run), "val_loss") == script
    assert not same_weights(snapshots[1], snapshots[3])
    assert same_weights(model_weights(run, "best"), snapshots[1])
    assert same_weights(model_weights(run, "last"), snapshots[3])


def test_early_stopping_stops_and_records_it(scripted_val_losses, tiny_cache, tmp_path):
    script, snapshots = scripted_val_losses
    script[:] = [0.5, 0.6, 0.7, 0.4, 0.3, 0.2]  # would improve later, but patience 2 stops at 3
    run = tmp_path / "run"
    state, progress = quiet_train(make_config(tiny_cache, run, epochs=6, patience=2))
    assert state["stopped_early"] is True and state["finished"] is True
    assert state["epochs_done"] == 3 and len(snapshots) == 3
    assert [entry["epoch"] for entry in read_metrics(run)] == [1, 2, 3]
    assert state["best_epoch"] == 1
    assert same_weights(model_weights(run, "best"), snapshots[0])
    assert same_weights(model_weights(run, "last"), snapshots[2])
    lines = progress.splitlines()
    assert len(lines) == 4 and "stopped early after epoch 3" in lines[-1]
    # Resuming a run that stopped early trains nothing more.
    again, _ = quiet_train(make_config(tiny_cache, run, epochs=6, patience=2), resume=True)
    assert again["epochs_done"] == 3 and len(snapshots) == 3


def test_best_weights_are_exported_when_epochs_run_out(scripted_val_losses, tiny_cache, tmp_path):
    script, snapshots = scripted_val_losses
    script[:] = [0.9, 0.8, 0.7]  # improves every epoch: best is the last
    run = tmp_path / "run"
    state, _ = quiet_train(make_config(tiny_cache, run, epochs=3, patience=1))
    assert not state.get("stopped_early") and state["best_epoch"] == 3
    assert same_weights(model_weights(run, "best"), snapshots[2])
    assert same_weights(model_weights(run, "best"), model_weights(run, "last"))


def test_a_diverging_run_records_null_losses_instead_of_crashing(tiny_cache, tmp_path):
    """SGD at lr 1e8 on raw pixels overflows to NaN; JSON has no NaN. Before the fix, the epoch
    commit raised 'Out of range float values are not JSON compliant' and the run was lost."""
    run = tmp_path / "run"
    state, _ = quiet_train(make_config(tiny_cache, run, epochs=2, optimizer="sgd", learning_rate=1e8, pixel_scale="raw"))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in metrics] == [1, 2]
    assert any(entry["val_loss"] is None for entry in metrics)
    assert state["best_epoch"] is not None and (run / "best.weights.h5").is_file()
    finite = [entry["val_loss"] for entry in metrics if entry["val_loss"] is not None]
    assert state["best_val_loss"] == (min(finite) if finite else None)
