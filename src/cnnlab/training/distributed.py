"""Multi-worker data-parallel training on torch.distributed, launched by `torchrun`.

    torchrun --nproc-per-node 2 -m cnnlab train conv2 --data CACHE --out RUN --distributed

On the TensorFlow backend the same flag joins tf.distribute.MultiWorkerMirroredStrategy from
TF_CONFIG instead (one process per worker, started by the cluster; see the end of this module).

Each worker is one process running the same `train` call. They differ only in what this module
tells the trainer (docs/distributed.md has the whole picture):
- which photos they read: their part of every global batch from the whole cache, or, when the
  cache was prepared with `--shards N` for N workers, their own shard;
- that only rank 0 writes the run folder (checkpoints, metrics, state) and shows progress;
- the model's forward pass goes through torch's DistributedDataParallel, whose backward hooks
  average gradients across workers (gloo on CPUs, NCCL on GPUs), so every worker applies the
  same update and the weights stay identical;
- epoch metrics and batch-normalisation statistics are averaged across workers, so early
  stopping, best-epoch choice and the saved statistics describe all the data, as one process would.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Callable

import numpy as np

from cnnlab.errors import UserError

# What torchrun (and other launchers speaking the same protocol: Slurm via srun + env, Kubeflow's
# PyTorchJob) sets for every worker.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class Workers:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # How many times torchrun has restarted the group (a worker died): such a start resumes.
    restart_count: int = 0
    backend: str = "torch"  # or "tensorflow" (MultiWorkerMirroredStrategy)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


    @property
    def reads_run_folder(self) -> bool:
        """Rank 0 reads the run folder and broadcasts it on torch; every TensorFlow worker reads
        it (TF_CONFIG clusters share the run folder; there is no object broadcast to use)."""
        return self.is_main or self.backend == "tensorflow"

    @property
    def on_torch(self) -> bool:
        return self.distributed and self.backend == "torch"


SINGLE = Workers()
_current = SINGLE
_strategy = None  # the TensorFlow strategy, when the workers run on TensorFlow


def current() -> Workers:
    """The workers this process belongs to (SINGLE unless `start` joined a group)."""
    return _current


def start(environment: dict | None = None, timeout_seconds: float = 1800) -> Workers:
    """Join the process group that torchrun's environment describes. Raises ValueError when the
    process was not started by a launcher, or the backend is not PyTorch."""
    global _current
    environment = dict(os.environ if environment is None else environment)
    from cnnlab.backend import keras

    if keras.backend.backend() == "tensorflow":
        return _start_tensorflow(environment)
    missing = [name for name in LAUNCH_VARIABLES if name not in environment]
    if missing:
        raise UserError(f"--distributed: {', '.join(missing)} not set; start the workers with torchrun, e.g. "
                         "`torchrun --nproc-per-node 2 -m cnnlab train ... --distributed` (docs/distributed.md)")
    if keras.backend.backend() != "torch":
        raise UserError(f"--distributed needs the PyTorch or TensorFlow backend, not {keras.backend.backend()}")
    import torch
    import torch.distributed as dist

    workers = Workers(int(environment["RANK"]), int(environment["WORLD_SIZE"]),
                      int(environment.get("LOCAL_RANK", 0)), int(environment.get("TORCHELASTIC_RESTART_COUNT", 0)))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(workers.local_rank)
        timeout = datetime.timedelta(seconds=timeout_seconds)
        store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
        # torchrun keeps one store across the restarts of a group; gloo's addresses from the
        # attempt before would be found by a restarted worker that asks before its new peers
        # have written theirs ("connectFullMesh failed: Connection refused", seen here about
        # one restart in two). A prefix per attempt keeps every attempt to itself.
        store = dist.PrefixStore(f"cnnlab/attempt-{workers.restart_count}", store)
        dist.init_process_group(backend, store=store, rank=workers.rank, world_size=workers.world_size,
                                timeout=timeout)
    _current = workers
    return workers


def _start_tensorflow(environment: dict) -> Workers:
    """Join the MultiWorkerMirroredStrategy cluster that TF_CONFIG describes."""
    global _current, _strategy
    import json

    try:
        described = json.loads(environment["TF_CONFIG"])
        cluster, task = described["cluster"], described["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster["worker"])
        rank = int(task["index"]) + (len(chiefs) if task["type"] == "worker" else 0)
    except (KeyError, ValueError, TypeError) as error:
        raise UserError(f"--distributed on TensorFlow reads TF_CONFIG ({error!r} missing or invalid); set it as "
                         "docs/distributed.md shows, or use the PyTorch backend with torchrun") from None
    import tensorflow as tf

    from cnnlab.training import keras_multiworker

    keras_multiworker.apply()
    _strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _current = Workers(rank, len(chiefs) + len(workers), backend="tensorflow")
    return _current


def scope(workers: Workers):
    """Where to build and compile the model: the TensorFlow strategy's scope, else nowhere special."""
    import contextlib

    return _strategy.scope() if workers.backend == "tensorflow" and _strategy is not None else contextlib.nullcontext()


