"""RUN/logs/mlflow.db: an MLflow tracking store of the run's own (SQLite), one MLflow run.

MLflow 3 refuses its old file store (./mlruns) unless told otherwise, so the run folder holds
a SQLite store instead: `mlflow ui --backend-store-uri sqlite:///RUN/logs/mlflow.db` shows it,
and MlflowClient(tracking_uri=...) reads it. logs/mlflow-run.json names the MLflow run, so a
resumed run continues the same one. Parameters are the hyperparameters; metrics are the epoch
figures with step = epoch, and the final evaluation's at the last epoch's step.

Nothing leaves the machine: MLflow's usage telemetry is switched off unless the user's own
MLFLOW_DISABLE_TELEMETRY says otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

from cnnlab.training.loggers import EpochLog, hyperparameters, run_name

EXPERIMENT = "cnnlab"
# The field every epoch has: the steps MLflow holds for it are the epochs already logged.
MARKER = "epoch_seconds"


def tracking_uri(database) -> str:
    return f"sqlite:///{os.path.abspath(database)}"


@contextlib.contextmanager
def _quiet(*names: str):
    """Hide MLflow's and Alembic's INFO lines while a new store creates its tables."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def metric_name(key: str) -> str:
    return MARKER if key == "seconds" else key


class MlflowLog(EpochLog):
    kind = "mlflow"

    def __init__(self, run):
        super().__init__(run)
        self.client = None
        self.run_id = None

    def open(self) -> set[int]:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        database = self.run.log_path("mlflow")
        database.parent.mkdir(parents=True, exist_ok=True)
        with _quiet("mlflow", "alembic"):
            self.client = MlflowClient(tracking_uri=tracking_uri(database))
        record = self.run.mlflow_run
        if record is not None:
            try:
                self.run_id = self.client.get_run(record["run_id"]).info.run_id
            except MlflowException:  # the store was deleted or replaced: start a new MLflow run
                self.run_id = None
        if self.run_id is None:
            self.run_id = self._existing_or_new_run()
        return {metric.step for metric in self.client.get_metric_history(self.run_id, MARKER)}

    def _existing_or_new_run(self) -> str:
        from mlflow.entities import Param

        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            experiment_id = self.client.create_experiment(
                EXPERIMENT, artifact_location=self.run.mlflow_artifacts().resolve().as_uri())
        else:
            experiment_id = experiment.experiment_id
        # A run created by a trainer killed before it wrote mlflow-run.json is this run's own.
        found = self.client.search_runs([experiment_id], max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = self.client.create_run(experiment_id, run_name=run_name(self.run),
                                            tags={"cnnlab.run_folder": str(self.run.path.resolve())}).info.run_id
        self.run.write_mlflow_run({"run_id": run_id, "experiment_id": experiment_id})
        params = [Param(name, str(value)) for name, value in hyperparameters(self.run).items()]
        self.client.log_batch(run_id, params=params)  # the same values again are accepted
        return run_id

    def write_epochs(self, entries: list[dict]) -> None:
        from mlflow.entities import Metric

        for entry in entries:
            now = int(time.time() * 1000)
            metrics = [Metric(metric_name(key), float(value), now, entry["epoch"]) for key, value in entry.items()
                       if key != "epoch" and value is not None]
            # One batch per epoch: the store takes it whole or not at all.
            self.client.log_batch(self.run_id, metrics=metrics)

    def write_evaluation(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step) for name, value in scalars.items()])

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.client.update_run(self.run_id, status="RUNNING")  # again, when a resumed run continues it

    def finish_training(self) -> None:
        self.sync()
        self.client.set_terminated(self.run_id, "FINISHED")  # a resumed run sets it RUNNING again
        self.finish()

    def close(self) -> None:
        self.client = None
