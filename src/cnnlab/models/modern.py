"""Modern small CNNs (issue 4): batch norm, residual blocks, global average pooling, a few MB.

The layout is David Page's ResNet-9 ("How to train your ResNet", 2018; 94% on CIFAR-10 in
minutes, the ancestor of hlb-CIFAR10 and airbench): a stem convolution, three stages that
each halve the resolution and widen, with a two-convolution residual block in the first and
last stage, then global pooling and one output unit. Two changes for CPUs:
- Widths are narrowed (Page: 64/128/256/512, 6.5 M parameters) to stay under the 5 MB model
  file target and the CPU's FLOP budget; they are arguments, so wider or narrower variants are
  one register() call away.
- Each stage pools *before* its convolution (Page convolves, then pools), which makes every
  convolution run at a quarter of the positions. A deliberate trade of some accuracy for 4x
  less compute per stage; to be revisited by measurement.
Global average pooling (not Page's global max) and no dense hidden layer: the output layer has
width + 1 weights, where the tutorial's best model spends 42 M on its first dense layer.

Not taken from airbench (yet): the frozen whitening first layer, dirac initialisation and
lookahead; worth measuring, but each adds machinery for gains measured on CIFAR-10 at 32x32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cnnlab.models.registry import ModelSpec, Recipe, classification_head, register
from cnnlab.recipe.augment import Augment

if TYPE_CHECKING:
    import keras

# Keras (and the layers defined on it) is imported by the builders, never by registering.


def _channel_axis() -> int:
    from cnnlab.backend import keras

    return 1 if keras.config.image_data_format() == "channels_first" else -1


def _conv_bn_relu(x, filters: int, name: str):
    from cnnlab.backend import keras
    from cnnlab.models.layers import FastBatchNormalization

    # No bias: the batch norm that follows adds its own shift (beta).
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                            name=f"{name}_conv")(x)
    # Momentum 0.9 (Keras' default is 0.99): a CPU run is ~1,000 steps, and the running
    # statistics used at evaluation must catch up with the weights within an epoch or two.
    x = FastBatchNormalization(axis=_channel_axis(), momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def build_resnet9(name: str, input_shape: Sequence[int], num_classes: int, stem_width: int,
                  widths: Sequence[int], residual_stages: Sequence[int] = (1, 3), pool_first: bool = True) -> keras.Model:
    """Stem conv(stem_width); per stage i (1-based) of widths: max-pool 2x2, conv(width) and,
    for i in residual_stages, x + conv(conv(x)); global average pooling; classification head.
    Every convolution is 3x3 'same' without bias, then batch norm and ReLU. Any input size of
    at least 1x1 works: pooling uses 'same' padding and the head follows a global pool.
    pool_first=False is Page's order (conv(width), then pool): 4x the stage's compute."""
    from cnnlab.backend import keras
    from cnnlab.models.layers import ChannelsLastMemory

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _conv_bn_relu(ChannelsLastMemory(name="channels_last_memory")(inputs), stem_width, "stem")
    for stage, width in enumerate(widths, start=1):
        if pool_first:
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"stage{stage}_pool")(x)
            x = _conv_bn_relu(x, width, f"stage{stage}")
        else:
            x = _conv_bn_relu(x, width, f"stage{stage}")
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"stage{stage}_pool")(x)
        if stage in residual_stages:
            branch = _conv_bn_relu(x, width, f"stage{stage}_res1")
            branch = _conv_bn_relu(branch, width, f"stage{stage}_res2")
            x = keras.layers.Add(name=f"stage{stage}_add")([x, branch])
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return keras.Model(inputs, classification_head(num_classes)(x), name=name)


def _builder(name: str, stem_width: int, widths: tuple[int, ...]):
    def build(input_shape: Sequence[int], num_classes: int) -> keras.Model:
        return build_resnet9(name, input_shape, num_classes, stem_width, widths)

    build.__name__ = f"build_{name.replace('-', '_')}"
    return build


# Light augmentation for photos: airbench's alternating flip, shifts of up to 1/16 of the side
# (airbench: 2 px at 32 px), and colour jitter of +-10%, all cheap per batch on a CPU.
MODERN_AUGMENT = Augment(flip="alternating", translate=4, padding="reflect",
                         brightness=0.1, contrast=0.1, saturation=0.1)


def modern_recipe(epochs: int, learning_rate: float = 2e-3) -> Recipe:
    """The modern recipe. Starting values from the literature, not yet tuned here: the input
    size (64x64, centre crop keeping the aspect ratio), epochs, learning rate, weight decay and
    EMA are to be chosen by measurement on the validation split (issue 4)."""
    return Recipe(
        loss="bce", optimizer="adamw", learning_rate=learning_rate, batch_size=64, epochs=epochs,
        pixel_scale="unit", input_width=64, input_height=64, fit="crop",
        # Keras' AdamW decays by lr x weight_decay per step (decoupled, as PyTorch's AdamW).
        weight_decay=0.05, label_smoothing=0.1, augment=MODERN_AUGMENT,
        warmup_epochs=1.0, schedule="cosine",
        # EMA off until measured: with a cosine decay to 0 it often adds little, and Keras
        # averages only the trainable weights (batch-norm statistics stay the live ones).
        ema=0.0, tta_flip=True, precision="auto",
    )


# parameters / forward_flops: the model built at its recipe's size with two classes, so that
# `cnnlab models` builds nothing; tests/test_models.py checks them against the build.
register(ModelSpec(
    name="resnet9",
    description="Modern CNN: ResNet-9 layout (stem 24, stages 48/96/192, residual blocks in stages 1 and 3), "
    "batch norm, global average pooling; AdamW, warm-up + cosine, augmentation, label smoothing, flip TTA.",
    build=_builder("resnet9", 24, (48, 96, 192)),
    recipe=modern_recipe(epochs=32, learning_rate=4e-3),
    family="modern",
    parameters=926_953, forward_flops=238_879_104,
))
register(ModelSpec(
    name="resnet9-tiny",
    description="Quick modern CNN: resnet9 at two-thirds width (stem 16, stages 32/64/128); same recipe, "
    "fewer epochs.",
    build=_builder("resnet9-tiny", 16, (32, 64, 128)),
    recipe=modern_recipe(epochs=10),
    family="modern",
    parameters=412_913, forward_flops=107_348_224,
))
