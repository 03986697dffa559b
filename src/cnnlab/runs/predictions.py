"""A run's predictions on one split, kept beside evaluation.json as `predictions-<split>.npz`.

evaluate_run writes them (rows, labels and probabilities of the best weights) so that pictures
of a run (ROC curves, the tutorial's scatter, top losses in `cnnlab report`) need no second
pass of the model. The file is only a cache: it names the split hash and the best weights'
size and modification time, and a reader that finds either changed (a resumed run, another
split) ignores it and predicts again. Plain arrays, read with allow_pickle=False.
Runs evaluated before these files existed simply have none.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.cache_io import replace_atomically
from cnnlab.runs.files import BEST, predictions_name, weights_name


@dataclass(frozen=True)
class StoredPredictions:
    rows: np.ndarray  # (n,) cache row numbers
    labels: np.ndarray  # (n,) class indices
    probabilities: np.ndarray  # (n,) P(class 1) for two classes, (n, N) otherwise


def predictions_path(run: str | Path, split: str) -> Path:
    return Path(run) / predictions_name(split)


def _weights_signature(run: Path) -> np.ndarray:
    status = (run / weights_name(BEST)).stat()
    return np.array([status.st_size, status.st_mtime_ns], dtype=np.int64)


def write_predictions(run: str | Path, split: str, rows, labels, probabilities, split_hash: str) -> Path:
    run = Path(run)
    buffer = io.BytesIO()
    np.savez(buffer, rows=np.asarray(rows, dtype=np.int64), labels=np.asarray(labels, dtype=np.int64),
             probabilities=np.asarray(probabilities, dtype=np.float64), split_hash=np.array(split_hash),
             weights=_weights_signature(run))
    path = predictions_path(run, split)
    replace_atomically(path, buffer.getvalue())
    return path


def read_predictions(run: str | Path, split: str, split_hash: str) -> StoredPredictions | None:
    """The stored predictions, or None when absent, unreadable or made by other weights or split."""
    run = Path(run)
    try:
        with np.load(predictions_path(run, split), allow_pickle=False) as stored:
            if str(stored["split_hash"]) != split_hash:
                return None
            if not np.array_equal(stored["weights"], _weights_signature(run)):
                return None
            result = StoredPredictions(stored["rows"], stored["labels"], stored["probabilities"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if not len(result.rows) == len(result.labels) == len(result.probabilities):
        return None
    return result
