"""Experiment logs (--log tensorboard/csv/mlflow) read back with each library's own reader, and
progress output as a log file and `--quiet` see it."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import re
import shutil
import time
from pathlib import Path

import pytest

from cnnlab import cli
from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.progress import Progress
from cnnlab.runs import Run, TrainConfig
from cnnlab.training.evaluation import evaluate_run
from training_helpers import make_config, quiet_train

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
needs_tensorboard = pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard not installed: pip install 'cnnlab[tensorboard]'")
needs_mlflow = pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed: pip install 'cnnlab[mlflow]'")
ALL_LOGS = ("tensorboard", "csv", "mlflow")


def read_history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of one TensorBoard run folder, through TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    reader = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
    reader.Reload()
    return {tag: [(event.step, event.value) for event in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def csv_rows(run: Path) -> list[dict]:
    with open(Run(run).log_path("csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def mlflow_client(run: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{Run(run).log_path('mlflow')}")


def mlflow_history(run: Path, name: str) -> list[tuple[int, float]]:
    client = mlflow_client(run)
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(Run(run).mlflow_run["run_id"], name))


def close(a: float | None, b: float) -> bool:
    """TensorBoard stores float32: equal to that precision."""
    return a is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


@pytest.fixture(scope="module")
def logged_run(tiny_cache, tmp_path_factory):
    """2 epochs with every log, evaluated after training (as `cnnlab train` does)."""
    if not (HAS_TENSORBOARD and HAS_MLFLOW):
        pytest.skip("needs the tensorboard and mlflow extras: pip install 'cnnlab[tensorboard,mlflow]'")
    run = tmp_path_factory.mktemp("logs") / "conv1"
    state, _ = quiet_train(make_config(tiny_cache, run, epochs=2, log=("csv", "mlflow", "tensorboard")))
    evaluation = evaluate_run(run)
    return run, state, evaluation


# ---- the configuration ---------------------------------------------------------------------

def test_config_records_the_logs_and_rejects_unknown_ones(tmp_path):
    config = TrainConfig("conv1", "cache", "out", log=["mlflow", "csv", "csv"])
    assert config.log == ("csv", "mlflow")  # a fixed order without repeats
    assert config.to_dict()["log"] == ["csv", "mlflow"]
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({"model": "conv1", "cache": "c", "out": "o"}).log == ()  # runs from before --log
    with pytest.raises(UserError, match="--log 'wandb' is not a log cnnlab writes"):
        TrainConfig("conv1", "cache", "out", log=("wandb",)).validate()


def test_a_missing_extra_is_a_one_line_error_naming_it(tiny_cache, tmp_path, monkeypatch):
    from cnnlab.training import loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(UserError, match=r"--log mlflow needs the mlflow package: pip install 'cnnlab\[mlflow\]'"):
        quiet_train(make_config(tiny_cache, tmp_path / "run", epochs=1, log=("mlflow",)))
    assert not (tmp_path / "run").exists()  # refused before anything was written


# ---- each log holds metrics.jsonl, read back with its library's reader ---------------------------

def test_config_json_records_which_logs_were_written(logged_run):
    run, _, _ = logged_run
    opened = Run.open(run)
    assert opened.config["train"]["log"] == ["tensorboard", "csv", "mlflow"]
    assert opened.log_kinds == ("tensorboard", "csv", "mlflow")
    assert all(opened.log_path(kind).exists() for kind in opened.log_kinds)
    assert opened.logs_folder() == run / "logs"


def test_csv_has_one_row_per_epoch_equal_to_metrics_jsonl(logged_run):
    run, _, _ = logged_run
    history = read_history(run)
    rows = csv_rows(run)
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert list(rows[0]) == list(history[0])  # the header is the metric names
    for row, entry in zip(rows, history):
        for name, value in entry.items():
            assert float(row[name]) == value, name  # csv writes Python's repr: exact


@needs_tensorboard
def test_tensorboard_scalars_equal_metrics_jsonl(logged_run):
    run, _, _ = logged_run
    history = read_history(run)
    folder = Run(run).log_path("tensorboard")
    train, validation = tensorboard_scalars(folder / "train"), tensorboard_scalars(folder / "validation")
    assert set(train) == {"epoch_loss", "epoch_accuracy", "epoch_mse", "epoch_learning_rate", "epoch_seconds"}
    assert set(validation) == {"epoch_loss", "epoch_accuracy", "epoch_mse"}
    for tag, scalars in {**{f"train/{t}": s for t, s in train.items()}, **{f"val/{t}": s for t, s in validation.items()}}.items():
        group, name = tag.split("/")
        key = {"epoch_seconds": "seconds", "epoch_learning_rate": "learning_rate"}.get(
            name, ("train_" if group == "train" else "val_") + name.removeprefix("epoch_"))
        assert [step for step, _ in scalars] == [1, 2], tag
        assert all(close(entry[key], value) for entry, (_, value) in zip(history, scalars)), (tag, scalars)


@needs_tensorboard
def test_tensorboard_holds_hyperparameters_and_the_final_evaluation(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, state, evaluation = logged_run
    reader = EventAccumulator(str(Run(run).log_path("tensorboard")))
    reader.Reload()
    text = reader.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| model | conv1 |" in text and "| learning_rate | 0.001 |" in text and "| batch_size | 4 |" in text
    test_accuracy = reader.Scalars("evaluation/test/accuracy")
    assert [event.step for event in test_accuracy] == [state["epochs_done"]]
    assert close(test_accuracy[0].value, evaluation["splits"]["test"]["accuracy"])


@needs_mlflow
def test_mlflow_params_metrics_and_evaluation(logged_run):
    run, state, evaluation = logged_run
    history = read_history(run)
    client = mlflow_client(run)
    record = Run(run).mlflow_run
    found = client.get_run(record["run_id"])
    assert found.info.run_name == "conv1" and found.info.status == "FINISHED"
    params = found.data.params
    assert params["model"] == "conv1" and params["batch_size"] == "4" and float(params["learning_rate"]) == 1e-3
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_mse", "learning_rate"):
        assert mlflow_history(run, key) == [(entry["epoch"], entry[key]) for entry in history], key
    assert mlflow_history(run, "epoch_seconds") == [(entry["epoch"], entry["seconds"]) for entry in history]
    assert mlflow_history(run, "evaluation/test/accuracy") == [(state["epochs_done"], evaluation["splits"]["test"]["accuracy"])]
    assert not (Path.cwd() / "mlruns").exists()  # nothing written outside the run folder


# ---- resume continues every log: each epoch once -------------------------------------------------

class Cut(Exception):
    pass


class CutAfterEpoch(keras.callbacks.Callback):
    """Stops training by an exception after an epoch's commit (and its logs), as a kill would."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise Cut()


