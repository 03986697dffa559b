"""The architecture registry: every model cnnlab can train, by name, with its training recipe.

Modelled on timm's registry: a model is registered once as a `ModelSpec` (a builder plus the
`Recipe` it was published with) and is then listed, described and built by name. The CLI's
`cnnlab models` and the training code read only this module, so adding an architecture means
writing one builder and one `register(...)` call.

Shapes follow Keras' global image data format, which `cnnlab.runtime.configure_keras()` sets
to channels_first: an input shape is (channels, height, width), (3, 125, 94) for the tutorial.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cnnlab.runtime import configure_keras

# Keras picks its backend once, at first import; if nobody has imported it yet, make it ours
# (PyTorch, channels_first). If the caller already imported and configured Keras, respect that.
if "keras" not in sys.modules:
    configure_keras()

import keras  # noqa: E402  (must follow configure_keras)

from cnnlab.models.losses import LogitAwareBinaryCrossentropy, LogitAwareCategoricalCrossentropy  # noqa: E402
from cnnlab.training.augment import Augment  # noqa: E402
from cnnlab.training.schedule import WarmupDecay  # noqa: E402

LOSSES = ("mse", "bce", "categorical_crossentropy")
OPTIMIZERS = ("adam", "adamw", "sgd")
PIXEL_SCALES = ("raw", "unit")
FAMILIES = ("tutorial", "modern", "baseline")
SCHEDULES = ("constant", "cosine", "linear")

# The tutorial's input: PIL resize((94, 125)) gives 94 wide x 125 tall RGB images.
TUTORIAL_INPUT_SHAPE = (3, 125, 94)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is trained and what it is fed. Every field has a meaning the trainer honours.

    pixel_scale: 'raw' feeds 0-255 pixels as the tutorial does; 'unit' divides by 255. The data
    pipeline applies it (the models themselves contain no rescaling layer).
    fit: how a photo is brought to input_width x input_height; 'stretch' is PIL's plain resize,
    as in the tutorial (the aspect ratio is not kept).

    The fields after label_smoothing came after the tutorial; their defaults switch them off,
    so a tutorial recipe builds exactly the optimizer and loss it always did:
    augment: None, or per-batch training augmentation (a cnnlab.training.augment.Augment or a
    dict of its fields; never applied to validation or test).
    schedule: 'constant' keeps learning_rate throughout; 'cosine' / 'linear' decay it to 0 by
    the last step. warmup_epochs: a linear ramp up to learning_rate over this many epochs
    first (fractions allowed). Both need the steps per epoch (make_optimizer).
    ema: momentum of an exponential moving average of the weights (Keras' use_ema), 0 = off;
    with it on, validation, checkpoints and best.weights.h5 use the averaged weights.
    tta_flip: evaluation averages the predictions for each image and its mirror image.
    """

    loss: str
    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int
    pixel_scale: str = "raw"
    input_width: int = 94
    input_height: int = 125
    fit: str = "stretch"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: Augment | None = None
    warmup_epochs: float = 0.0
    schedule: str = "constant"
    ema: float = 0.0
    tta_flip: bool = False

    def __post_init__(self) -> None:
        # A dict (as written in a recipe or read back from config.json) becomes an Augment.
        object.__setattr__(self, "augment", Augment.from_value(self.augment))
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.pixel_scale not in PIXEL_SCALES:
            raise ValueError(f"unknown pixel_scale {self.pixel_scale!r}; choose one of {', '.join(PIXEL_SCALES)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        for field in ("batch_size", "epochs", "input_width", "input_height"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        # No upper bound: an --epochs override shorter than the warm-up just ends below the peak.
        if not self.warmup_epochs >= 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (0 = off), got {self.ema}")
        if not isinstance(self.tta_flip, bool):
            raise ValueError(f"tta_flip must be True or False, got {self.tta_flip!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def input_shape(self, channels: int = 3) -> tuple[int, int, int]:
        """The model input shape this recipe implies, in Keras' current image data format."""
        if keras.config.image_data_format() == "channels_first":
            return (channels, self.input_height, self.input_width)
        return (self.input_height, self.input_width, channels)

    def make_loss(self, num_classes: int = 2) -> keras.losses.Loss:
        """The Keras loss. Labels are 0/1 for two classes (one sigmoid unit), one-hot for more.

        Cross-entropies read the logits behind a sigmoid/softmax output on every backend (see
        cnnlab.models.losses): PyTorch-Keras otherwise stops learning once the sigmoid saturates.
        """
        if self.loss == "mse":
            return keras.losses.MeanSquaredError()
        if num_classes == 2:
            if self.loss == "categorical_crossentropy":
                raise ValueError(
                    "two classes use one sigmoid unit: use loss 'bce' (or 'mse'), not categorical_crossentropy"
                )
            return LogitAwareBinaryCrossentropy(label_smoothing=self.label_smoothing)
        # 'bce' on N > 2 classes means the softmax generalisation of the same objective.
        return LogitAwareCategoricalCrossentropy(label_smoothing=self.label_smoothing)

    def make_learning_rate(self, steps_per_epoch: int | None = None) -> float | WarmupDecay:
        """learning_rate itself, or a warm-up/decay schedule over epochs x steps_per_epoch steps.

        Without steps_per_epoch a schedule cannot be placed, and the plain learning_rate is
        returned (e.g. for a single train_on_batch); the trainer always passes it.
        """
        if (self.schedule == "constant" and not self.warmup_epochs) or steps_per_epoch is None:
            return self.learning_rate
        if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        steps_per_epoch = int(steps_per_epoch)
        return WarmupDecay(self.learning_rate, warmup_steps=round(self.warmup_epochs * steps_per_epoch),
                           total_steps=self.epochs * steps_per_epoch, decay=self.schedule)

    def make_optimizer(self, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
        learning_rate = self.make_learning_rate(steps_per_epoch)
        # Only when asked for, so that the tutorial's optimizers keep their exact configuration.
        averaging = {"use_ema": True, "ema_momentum": self.ema} if self.ema else {}
        # Keras applies weight_decay decoupled (as AdamW) in every optimizer; None means off.
        decay = self.weight_decay or None
        if self.optimizer == "adam":
            return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=decay, **averaging)
        if self.optimizer == "adamw":
            return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=self.weight_decay, **averaging)
        # Momentum 0.9 is the universal SGD default in the CNN literature.
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, weight_decay=decay, **averaging)


