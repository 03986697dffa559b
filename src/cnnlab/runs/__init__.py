"""The run folder, its one owner: `Run` reads and writes it; nothing else names its files.

    config.json        the resolved training configuration (model, recipe, data, seed)
    classes.json       class names in label order
    data.json          cache path, split-manifest hash, split counts, how photos were decoded
    versions.json      library versions
    state.json         the commit point: epochs finished, best epoch, history, checkpoint names
    metrics.jsonl      one line per finished epoch (rewritten from state.json, never appended)
    best.weights.h5    weights of the epoch with the lowest validation loss
    last.weights.h5    weights after the last finished epoch
    checkpoint/        versioned weights and optimizer state that state.json points to
    evaluation.json    `cnnlab evaluate`'s metrics per split and the validation threshold
    predictions-<split>.npz   the probabilities behind evaluation.json (a cache for pictures)
    logs/              experiment logs asked for with --log: tensorboard/, metrics.csv, mlflow.db
    best.onnx          the best weights as ONNX (made by the first `cnnlab predict`, kept while
                       the best weights are unchanged), best.onnx.json what it was made from

TrainConfig (config.json's "train" part) lives here too: it is the run's own contract.
"""

from cnnlab.runs.config import TrainConfig
from cnnlab.runs.predictions import StoredPredictions
from cnnlab.runs.run import Preprocessing, Run

__all__ = ["Preprocessing", "Run", "StoredPredictions", "TrainConfig"]
