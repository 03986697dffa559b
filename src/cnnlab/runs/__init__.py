"""The run folder, its one owner: `Run` reads and writes it; nothing else names its files.

The folder's layout (config, classes, data record, versions, the state.json commit point,
metrics, best and last weights, checkpoints, evaluation, stored predictions, experiment logs,
the ONNX copy) is written down once, in cnnlab.runs.files, the only module that spells the
names. TrainConfig (config.json's "train" part) lives here too: it is the run's own contract.
"""

from cnnlab.runs.config import TrainConfig
from cnnlab.runs.predictions import StoredPredictions
from cnnlab.runs.run import Preprocessing, Run

__all__ = ["Preprocessing", "Run", "StoredPredictions", "TrainConfig"]
