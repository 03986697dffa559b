"""Multi-worker training: 2 torchrun workers on 127.0.0.1 (gloo), against one process.

- the workers end with identical weights, and their run matches a single process with the same
  global batch (same photos per step): losses within 1e-4 relative, weights within 1e-4;
- a worker killed mid-run: torchrun restarts the group, which resumes from the last committed
  epoch and ends exactly where the uninterrupted run ended;
- a cache prepared with --shards 2: each worker reads only its own shard;
- refusals: --distributed without a launcher, a global batch that does not split evenly;
- TensorFlow (`make test-tensorflow`): 2 MultiWorkerMirroredStrategy workers from TF_CONFIG end
  with identical weights, those of one TensorFlow process fed the same global batches.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import run as cli_run
from cnnlab.data.cache import PrepareOptions
from cnnlab.data.decode import DecodeOptions
from cnnlab.data.shards import prepare_sharded
from cnnlab.data.splits import SplitOptions
from synthetic import stripes_cache
from test_backends import tensorflow_python

WORKER = Path(__file__).with_name("distributed_worker.py")
REPOSITORY = Path(__file__).resolve().parents[1]
EPOCHS = 4
# conv1 with unit pixels (it learns), global batch 16: 4 steps of 8 photos per worker per epoch.
SETTINGS = dict(model="conv1", epochs=EPOCHS, batch_size=16, learning_rate=1e-3, pixel_scale="unit", seed=0,
                micro_batch_size=0, any_input_size=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*arguments: str, restarts: int = 0) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", str(restarts),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *arguments]


def environment() -> dict:
    values = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPOSITORY / "src"))
    values.pop("CNNLAB_ALLOCATOR_APPLIED", None)
    return values


def run_worker_script(config: dict, report: Path, single: bool = False) -> list[dict]:
    report.mkdir(parents=True)
    command = [sys.executable, str(WORKER), json.dumps(config), str(report), "--single"] if single else \
        torchrun(str(WORKER), json.dumps(config), str(report))
    result = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(path.read_text()) for path in sorted(report.glob("rank-*.json"))]


def weights(report: Path, rank: int) -> list[np.ndarray]:
    with np.load(report / f"rank-{rank}.npz") as stored:
        return [stored[f"arr_{index}"] for index in range(len(stored.files))]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    stripes_cache(root, per_class=48, size=32, val=16, test=16)  # 96 photos: 64 train, 16 val, 16 test
    return root


@pytest.fixture(scope="module")
def two_workers(data) -> tuple[Path, list[dict]]:
    report = data / "two-workers"
    config = dict(SETTINGS, cache=str(data / "cache"), out=str(data / "two-workers-run"))
    return report, run_worker_script(config, report)


def test_two_workers_stay_in_step_and_match_one_process(data, two_workers):
    report, ranks = two_workers
    assert [rank["epochs_done"] for rank in ranks] == [EPOCHS, EPOCHS]
    for first, second in zip(weights(report, 0), weights(report, 1)):
        assert np.array_equal(first, second)  # every worker applied the same updates
    run = Path(data / "two-workers-run")
    assert json.loads((run / "config.json").read_text())["workers"] == 2
    assert json.loads((run / "data.json").read_text())["worker_data"] == "an equal part of every global batch"

    single_report = data / "one-process"
    single = run_worker_script(dict(SETTINGS, cache=str(data / "cache"), out=str(data / "one-process-run")),
                               single_report, single=True)[0]
    for together, alone in zip(ranks[0]["history"], single["history"]):
        for key in ("train_loss", "val_loss", "val_accuracy", "train_mse"):
            assert together[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key
    assert single["history"][-1]["train_loss"] < single["history"][0]["train_loss"]  # it learned
    for distributed_value, single_value in zip(weights(report, 0), weights(single_report, 0)):
        np.testing.assert_allclose(distributed_value, single_value, rtol=1e-4, atol=1e-4)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


# Slow (18 s, and gloo resets a connection about once in ten runs); the default run keeps two workers in step.
@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_resumes(data, two_workers):
    run = data / "killed-run"
    command = torchrun("-m", "cnnlab", "train", "conv1", "--any-input-size", "--cache", str(data / "cache"), "--out", str(run),
                       "--distributed", "--epochs", str(EPOCHS), "--batch-size", "16", "--lr", "1e-3",
                       "--pixels", "unit", "--micro-batch-size", "0", "--no-evaluate", restarts=1)
    launcher = subprocess.Popen(command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run / "state.json").exists() or json.loads((run / "state.json").read_text())["epochs_done"] < 1:
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()[-3000:]
        time.sleep(0.05)
    workers = _children(launcher.pid)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    stdout, stderr = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, stderr[-3000:]
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] and [entry["epoch"] for entry in state["history"]] == list(range(1, EPOCHS + 1))
    assert "best epoch" in stdout  # rank 0 reported once the restarted group finished

    # The restarted group ended exactly where the uninterrupted run of the fixture ended.
    from cnnlab.backend import configure_keras

    configure_keras()
    import keras
    from cnnlab.models import build_model

    model = build_model("conv1", (3, 32, 32), 2)
    model.load_weights(run / "last.weights.h5")
    for resumed, uninterrupted in zip(model.weights, weights(two_workers[0], 0)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(resumed.value), uninterrupted)


def test_each_worker_reads_its_own_shard_of_a_sharded_cache(data):
    options = PrepareOptions(decode=DecodeOptions(32, 32), split=SplitOptions("stratified", val=16, test=16), workers=1)
    sharded = prepare_sharded(data / "photos", data / "sharded", options, 2, show_progress=False)
    report = data / "sharded-report"
    ranks = run_worker_script(dict(SETTINGS, epochs=2, cache=str(data / "sharded"), out=str(data / "sharded-run")), report)
    assert [Path(rank["cache_root"]).name for rank in ranks] == ["shard-000-of-002", "shard-001-of-002"]
    assert all(rank["sharded"] for rank in ranks)
    assert [rank["rows"] for rank in ranks] == [sharded.shards[index].manifest["shape"][0] for index in (0, 1)]
    for first, second in zip(weights(report, 0), weights(report, 1)):
        assert np.array_equal(first, second)
    description = json.loads((data / "sharded-run" / "data.json").read_text())
    assert description["worker_data"] == "own cache shard"
    assert description["train_images"] == 64 and description["split_hash"] == sharded.manifest["split_hash"]


def test_distributed_without_a_launcher_says_how_to_start_it(data, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    code = cli_run(["train", "conv1", "--any-input-size", "--cache", str(data / "cache"), "--out", str(data / "nowhere"), "--distributed"])
    error = capsys.readouterr().err
    assert code == 2 and "torchrun --nproc-per-node" in error and "Traceback" not in error
    assert not (data / "nowhere").exists()


def test_a_global_batch_must_split_evenly_over_the_workers(data):
    from cnnlab.data.reader import open_cache
    from cnnlab.training.batches import CacheBatches

    cache = open_cache(data / "cache")
    with pytest.raises(ValueError, match="multiple of the number of workers"):
        CacheBatches(cache.images, cache.labels, cache.indices("train"), 2, 15, "unit", shuffle=True, rank=0, world_size=2)
    # The parts of every global batch are disjoint, equal and together the one-process batch.
    parts = [CacheBatches(cache.images, cache.labels, cache.indices("train"), 2, 16, "unit", shuffle=True, rank=rank,
                          world_size=2, epoch=3) for rank in (0, 1)]
    whole = CacheBatches(cache.images, cache.labels, cache.indices("train"), 2, 16, "unit", shuffle=True, epoch=3)
    assert len(parts[0]) == len(whole) == 4
    for index in range(len(whole)):
        together = np.concatenate([part.batch_rows(index) for part in parts])
        assert np.array_equal(together, whole.batch_rows(index)) and len(parts[0].batch_rows(index)) == 8


def test_two_tensorflow_workers_match_one_process(data):
    python = tensorflow_python()
    if python is None:
        pytest.skip("TensorFlow is not installed; run `make test-tensorflow` (installs the [tensorflow] extra)")
    settings = dict(SETTINGS, cache=str(data / "cache"), out=str(data / "tensorflow-run"))
    report = data / "tensorflow-report"
    report.mkdir()
    base = dict(environment(), KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    workers = [subprocess.Popen([python, str(WORKER), json.dumps(settings), str(report)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(base, TF_CONFIG=json.dumps(
                                    {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})))
               for index in (0, 1)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    ranks = [json.loads((report / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["replicas"] for rank in ranks] == [2, 2]  # one strategy over both processes
    for first, second in zip(weights(report, 0), weights(report, 1)):
        assert np.array_equal(first, second)
    assert json.loads((data / "tensorflow-run" / "config.json").read_text())["workers"] == 2

    alone = data / "tensorflow-one-process"
    alone.mkdir()
    result = subprocess.run([python, str(WORKER), json.dumps(dict(settings, out=str(data / "tensorflow-one-run"))),
                             str(alone), "--single"], capture_output=True, text=True, env=base, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    together = json.loads((report / "rank-0.json").read_text())["history"]
    single = json.loads((alone / "rank-0.json").read_text())["history"]
    for epoch_together, epoch_alone in zip(together, single):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert epoch_together[key] == pytest.approx(epoch_alone[key], rel=1e-4, abs=1e-6), key
    for distributed_value, single_value in zip(weights(report, 0), weights(alone, 0)):
        np.testing.assert_allclose(distributed_value, single_value, rtol=1e-4, atol=1e-4)
