"""training_speed.py's raw-PyTorch path: a registered model's torch.nn twin (torch_twins.py)
trained by a plain PyTorch loop, with the cnnlab row's photos, batches and optimizer settings.

What is the same as cnnlab's row: the cache's photos (the same seeded subset of training and
validation rows), each epoch's order (np.random.default_rng([seed, epoch]).permutation, as
CacheBatches), the recipe's augmentation applied to each uint8 batch with CacheBatches' seeds,
pixels scaled by cnnlab.recipe.pixels.to_model_input, the batch size and the micro-batch size
the cnnlab row chose, the loss (cross-entropy from the logits with the recipe's label
smoothing, or MSE on the sigmoid), the optimizer (Keras' Adam/AdamW constants: betas 0.9 and
0.999, epsilon 1e-7, decoupled weight decay), the warm-up and decay of the learning rate, the
precision (Keras' mixed_bfloat16 as torch.autocast to bfloat16), and a pass over the
validation photos after every epoch, and denormal floats flushed to zero (as cnnlab's Keras
set-up on PyTorch, cnnlab.backend). What is not: the photos are held in RAM as one uint8 array
(the tutorial's way, not the memory-mapped cache), and there are no checkpoints, metrics
objects, callbacks or Keras layers.

Variants (`--raw-variants`) change one thing each, to find what could close a gap:
optimizer implementation (torch's default per-parameter loop on CPU, `foreach`, `fused`),
channels_last memory, and batch assembly overlapped with compute in a background thread.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass

VALIDATION_IMAGES = 64
KERAS_ADAM_EPSILON = 1e-7  # keras.optimizers.Adam / AdamW (torch's default is 1e-8)


@dataclass(frozen=True)
class Variant:
    optimizer: str = "for-loop"  # torch's default for CPU tensors; "foreach" and "fused" also run there
    channels_last: bool | None = None  # None: as cnnlab's train step does (every image batch NHWC in memory)
    prefetch: bool = False  # assemble the next batch in a thread while this one trains

    @classmethod
    def parse(cls, text: str) -> Variant:
        """'foreach', 'fused', 'channels-last', 'nchw', 'prefetch', or several joined by '+'."""
        fields: dict = {}
        for part in filter(None, text.split("+")):
            if part in ("for-loop", "foreach", "fused"):
                fields["optimizer"] = part
            elif part in ("channels-last", "nchw"):
                fields["channels_last"] = part == "channels-last"
            elif part == "prefetch":
                fields["prefetch"] = True
            elif part != "default":
                raise ValueError(f"unknown raw variant part {part!r}")
        return cls(**fields)


def _optimizer(recipe, parameters, variant: Variant):
    import torch

    implementation = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(variant.optimizer, {"foreach": False})
    if recipe.optimizer == "adamw" or recipe.weight_decay:
        return torch.optim.AdamW(parameters, lr=recipe.learning_rate, eps=KERAS_ADAM_EPSILON,
                                 weight_decay=recipe.weight_decay, **implementation)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=recipe.learning_rate, eps=KERAS_ADAM_EPSILON, **implementation)
    return torch.optim.SGD(parameters, lr=recipe.learning_rate, momentum=0.9, **implementation)


def learning_rate(recipe, step: int, steps_per_epoch: int, epochs: int) -> float:
    """cnnlab.recipe.schedule.WarmupDecay's formula (floor 0), without Keras."""
    peak = recipe.learning_rate
    if recipe.schedule == "constant" and not recipe.warmup_epochs:
        return peak
    warmup = round(recipe.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    done = min(max((step - warmup) / max(epochs * steps_per_epoch - warmup, 1), 0.0), 1.0)
    if recipe.schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * done))
    return peak * (1 - done) if recipe.schedule == "linear" else peak


def _loss(recipe, logits, labels):
    import torch.nn.functional as functional

    if recipe.loss == "mse":
        return functional.mse_loss(logits.float().sigmoid(), labels)
    smoothed = labels * (1 - recipe.label_smoothing) + 0.5 * recipe.label_smoothing  # Keras' rule
    return functional.binary_cross_entropy_with_logits(logits.float(), smoothed)