def test_resume_continues_every_log_without_repeating_an_epoch(tiny_cache, tmp_path):
    kinds = tuple(kind for kind, present in (("csv", True), ("tensorboard", HAS_TENSORBOARD), ("mlflow", HAS_MLFLOW))
                  if present)
    run = tmp_path / "run"
    config = make_config(tiny_cache, run, epochs=3, log=kinds)
    with pytest.raises(Cut):
        quiet_train(config, callbacks=[CutAfterEpoch(2)])
    assert [int(row["epoch"]) for row in csv_rows(run)] == [1, 2]
    mlflow_run = Run(run).mlflow_run
    time.sleep(1.1)  # event files are named by the second they were opened in
    quiet_train(config, resume=True)
    history = read_history(run)
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert [int(row["epoch"]) for row in csv_rows(run)] == [1, 2, 3]
    if HAS_TENSORBOARD:
        folder = Run(run).log_path("tensorboard")
        for group in ("train", "validation"):
            for tag, scalars in tensorboard_scalars(folder / group).items():
                assert [step for step, _ in scalars] == [1, 2, 3], (group, tag)
        assert all(close(entry["val_loss"], value)
                   for entry, (_, value) in zip(history, tensorboard_scalars(folder / "validation")["epoch_loss"]))
        assert len(list((folder / "train").glob("events.out.tfevents.*"))) == 2  # the same folder, continued
    if HAS_MLFLOW:
        assert Run(run).mlflow_run == mlflow_run  # the same MLflow run, continued
        assert mlflow_client(run).get_run(mlflow_run["run_id"]).info.status == "FINISHED"
        assert mlflow_history(run, "val_loss") == [(entry["epoch"], entry["val_loss"]) for entry in history]
        assert len(mlflow_client(run).search_runs([mlflow_run["experiment_id"]])) == 1


@needs_tensorboard
def test_logs_behind_the_committed_epochs_are_filled_in_once(tiny_cache, tmp_path):
    """A trainer killed between an epoch's commit and its log lines: the next start writes the
    missing epoch, and a TensorBoard epoch left half written is replaced, not doubled."""
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    quiet_train(make_config(tiny_cache, run, epochs=2, log=("csv", "tensorboard")))
    shutil.rmtree(Run(run).log_path("tensorboard"))
    Run(run).log_path("csv").unlink()
    # Epoch 1 written, epoch 2 half written (its loss only), as a kill mid-flush leaves them.
    history = read_history(run)
    for group, prefix in (("train", "train_"), ("validation", "val_")):
        with SummaryWriter(str(Run(run).log_path("tensorboard") / group)) as writer:
            for key, value in history[0].items():
                if key.startswith(prefix):
                    writer.add_scalar("epoch_" + key.removeprefix(prefix), value, 1)
            if group == "train":
                writer.add_scalar("epoch_seconds", history[0]["seconds"], 1)
                writer.add_scalar("epoch_learning_rate", history[0]["learning_rate"], 1)
                writer.add_scalar("epoch_loss", 123.0, 2)
    time.sleep(1.1)  # event files are named by the second they were opened in
    # Cut after its last epoch's commit, before training was marked finished: nothing is left to
    # train, and the logs are caught up all the same.
    state = json.loads((run / "state.json").read_text())
    state.pop("finished")
    (run / "state.json").write_text(json.dumps(state))
    quiet_train(make_config(tiny_cache, run, epochs=2, log=("csv", "tensorboard")), resume=True)
    assert [int(row["epoch"]) for row in csv_rows(run)] == [1, 2]
    train = tensorboard_scalars(Run(run).log_path("tensorboard") / "train")
    assert [step for step, _ in train["epoch_loss"]] == [1, 2]
    assert close(history[1]["train_loss"], train["epoch_loss"][1][1])  # not the 123 of the half-written epoch


