"""One worker of a test's torchrun job: cnnlab's train on the process group, plus what the
test needs to look inside it (each worker's final weights and the data it opened).

    python -m torch.distributed.run --nproc-per-node 2 tests/distributed_worker.py CONFIG_JSON REPORT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cnnlab.training import distributed, trainer  # noqa: E402
from cnnlab.training.batches import keras  # noqa: E402
from cnnlab.runs import TrainConfig  # noqa: E402


def main() -> None:
    config = TrainConfig(**json.loads(sys.argv[1]))
    report = Path(sys.argv[2])
    workers = distributed.start() if len(sys.argv) < 4 or sys.argv[3] != "--single" else distributed.SINGLE
    opened = {}
    original = trainer.open_training_data

    def recording(cache_dir, workers):
        data = original(cache_dir, workers)
        opened.update(cache_root=str(data.cache.root), sharded=data.sharded, rows=int(len(data.cache.labels)))
        return data

    trainer.open_training_data = recording

    class SaveWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            # On TensorFlow: the replicas the model's fit spreads each batch over (proof that the
            # strategy, not two independent processes, trained it).
            strategy = getattr(self.model, "distribute_strategy", None)
            opened["replicas"] = int(strategy.num_replicas_in_sync) if strategy is not None else None

        def on_train_end(self, logs=None):
            weights = [keras.ops.convert_to_numpy(variable.value) for variable in self.model.weights]
            np.savez(report / f"rank-{workers.rank}.npz", *weights)

    state = trainer.train(config, show_progress=False, callbacks=[SaveWeights()])
    (report / f"rank-{workers.rank}.json").write_text(json.dumps({**opened, "epochs_done": state["epochs_done"],
                                                                  "history": state["history"]}))
    distributed.stop()


if __name__ == "__main__":
    main()