ModelBuilder = Callable[[tuple[int, ...], int], keras.Model]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered architecture. `tutorial` holds the figures the tutorial published for it."""

    name: str
    description: str
    build: ModelBuilder
    recipe: Recipe
    tutorial: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    family: str = "tutorial"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a model name must be a non-empty string, got {self.name!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r} for {self.name}; choose one of {', '.join(FAMILIES)}")
        if not callable(self.build):
            raise ValueError(f"build for {self.name} must be callable(input_shape, num_classes)")


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry; returns the spec. Names are unique."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> ModelSpec:
    """Remove a model (for plugins and tests); returns its spec."""
    spec = get_model_spec(name)
    del _REGISTRY[name]
    return spec


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY) or "(none registered)"
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def model_names(family: str | None = None) -> list[str]:
    """Registered names in registration order (the tutorial's order), optionally by family."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    return [name for name, spec in _REGISTRY.items() if family is None or spec.family == family]


def classification_head(num_classes: int, name: str = "output") -> keras.layers.Dense:
    """The output layer: one sigmoid unit for two classes (as the tutorial), else softmax."""
    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name=name)
    return keras.layers.Dense(num_classes, activation="softmax", name=name)


def build_model(
    name: str, input_shape: Sequence[int] | None = None, num_classes: int = 2
) -> keras.Model:
    """Build a fresh, uncompiled model.

    input_shape is in Keras' image data format: (3, 125, 94) under cnnlab's channels_first,
    which is the default; None means the model's recipe size in the current format.
    Two classes give an (n, 1) sigmoid output (P(class 1)); N > 2 give (n, N) softmax rows.
    """
    spec = get_model_spec(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    shape = spec.recipe.input_shape() if input_shape is None else tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(size, int) and size > 0 for size in shape):
        raise ValueError(f"input_shape must be three positive integers (channels, height, width), got {input_shape!r}")
    return spec.build(shape, num_classes)