# ---- progress as a log file and --quiet see it --------------------------------------------------

def test_progress_in_a_file_is_whole_lines_without_carriage_returns(tmp_path):
    path = tmp_path / "progress.log"
    with open(path, "w") as stream:
        progress = Progress(5, "prepare photos", stream=stream, log_every=0.0)
        for _ in range(5):
            progress.update(1, postfix="0 skipped")
        progress.close()
    text = path.read_text()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 6 and all(line.startswith("prepare photos: ") for line in lines)
    assert lines[0].startswith("prepare photos: 1/5 (20%), ") and "ETA" in lines[0] and "img/s" in lines[0]
    assert lines[-1].startswith("prepare photos: 5/5 in ") and lines[-1].endswith("img/s) 0 skipped")


def test_progress_on_a_terminal_is_a_live_tqdm_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(4, "predict", stream=stream)
    assert progress.live
    for _ in range(4):
        progress.update(1, postfix="1 failed")
    progress.close()
    drawn = stream.getvalue()
    assert "\r" in drawn and drawn.endswith("\n")
    assert "predict: 100%|" in drawn and "4/4" in drawn and "1 failed" in drawn


def test_training_progress_on_a_terminal_leaves_one_line_per_epoch(tiny_cache, tmp_path):
    from cnnlab.training.trainer import train

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    train(make_config(tiny_cache, tmp_path / "run", epochs=2), stream=stream)
    drawn = stream.getvalue()
    assert "conv1 epoch 1/2:" in drawn and "step" in drawn and "loss" in drawn  # the live bar was drawn
    # Each bar is erased and replaced by its epoch's line.
    final = [part.rsplit("\r", 1)[-1].replace("\x1b[A", "") for part in drawn.split("\n") if part.strip("\r ")]
    assert [line.split(":")[0] for line in final if line.strip()] == ["conv1 epoch 1/2", "conv1 epoch 2/2"]


def test_quiet_prints_only_the_final_summary(tiny_cache, tmp_path, capsys):
    out = tmp_path / "run"
    status = cli.run(["train", "conv1", "--any-input-size", "--cache", str(tiny_cache), "--out", str(out), "--epochs", "2",
                       "--batch-size", "4", "--pixels", "unit", "--lr", "0.001", "--quiet", "--no-evaluate",
                       "--log", "csv"])
    printed = capsys.readouterr()
    assert status == 0
    assert printed.err == ""
    assert printed.out.splitlines() == [printed.out.strip()] and printed.out.startswith(f"{out}: 2 epochs, best epoch ")
    assert re.search(r"best epoch [12] \(val loss \d+\.\d{4}\), [\d.]+ s of training$", printed.out.strip())
    assert [int(row["epoch"]) for row in csv_rows(out)] == [1, 2]


def test_a_notebook_with_widgets_gets_tqdms_widget_and_other_streams_lines(monkeypatch):
    import sys

    from cnnlab import progress as progress_module

    assert progress_module.notebook_bar() is None  # pytest is no Jupyter kernel
    made = []

    class Widget:  # stands in for tqdm.notebook.tqdm_notebook, which needs a kernel to draw in
        def __init__(self, **settings):
            made.append(settings)

        def update(self, count):
            made.append(count)

        def set_postfix_str(self, text, refresh=True):
            pass

        def close(self):
            made.append("closed")

    monkeypatch.setattr(progress_module, "notebook_bar", lambda: Widget)
    shown = Progress(3, "predict", stream=sys.stderr)  # the notebook's own output
    assert shown.live
    shown.update(3)
    shown.close()
    assert made[0]["total"] == 3 and made[0]["desc"] == "predict" and made[1:] == [3, "closed"]
    captured = io.StringIO()  # a stream the notebook user captures: lines, no widget
    written = Progress(3, "predict", stream=captured)
    assert not written.live
    written.update(3)
    written.close()
    assert captured.getvalue().startswith("predict: 3/3 in ") and len(made) == 3
