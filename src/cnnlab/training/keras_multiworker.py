"""Two repairs that let Keras 3.15's `fit` train under TensorFlow's MultiWorkerMirroredStrategy.

Keras 3 does not support multi-worker strategies in `fit` (keras-team/keras#20585, open): with
the pinned Keras 3.15.1 and TensorFlow 2.21, two workers on 127.0.0.1 fail in two places, both
in Keras' TensorFlow trainer and both about reducing values across workers outside the step:

1. `_maybe_symbolic_build` reduces a distributed *input batch* with `strategy.reduce("MEAN")`
   just to learn its shapes: "Attempt to convert a value (PerReplica ...) to a Tensor". Any one
   replica's part has the shapes it needs, so the model is built from that.
2. `reduce_per_replica` reduces every step output with `axis=0`, which a scalar (the loss and
   every metric) does not have: "Invalid reduction dimension 0 for input with 0 dimensions".
   Scalars are averaged over the replicas instead (axis=None).

With both, two workers train in step and end with the weights of one process fed the same
global batches (tests/test_distributed.py). Both functions are private to the pinned Keras;
`apply` checks that they exist and refuses to run otherwise.
"""

from __future__ import annotations

import types

from cnnlab.errors import UserError


def apply(model=None) -> None:
    """Patch Keras' reduction (once per process) and, given a model, its symbolic build."""
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    if not hasattr(tensorflow_trainer, "reduce_per_replica") or \
            not hasattr(tensorflow_trainer, "_collective_all_reduce_multi_worker"):
        raise UserError("this Keras version's TensorFlow trainer is not the one cnnlab's multi-worker repairs "
                         "were made for (Keras 3.15); use the PyTorch backend for --distributed")
    if not getattr(tensorflow_trainer.reduce_per_replica, "cnnlab_repaired", False):
        original = tensorflow_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            def one(value):
                if tensorflow_trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
                    local = strategy.experimental_local_results(value)[0] \
                        if isinstance(value, tf.distribute.DistributedValues) else value
                    if local.shape.rank == 0:
                        return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)

            return tree.map_structure(one, values)

        reduce_per_replica.cnnlab_repaired = True
        tensorflow_trainer.reduce_per_replica = reduce_per_replica
    if model is not None:
        model._maybe_symbolic_build = types.MethodType(_build_from_one_replica, model)


def _build_from_one_replica(self, iterator=None, data_batch=None):
    import tensorflow as tf
    from keras.src import tree

    strategy = self.distribute_strategy
    if iterator is not None:
        for _, _, batches in iterator:
            data_batch = next(batches)
            break
    data_batch = tree.map_structure(
        lambda value: strategy.experimental_local_results(value)[0]
        if isinstance(value, tf.distribute.DistributedValues) else value, data_batch)
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)