def prepare_model(model, workers: Workers) -> None:
    """Whatever the engine needs around a compiled model: Keras' repairs on TensorFlow."""
    if workers.distributed and workers.backend == "tensorflow":
        from cnnlab.training import keras_multiworker

        keras_multiworker.apply(model)


def stop() -> None:
    global _current, _strategy
    if _current.backend == "tensorflow":
        _current, _strategy = SINGLE, None
        return
    if _current.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _current = SINGLE


def from_main(workers: Workers, function: Callable[[], object]):
    """Run `function` on rank 0 only and give every worker its result, or raise its ValueError on
    every worker (a refusal on rank 0 must not leave the others waiting for ever)."""
    if not workers.distributed:
        return function()
    if workers.backend == "tensorflow":
        result = function()  # every worker reads the shared run folder itself...
        barrier(workers)  # ...before rank 0 writes anything there
        return result
    outcome = [None]
    if workers.is_main:
        try:
            outcome = [("ok", function())]
        except UserError as error:  # a refusal to share; any other error is a bug and keeps its traceback
            outcome = [("error", str(error))]
    outcome = _broadcast_objects(outcome)
    kind, value = outcome[0]
    if kind == "error":
        raise UserError(value)
    return value


def barrier(workers: Workers) -> None:
    if not workers.distributed:
        return
    if workers.backend == "tensorflow":
        import tensorflow as tf

        _strategy.reduce("SUM", _strategy.run(lambda: tf.constant(1.0)), axis=None)
        return
    import torch.distributed as dist

    dist.barrier()


def _broadcast_objects(values: list) -> list:
    import torch.distributed as dist

    dist.broadcast_object_list(values, src=0)
    return values


def wrap(model, workers: Workers):
    """The model inside DistributedDataParallel; its construction copies rank 0's weights (all
    variables, trainable or not) to every worker."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [workers.local_rank] if torch.cuda.is_available() else None
    return DistributedDataParallel(model, device_ids=device_ids)  # Keras keeps no torch buffers


def broadcast_variables(variables, workers: Workers) -> None:
    """Copy rank 0's values of Keras variables (e.g. the optimizer's moments) to every worker.
    (TensorFlow workers each load them from the shared run folder.)"""
    if not workers.on_torch:
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for variable in variables:
            dist.broadcast(variable.value.data, src=0)


def average_statistics(model, workers: Workers) -> None:
    """Average the non-trainable float variables (batch-norm moving means and variances) across
    workers, as timm's distribute_bn does: each worker's batches updated its own copy. (On
    TensorFlow the strategy keeps mirrored variables in step itself.)"""
    if not workers.on_torch:
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for variable in model.non_trainable_variables:
            tensor = variable.value.data
            if tensor.is_floating_point():
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
                tensor /= workers.world_size


def combine_logs(logs: dict, train_count: int, val_count: int, workers: Workers) -> dict:
    """Epoch logs over all workers: every metric is a mean over photos, so the combined value is
    the photo-weighted mean of the workers' values (validation parts may differ by a photo).
    TensorFlow's strategy has already averaged each step's values over the workers."""
    if not workers.on_torch:
        return logs
    import torch
    import torch.distributed as dist

    names = sorted(logs)
    weights = [val_count if name.startswith("val_") else train_count for name in names]
    values = torch.tensor([[float(logs[name]) * weight, weight] for name, weight in zip(names, weights)],
                          dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {name: float(total / count) for name, (total, count) in zip(names, values.tolist())}


def reduce_int(value: int, workers: Workers, operation: str) -> int:
    """The 'min' or 'sum' of an integer over all workers (torch; TensorFlow never shards)."""
    if not workers.on_torch:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, op={"min": dist.ReduceOp.MIN, "sum": dist.ReduceOp.SUM}[operation])
    return int(tensor.item())


def validation_part(rows: np.ndarray, workers: Workers) -> np.ndarray:
    """Every world_size-th validation photo: the workers' parts cover the split exactly once.
    TensorFlow workers are all given every photo: the strategy splits each batch itself."""
    return rows[workers.rank::workers.world_size] if workers.on_torch else rows
