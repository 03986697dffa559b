"""cnnlab's training step on the PyTorch backend: micro-batches and DistributedDataParallel.

Keras 3.15's own torch `train_step` runs the whole batch through the model at once and calls the
model itself. This one is the same step (same loss, metrics, loss scaling and optimizer call)
with two additions:

- micro-batches: the batch is run through the model in chunks whose gradients are summed before
  the one optimizer update. Each chunk's loss is weighted by its share of the batch, so the
  update is the batch's update (equal up to float rounding; exact for models without batch
  normalisation, whose statistics are per chunk). The activations kept for the backward pass
  are those of one chunk, not of the whole batch: that is where a CNN's training memory goes.
- `forward`: the module the forward pass goes through. Under `torchrun` it is the model wrapped
  in torch's DistributedDataParallel, whose backward hooks average the gradients across workers
  (every chunk but the last runs inside `no_sync()`, so they are averaged once per batch).
- channels_last memory: a channels-first image batch is laid out NHWC in memory (same values,
  same logical shape) before the forward pass. oneDNN's convolutions run faster on it, every
  layer after keeps the layout, and Keras' channels-first Flatten (a transpose to NHWC, then a
  reshape) becomes a free view. One step of the tutorial's models, interleaved in one process
  against the same step on NCHW (issue 18, benchmarks/README.md): conv1 1.25x, conv2 1.48x,
  conv2-wide 1.32x, conv2-fc512 1.35x faster, the mlp unchanged; resnet9 already does it itself
  (ChannelsLastMemory), so for it this is a no-op.
"""

from __future__ import annotations

import contextlib
import functools
import types

from cnnlab.backend import keras
from cnnlab.models.activations import activation_bytes_per_image
from cnnlab.errors import UserError

# Automatic micro-batches keep each chunk's layer outputs (float32) under this many bytes. On
# conv2-wide (9.3 MB of layer outputs per photo, batch 64) that is 4 chunks of 16 photos: peak
# memory 1.4 GB instead of 3.0 GB and 10% faster (smaller working set), measured with
# benchmarks/training_speed.py (`make bench`; its micro-batch column, benchmarks/README.md).
DEFAULT_MICRO_BATCH_BYTES = 160 * 1024 * 1024


def install(model, micro_batch_size: int | None = None, forward=None) -> None:
    """Make `model.fit` use cnnlab's step. Needs the PyTorch backend; call before `fit`."""
    if micro_batch_size is not None and micro_batch_size < 1:
        raise UserError(f"--micro-batch-size must be >= 1, got {micro_batch_size}")
    if keras.backend.backend() != "torch":
        if forward is not None:
            raise UserError("DistributedDataParallel needs the PyTorch backend (KERAS_BACKEND=torch)")
        return  # other backends keep Keras' own step (their micro-batching is not implemented)
    step = functools.partial(_train_step, micro_batch_size=micro_batch_size, forward=forward)
    # An instance attribute: Keras' make_train_function looks `train_step` up on the model.
    object.__setattr__(model, "train_step", types.MethodType(step, model))
    model.train_function = None


def automatic_micro_batch_size(model, batch_size: int, budget: int = DEFAULT_MICRO_BATCH_BYTES) -> int | None:
    """Equal chunks whose layer outputs fit the budget; None when the whole batch fits, or when
    the model has batch normalisation (its statistics would be those of a chunk, not the batch)."""
    layers = list(model._flatten_layers(include_self=False))
    if any("BatchNormalization" in type(layer).__name__ for layer in layers):
        return None
    needed = activation_bytes_per_image(model) * batch_size
    if needed <= budget:
        return None
    chunks = -(-needed // budget)
    return -(-batch_size // chunks)


def validation_batch_size(model, batch_size: int, budget: int = DEFAULT_MICRO_BATCH_BYTES) -> int:
    """Validation batches of up to 128 photos (fewer steps) whose layer outputs stay within the
    training budget: on conv2-wide, 128-photo validation batches peaked 0.9 GB above its
    micro-batched training steps, and 34-photo ones still 0.3 GB (peak RSS per phase in
    benchmarks/training_speed.py's conv2-wide row)."""
    per_image = activation_bytes_per_image(model)
    largest = budget // per_image if per_image else batch_size
    return max(1, min(max(batch_size, 128), largest))


def _train_step(self, data, micro_batch_size: int | None, forward):
    import torch
    from keras.src import tree
    from keras.src.trainers.data_adapters import data_adapter_utils

    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
    x = tree.map_structure(_channels_last_memory, x)
    size = next(item for item in tree.flatten(x) if item is not None).shape[0]
    chunk = micro_batch_size or size
    starts = list(range(0, size, chunk))
    call = forward if forward is not None else self
    self.zero_grad()
    metrics = None
    for number, start in enumerate(starts):
        part = slice(start, min(start + chunk, size))
        x_part, y_part = _rows(x, part), _rows(y, part)
        weight_part = _rows(sample_weight, part)
        part_size = part.stop - part.start
        last = number == len(starts) - 1
        synchronise = contextlib.nullcontext() if last or forward is None else forward.no_sync()
        with synchronise:
            y_pred = call(x_part, training=True) if self._call_has_training_arg else call(x_part)
            loss = self._compute_loss(x=x_part, y=y_part, y_pred=y_pred, sample_weight=weight_part, training=True)
            self._loss_tracker.update_state(loss, sample_weight=part_size)
            if self.trainable_weights:
                scaled = self.optimizer.scale_loss(loss) if self.optimizer is not None else loss
                (scaled * (part_size / size) if len(starts) > 1 else scaled).backward()
        metrics = self.compute_metrics(x_part, y_part, y_pred.detach(), sample_weight=weight_part)
    if self.trainable_weights:
        trainable_weights = self.trainable_weights[:]
        gradients = [variable.value.grad for variable in trainable_weights]
        with torch.no_grad():
            self.optimizer.apply(gradients, trainable_weights)
    return metrics


def _channels_last_memory(item):
    import torch

    if isinstance(item, torch.Tensor) and item.ndim == 4 and keras.config.image_data_format() == "channels_first":
        return item.contiguous(memory_format=torch.channels_last)
    return item


def _rows(value, part: slice):
    from keras.src import tree

    return None if value is None else tree.map_structure(lambda item: item[part], value)
