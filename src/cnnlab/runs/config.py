"""The training configuration: a registered model's recipe plus the user's overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.errors import UserError

if TYPE_CHECKING:
    from cnnlab.recipe import Recipe

# The experiment logs a run can write into its folder's logs/ (cnnlab.training.loggers writes them).
LOG_KINDS = ("tensorboard", "csv", "mlflow")


@dataclass(frozen=True)
class TrainConfig:
    model: str
    cache: str
    out: str
    # None = the model's recipe value.
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    loss: str | None = None
    optimizer: str | None = None
    pixel_scale: str | None = None
    precision: str | None = None
    # 'gradient' or 'logistic' (a frozen backbone's head by logistic regression, Recipe.head_fit).
    head_fit: str | None = None
    # Train the layers above a frozen trunk on its outputs, computed once (Recipe.cache_frozen_layers).
    cache_frozen_layers: bool | None = None
    # Early stopping on validation loss; None = train every epoch (best weights still kept).
    patience: int | None = None
    seed: int = 0
    # Use only this many training / validation images (a seeded, class-mixed subset): --quick.
    train_limit: int | None = None
    val_limit: int | None = None
    # Initial weights: 'imagenet' (a transfer model's backbone), 'imagenet-offline', 'none' or a
    # weights file; None = the model's own (ModelSpec.init_weights; random for most models).
    init_weights: str | None = None
    # Photos per forward pass inside a batch (gradients summed: the same update, less memory).
    # None = automatic (cnnlab.training.train_step), 0 = whole batches.
    micro_batch_size: int | None = None
    # The folder of photos the cache was prepared from (`train --data PHOTOS`), for the record.
    photos: str | None = None
    # Train at the cache's input size and fit even where the recipe names another (the recipe
    # recorded in config.json then says what was really trained). Off: such a cache is refused.
    any_input_size: bool = False
    # Experiment logs written beside the run's own files, any of LOG_KINDS (--log).
    log: tuple[str, ...] = ()

    def __post_init__(self):
        # A tuple in a fixed order without repeats: config.json's list reads back as the same value.
        kinds = (self.log,) if isinstance(self.log, str) else tuple(self.log or ())
        object.__setattr__(self, "log", tuple(kind for kind in LOG_KINDS if kind in kinds)
                           + tuple(dict.fromkeys(kind for kind in kinds if kind not in LOG_KINDS)))

    def recipe(self) -> "Recipe":
        """The model's recipe with this configuration's overrides applied (and validated)."""
        # Here, not at the top: reading a run folder's configuration needs no Keras.
        from cnnlab.models import get_model_spec

        base = get_model_spec(self.model).recipe
        overrides = {
            field: getattr(self, field)
            for field in ("epochs", "batch_size", "learning_rate", "loss", "optimizer", "pixel_scale", "precision",
                          "head_fit", "cache_frozen_layers")
            if getattr(self, field) is not None
        }
        return dataclasses.replace(base, **overrides)

    def validate(self) -> None:
        self.recipe()  # raises ValueError for unknown model or bad values
        if self.micro_batch_size is not None and self.micro_batch_size < 0:
            raise UserError(f"--micro-batch-size must be >= 0 (0 = whole batches), got {self.micro_batch_size}")
        for name in ("patience", "train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        unknown = [kind for kind in self.log if kind not in LOG_KINDS]
        if unknown:
            raise UserError(f"--log {unknown[0]!r} is not a log cnnlab writes; choose from {', '.join(LOG_KINDS)}")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["log"] = list(self.log)  # as JSON stores it, so a stored configuration compares equal
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})
