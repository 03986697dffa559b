"""A model's training recipe: what it is fed and how it is trained (see Recipe)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from cnnlab.backend import image_data_format
from cnnlab.errors import UserError
from cnnlab.recipe.augment import Augment

if TYPE_CHECKING:
    import keras

    from cnnlab.recipe.schedule import WarmupDecay

# Keras is imported by the methods that make Keras objects (loss, schedule, optimizer), not here:
# a Recipe is read by `cnnlab models` and by run folders without it.

LOSSES = ("mse", "bce", "categorical_crossentropy")
OPTIMIZERS = ("adam", "adamw", "sgd")
PIXEL_SCALES = ("raw", "unit")
FAMILIES = ("tutorial", "modern", "baseline")
SCHEDULES = ("constant", "cosine", "linear")
PRECISIONS = ("float32", "mixed_bfloat16", "auto")
HEAD_FITS = ("gradient", "logistic")  # how the classifier is fitted (Recipe.head_fit)

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
    augment: None, or per-batch training augmentation (a cnnlab.recipe.augment.Augment or a
    dict of its fields; never applied to validation or test).
    schedule: 'constant' keeps learning_rate throughout; 'cosine' / 'linear' decay it to 0 by
    the last step. warmup_epochs: a linear ramp up to learning_rate over this many epochs
    first (fractions allowed). Both need the steps per epoch (make_optimizer).
    ema: momentum of an exponential moving average of the weights (Keras' use_ema), 0 = off;
    with it on, validation, checkpoints and best.weights.h5 use the averaged weights.
    tta_flip: evaluation averages the predictions for each image and its mirror image.
    precision: Keras' dtype policy for the model: 'float32'; 'mixed_bfloat16' (bfloat16
    arithmetic, float32 weights and output layer); 'auto' = mixed_bfloat16 where the hardware
    runs bfloat16 fast (an NVIDIA GPU, or a CPU with AMX: 3.6x float32 matrix products here),
    else float32. The run folder records the precision used, and evaluation rebuilds with it.
    head_fit: 'gradient' trains with the optimizer, epoch by epoch (every model); 'logistic'
    fits the output layer first by scikit-learn's logistic regression on the features below it,
    computed once (cnnlab.training.frozen_head). A model whose only trainable layer is its output
    (a frozen backbone) is then done in one step (the optimizer, learning rate and epochs are
    unused); a model that trains more layers then trains them all with the optimizer for its
    epochs, from that head ("linear probing, then fine-tuning": the fresh head's first large
    gradients no longer disturb the pretrained features).
    cache_frozen_layers: the frozen layers below the first trained one run once per photo and the
    epochs train the layers above on their stored outputs (cnnlab.training.frozen_trunk): the same
    gradients for the cost of the upper layers. Needs augment None (an augmented photo changes
    those outputs every epoch).
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
    precision: str = "float32"
    head_fit: str = "gradient"
    cache_frozen_layers: bool = False

    def __post_init__(self) -> None:
        # A dict (as written in a recipe or read back from config.json) becomes an Augment.
        object.__setattr__(self, "augment", Augment.from_value(self.augment))
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.pixel_scale not in PIXEL_SCALES:
            raise UserError(f"unknown pixel_scale {self.pixel_scale!r}; choose one of {', '.join(PIXEL_SCALES)}")
        if not self.learning_rate > 0:
            raise UserError(f"learning_rate must be positive, got {self.learning_rate}")
        for field in ("batch_size", "epochs", "input_width", "input_height"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{field} must be a positive integer, got {value!r}")
        if self.weight_decay < 0:
            raise UserError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        # No upper bound: an --epochs override shorter than the warm-up just ends below the peak.
        if not self.warmup_epochs >= 0:
            raise UserError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= self.ema < 1:
            raise UserError(f"ema must be in [0, 1) (0 = off), got {self.ema}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.head_fit not in HEAD_FITS:
            raise UserError(f"unknown head_fit {self.head_fit!r}; choose one of {', '.join(HEAD_FITS)}")
        if not isinstance(self.tta_flip, bool):
            raise UserError(f"tta_flip must be True or False, got {self.tta_flip!r}")
        if not isinstance(self.cache_frozen_layers, bool):
            raise UserError(f"cache_frozen_layers must be True or False, got {self.cache_frozen_layers!r}")
        if self.cache_frozen_layers and self.augment is not None:
            raise UserError("cache_frozen_layers needs augment None: an augmented photo changes the frozen layers' "
                            "output every epoch")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def input_shape(self, channels: int = 3) -> tuple[int, int, int]:
        """The model input shape this recipe implies, in Keras' current image data format."""
        if image_data_format() == "channels_first":
            return (channels, self.input_height, self.input_width)
        return (self.input_height, self.input_width, channels)

    def make_loss(self, num_classes: int = 2) -> keras.losses.Loss:
        """The Keras loss. Labels are 0/1 for two classes (one sigmoid unit), one-hot for more.

        Cross-entropies read the logits behind a sigmoid/softmax output on every backend (see
        cnnlab.recipe.losses): PyTorch-Keras otherwise stops learning once the sigmoid saturates.
        """
        from cnnlab.backend import keras
        from cnnlab.recipe.losses import LogitAwareBinaryCrossentropy, LogitAwareCategoricalCrossentropy

        if self.loss == "mse":
            return keras.losses.MeanSquaredError()
        if num_classes == 2:
            if self.loss == "categorical_crossentropy":
                raise UserError(
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
            raise UserError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        steps_per_epoch = int(steps_per_epoch)
        from cnnlab.recipe.schedule import WarmupDecay

        return WarmupDecay(self.learning_rate, warmup_steps=round(self.warmup_epochs * steps_per_epoch),
                           total_steps=self.epochs * steps_per_epoch, decay=self.schedule)

    def make_optimizer(self, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
        from cnnlab.backend import keras

        learning_rate = self.make_learning_rate(steps_per_epoch)
        # Only when asked for, so that the tutorial's optimizers keep their exact configuration.
        averaging = {"use_ema": True, "ema_momentum": self.ema} if self.ema else {}
        # Keras applies weight_decay decoupled (as AdamW) in every optimizer; None means off.
        decay = self.weight_decay or None
        # Keras' Adam and AdamW, with a leaner update on PyTorch (same formula; torch_adam).
        from cnnlab.recipe.torch_adam import adam, adam_w

        if self.optimizer == "adam":
            return adam(learning_rate=learning_rate, weight_decay=decay, **averaging)
        if self.optimizer == "adamw":
            return adam_w(learning_rate=learning_rate, weight_decay=self.weight_decay, **averaging)
        # Momentum 0.9 is the universal SGD default in the CNN literature.
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, weight_decay=decay, **averaging)