def train_raw(model: str, cache: str, images: int, epochs: int, micro_batch: int | None, precision: str,
              variant: Variant, seed: int = 0) -> dict:
    import contextlib

    import numpy as np
    import torch

    from cnnlab.data.reader import open_cache
    from cnnlab.data.subset import subset
    from cnnlab.models import get_model_spec
    from cnnlab.recipe.pixels import to_model_input
    from torch_twins import build_twin

    torch.set_flush_denormal(True)  # as cnnlab.backend does for Keras on PyTorch
    torch.manual_seed(seed)
    recipe = get_model_spec(model).recipe
    data = open_cache(cache)
    train_rows = subset(data.indices("train"), data.labels, images, seed)
    val_rows = subset(data.indices("val"), data.labels, VALIDATION_IMAGES, seed)
    held, held_labels = np.array(data.images[train_rows]), data.labels[train_rows].astype(np.float32)
    x_val = torch.from_numpy(to_model_input(np.array(data.images[val_rows]), recipe.pixel_scale, "channels_first"))
    y_val = torch.from_numpy(data.labels[val_rows].astype(np.float32)).reshape(-1, 1)
    # cnnlab's train step lays out every channels-first image batch NHWC in memory
    # (training/train_step.py); the raw row does the same unless a variant says otherwise.
    channels_last = variant.channels_last if variant.channels_last is not None else True
    memory = torch.channels_last if channels_last else torch.contiguous_format
    network = build_twin(model, (3, recipe.input_height, recipe.input_width)).to(memory_format=memory)
    optimizer = _optimizer(recipe, network.parameters(), variant)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "mixed_bfloat16" else contextlib.nullcontext
    batch_size = recipe.batch_size
    steps = -(-len(train_rows) // batch_size)

    def batch(epoch: int, order: np.ndarray, index: int):
        positions = order[index * batch_size:(index + 1) * batch_size]
        pixels = held[positions]
        if recipe.augment is not None:  # CacheBatches' seeds and rows: the same augmented pixels
            pixels = recipe.augment(pixels, np.random.default_rng([seed, epoch, index]),
                                    rows=train_rows[positions], epoch=epoch, seed=seed)
        inputs = torch.from_numpy(to_model_input(pixels, recipe.pixel_scale, "channels_first"))
        return inputs.contiguous(memory_format=memory), torch.from_numpy(held_labels[positions]).reshape(-1, 1)

    def batches(epoch: int):
        order = np.random.default_rng([seed, epoch]).permutation(len(train_rows))
        if not variant.prefetch:
            yield from (batch(epoch, order, index) for index in range(steps))
            return
        # NumPy's copies and casts release the GIL, so the next batch is assembled while torch trains.
        ready: list = [None]

        def assemble(index):
            ready[0] = batch(epoch, order, index)

        worker = threading.Thread(target=assemble, args=(0,))
        worker.start()
        for index in range(steps):
            worker.join()
            current = ready[0]
            if index + 1 < steps:
                worker = threading.Thread(target=assemble, args=(index + 1,))
                worker.start()
            yield current

    seconds, step = [], 0
    for epoch in range(epochs):
        started = time.perf_counter()
        network.train()
        for inputs, labels in batches(epoch):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step, steps, epochs)
            optimizer.zero_grad(set_to_none=True)
            chunk = micro_batch or len(inputs)
            for start in range(0, len(inputs), chunk):
                with autocast():
                    logits = network(inputs[start:start + chunk])
                loss = _loss(recipe, logits, labels[start:start + chunk])
                (loss * (len(logits) / len(inputs))).backward()
            optimizer.step()
            step += 1
        network.eval()
        with torch.no_grad(), autocast():
            _loss(recipe, network(x_val.contiguous(memory_format=memory)), y_val).item()
        seconds.append(time.perf_counter() - started)
    return {"epoch_seconds": [round(s, 2) for s in seconds], "images": images, "precision": precision,
            "micro_batch_size": micro_batch, "variant": asdict(variant), "channels_last": channels_last,
            "torch_threads": torch.get_num_threads(), "data_in_ram_mb": round(held.nbytes / 1e6, 1)}