def count_parameters(model: keras.Model, trainable_only: bool = False) -> int:
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(weight.shape) for weight in weights))


# ---- FLOPs -------------------------------------------------------------------------------
# forward_flops counts 2 FLOPs per multiply-add in the layers that do matrix products (Conv*,
# Dense, depthwise/separable/transposed convolutions): the convention of timm, fvcore and the
# papers (FLOPs = 2 x MACs). Bias adds, activations, pooling comparisons and normalisation are
# element-wise, together < 1% for these models, and are not counted. A layer with a kernel
# that no counter knows raises rather than being silently counted as free; add a counter.


def _elements(shape: Sequence[int | None]) -> int:
    return math.prod(int(size) for size in shape[1:])  # drop the batch axis


def _dense_macs(layer: keras.layers.Layer) -> int:
    return _elements(layer.output.shape) * int(layer.kernel.shape[0])


def _conv_macs(layer: keras.layers.Layer) -> int:
    # kernel is (*spatial, in_channels / groups, filters) in every data format.
    return _elements(layer.output.shape) * math.prod(layer.kernel.shape[:-1])


def _conv_transpose_macs(layer: keras.layers.Layer) -> int:
    # kernel is (*spatial, filters, in_channels): every input element meets every kernel tap.
    return _elements(layer.input.shape) * math.prod(layer.kernel.shape[:-1])


def _depthwise_macs(layer: keras.layers.Layer) -> int:
    # kernel is (*spatial, in_channels, multiplier); each output element uses one spatial window.
    return _elements(layer.output.shape) * math.prod(layer.kernel.shape[:-2])


def _separable_macs(layer: keras.layers.Layer) -> int:
    depthwise = layer.depthwise_kernel.shape
    intermediate_channels = depthwise[-2] * depthwise[-1]
    positions = _elements(layer.output.shape) // layer.filters
    return positions * intermediate_channels * (math.prod(depthwise[:-2]) + layer.filters)


FLOP_COUNTERS: dict[type, Callable[[keras.layers.Layer], int]] = {
    keras.layers.Dense: _dense_macs,
    keras.layers.Conv1D: _conv_macs,
    keras.layers.Conv2D: _conv_macs,
    keras.layers.Conv3D: _conv_macs,
    keras.layers.Conv2DTranspose: _conv_transpose_macs,
    keras.layers.DepthwiseConv2D: _depthwise_macs,
    keras.layers.SeparableConv2D: _separable_macs,
}


def layer_flops(model: keras.Model) -> list[tuple[str, int]]:
    """(layer name, forward FLOPs per image) for every counted layer, nested models included."""
    counted: list[tuple[str, int]] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            counted.extend((f"{layer.name}/{name}", flops) for name, flops in layer_flops(layer))
            continue
        counter = next((count for kind, count in FLOP_COUNTERS.items() if isinstance(layer, kind)), None)
        if counter is not None:
            counted.append((layer.name, 2 * counter(layer)))
        elif getattr(layer, "kernel", None) is not None:
            raise ValueError(
                f"forward_flops cannot count layer {layer.name!r} ({type(layer).__name__}); "
                "add a counter for it to cnnlab.models.registry.FLOP_COUNTERS"
            )
    return counted


def forward_flops(model: keras.Model) -> int:
    """Analytic forward-pass FLOPs for one image: 2 x multiply-adds of Conv and Dense layers."""
    return sum(flops for _, flops in layer_flops(model))


def describe_models(family: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready record per registered model (builds each at its recipe's input size)."""
    records = []
    for name in model_names(family):
        spec = get_model_spec(name)
        model = build_model(name)
        records.append(
            {
                "name": name,
                "description": spec.description,
                "family": spec.family,
                "parameters": count_parameters(model),
                "forward_flops": forward_flops(model),
                "input_shape": list(spec.recipe.input_shape()),
                "recipe": spec.recipe.to_dict(),
                "tutorial": dict(spec.tutorial),
            }
        )
        del model
    return records
