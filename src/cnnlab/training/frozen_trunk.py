"""Train the layers above a frozen trunk on the trunk's outputs, computed once per photo.

When a model fine-tunes only its upper layers, and its lower layers are frozen in inference mode
(no dropout, batch norms with their stored statistics) and the recipe has no augmentation, every
epoch feeds each photo through the same fixed function up to the first trained layer. Running
that trunk once per photo and training the layers above on its stored outputs computes the very
same forward pass, loss and gradients as the usual loop, at the cost of the upper layers alone:
efficientnet-lite0-transfer at 224 x 224 spends about 30 ms a photo in its trunk (blocks 0-10)
and about 10 ms in a training step of blocks 11-15 and the head, so the trunk's share of every epoch
after the first is saved.

Recipe.cache_frozen_layers turns it on. The trainer fits `top` (the layers above the cut, which
share their variables with the whole model), so the run folder checkpoints the whole model's
weights exactly as if it had been trained end to end; evaluation and everything downstream run
the whole model on photos. The outputs live in a temporary memory-mapped file (about 88 kB a
photo for Lite0's block 11 input at 224), deleted when training ends; a resumed run computes
them again.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np

from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.training.batches import CacheBatches, encode_labels
from cnnlab.training.frozen_head import forward_in_pieces
from cnnlab.training.train_step import validation_batch_size

# Layers whose training-mode output is random: in a frozen trunk they would make the cached
# outputs differ from what the usual loop computes (Keras' Dropout drops while training even
# when its layer is not trainable).
_RANDOM_LAYERS = ("Dropout", "SpatialDropout", "GaussianNoise", "GaussianDropout", "AlphaDropout")


def split_at_trunk(model) -> tuple:
    """(trunk, top): the model up to the input of its first trained layer, and the rest. UserError
    when the model cannot be cut there (nothing frozen below it, or a later layer reads a tensor
    from below the cut)."""
    layers = model.layers
    first = next((index for index, layer in enumerate(layers) if layer.trainable_weights), None)
    if first is None:
        raise UserError(f"{model.name} trains no layer: there is nothing to fine-tune above a frozen trunk")
    trained = layers[first]
    if first == 0 or not any(layer.weights for layer in layers[:first]):
        raise UserError(f"{model.name} has no frozen layers below {trained.name}: cache_frozen_layers needs a "
                        "frozen trunk (use a model that freezes its backbone, or turn the option off)")
    for layer in layers[:first]:
        if type(layer).__name__ in _RANDOM_LAYERS and getattr(layer, "rate", 0):
            raise UserError(f"{model.name}'s frozen layer {layer.name} is random while training, so its outputs "
                            "cannot be computed once; turn cache_frozen_layers off")
    cut = trained.input
    if isinstance(cut, (list, tuple)):
        raise UserError(f"{model.name}'s first trained layer {trained.name} has several inputs; it cannot be the cut")
    try:
        top = keras.Model(cut, model.output, name=f"{model.name}_top")
    except ValueError as error:  # Keras' "graph disconnected": a later layer reads from below the cut
        raise UserError(f"{model.name} cannot be cut below {trained.name} ({error}); turn cache_frozen_layers off") \
            from error
    trunk = keras.Model(model.input, cut, name=f"{model.name}_trunk")
    # The optimizer and its checkpoint index the whole model's trained variables: they must be
    # exactly the top's, in the same order (a bug otherwise, not a user error).
    if [id(weight) for weight in top.trainable_weights] != [id(weight) for weight in model.trainable_weights]:
        raise RuntimeError(f"the layers above {trained.name} do not hold all of {model.name}'s trained weights")
    return trunk, top


def _trunk_outputs(trunk, batches: CacheBatches, folder: Path, name: str, stream, live) -> tuple[np.ndarray, np.ndarray]:
    """The trunk's output for each of `batches.rows` (position i holds row i's, whatever the
    epoch's order), into a memory-mapped file, and the rows' class numbers."""
    shape = tuple(int(size) for size in trunk.output.shape[1:])
    outputs = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.float32,
                                        shape=(len(batches.rows), *shape))
    labels = np.asarray(batches.labels)[batches.rows]
    in_order = CacheBatches(batches.images, batches.labels, batches.rows, batches.num_classes, batches.batch_size,
                            batches.pixel_scale, shuffle=False)
    done = 0
    for part, _ in forward_in_pieces(trunk, in_order, f"frozen layers ({name})", stream, live):
        outputs[done:done + len(part)] = part
        done += len(part)
    outputs.flush()
    return outputs, labels


class OutputBatches(CacheBatches):
    """Batches of stored trunk outputs (position i: the photo batches' rows[i]), shuffled exactly as
    CacheBatches shuffles those rows: the same seed and epoch give the same batches as the photo
    loop, and a resumed run sees the batches an uninterrupted one would."""

    def __init__(self, outputs: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, shuffle: bool,
                 seed: int = 0, epoch: int = 0):
        super().__init__(outputs, labels, np.arange(len(labels)), num_classes, batch_size, "unit", shuffle,
                         seed=seed, epoch=epoch)

    def __getitem__(self, index: int):
        rows = self.batch_rows(index)
        return np.asarray(self.images[rows]), encode_labels(self.labels[rows], self.num_classes)


@contextlib.contextmanager
def trunk_outputs(model, train_batches: CacheBatches, val_batches: CacheBatches, num_classes: int, stream=None,
                  live: bool | None = None):
    """Yields (top, train, val, cut): the model above its frozen trunk, batches of the trunk's
    outputs for the training and validation photos (ordered and sized as the photo batches), and
    the whole model's tensor at the cut (a model from it to any later layer reads those outputs;
    top.input is Keras' own copy of it)."""
    if train_batches.augment is not None:
        raise UserError("cache_frozen_layers needs a recipe without augmentation: an augmented photo changes "
                        "the frozen layers' output every epoch")
    trunk, top = split_at_trunk(model)
    with tempfile.TemporaryDirectory(prefix="cnnlab-trunk-") as folder:
        train_outputs, train_labels = _trunk_outputs(trunk, train_batches, Path(folder), "training", stream, live)
        val_outputs, val_labels = _trunk_outputs(trunk, val_batches, Path(folder), "validation", stream, live)
        train = OutputBatches(train_outputs, train_labels, num_classes, train_batches.batch_size, shuffle=True,
                              seed=train_batches.seed, epoch=train_batches.epoch)
        val = OutputBatches(val_outputs, val_labels, num_classes, validation_batch_size(top, train_batches.batch_size),
                            shuffle=False)
        try:
            yield top, train, val, trunk.output
        finally:
            del train_outputs, val_outputs, train, val  # release the memory maps before the folder goes
