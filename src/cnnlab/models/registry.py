"""The architecture registry: every model cnnlab can train, by name, with its training recipe.

Modelled on timm's registry: a model is registered once as a `ModelSpec` (a builder plus the
`Recipe` it was published with) and is then listed, described and built by name. The CLI's
`cnnlab models` and the training code read only this module, so adding an architecture means
writing one builder and one `register(...)` call.

Shapes follow Keras' global image data format, which `cnnlab.backend.configure_keras()` sets
to channels_first: an input shape is (channels, height, width), (3, 125, 94) for the tutorial.

Registering and listing import no Keras: a spec carries its parameter and FLOP counts at the
recipe's input size (checked against the built model by tests/test_models.py), so `cnnlab
models` answers in a fraction of a second instead of building every model (9 s, 1.27 GB).
Keras is imported when a model is built.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cnnlab.backend import resolve_precision
from cnnlab.errors import UserError
from cnnlab.recipe import FAMILIES, Recipe

if TYPE_CHECKING:
    import keras

# (input_shape, num_classes) -> an uncompiled keras.Model
ModelBuilder = Callable[[tuple[int, ...], int], Any]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered architecture. `tutorial` holds the figures the tutorial published for it.

    parameters and forward_flops: the counts of the model built at its recipe's input size with
    two classes, so that listing models builds none; None (e.g. a plugin's spec) means "build it
    to count". tests/test_models.py checks every registered model's counts against its build.
    """

    name: str
    description: str
    build: ModelBuilder
    recipe: Recipe
    tutorial: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    family: str = "tutorial"
    # The weights a run starts from when `--init-weights` names none (a value --init-weights
    # accepts, e.g. 'imagenet-offline'); None = the builder's random initialisation.
    init_weights: str | None = None
    parameters: int | None = None
    forward_flops: int | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise UserError(f"a model name must be a non-empty string, got {self.name!r}")
        if self.family not in FAMILIES:
            raise UserError(f"unknown family {self.family!r} for {self.name}; choose one of {', '.join(FAMILIES)}")
        if not callable(self.build):
            raise UserError(f"build for {self.name} must be callable(input_shape, num_classes)")
        for field in ("parameters", "forward_flops"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise UserError(f"{field} of {self.name} must be a whole number >= 0 or None, got {value!r}")


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry; returns the spec. Names are unique."""
    if spec.name in _REGISTRY:
        raise UserError(f"a model named {spec.name!r} is already registered")
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
        raise UserError(f"unknown model {name!r}; known models: {known}") from None


def model_names(family: str | None = None) -> list[str]:
    """Registered names in registration order (the tutorial's order), optionally by family."""
    if family is not None and family not in FAMILIES:
        raise UserError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    return [name for name, spec in _REGISTRY.items() if family is None or spec.family == family]


def classification_head(num_classes: int, name: str = "output") -> keras.layers.Dense:
    """The output layer: one sigmoid unit for two classes (as the tutorial), else softmax.
    Always float32, also in a mixed-precision model: probabilities (and the logits the loss
    reads) keep float32's resolution, where bfloat16 has about three significant digits."""
    from cnnlab.backend import keras

    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name=name, dtype="float32")
    return keras.layers.Dense(num_classes, activation="softmax", name=name, dtype="float32")


def build_model(
    name: str, input_shape: Sequence[int] | None = None, num_classes: int = 2, precision: str = "float32"
) -> keras.Model:
    """Build a fresh, uncompiled model.

    input_shape is in Keras' image data format: (3, 125, 94) under cnnlab's channels_first,
    which is the default; None means the model's recipe size in the current format.
    Two classes give an (n, 1) sigmoid output (P(class 1)); N > 2 give (n, N) softmax rows.
    precision: a Keras dtype policy ('float32' or 'mixed_bfloat16'; 'auto' is resolved by
    cnnlab.backend.resolve_precision); it applies to this model's layers only.
    """
    spec = get_model_spec(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise UserError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    shape = spec.recipe.input_shape() if input_shape is None else tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(size, int) and size > 0 for size in shape):
        raise UserError(f"input_shape must be three positive integers (channels, height, width), got {input_shape!r}")
    from cnnlab.backend import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(precision))
    try:
        return spec.build(shape, num_classes)
    finally:
        keras.config.set_dtype_policy(previous)


def count_parameters(model: keras.Model, trainable_only: bool = False) -> int:
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(weight.shape) for weight in weights))


def model_counts(name: str) -> tuple[int, int]:
    """(parameters, forward FLOPs per image) at the recipe's input size with two classes: the
    spec's registered counts, or counted on a build for a spec registered without them."""
    spec = get_model_spec(name)
    if spec.parameters is not None and spec.forward_flops is not None:
        return spec.parameters, spec.forward_flops
    from cnnlab.models.flops import forward_flops

    model = build_model(name)
    return count_parameters(model), forward_flops(model)


def describe_models(family: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready record per registered model; counts from the registry (no model is built
    unless a spec was registered without them)."""
    records = []
    for name in model_names(family):
        spec = get_model_spec(name)
        parameters, flops = model_counts(name)
        records.append(
            {
                "name": name,
                "description": spec.description,
                "family": spec.family,
                "parameters": parameters,
                "forward_flops": flops,
                "input_shape": list(spec.recipe.input_shape()),
                "recipe": spec.recipe.to_dict(),
                "init_weights": spec.init_weights,
                "tutorial": dict(spec.tutorial),
            }
        )
    return records


def __getattr__(name: str):
    # `from cnnlab.models.registry import keras` (older callers): the configured module, on request.
    if name == "keras":
        from cnnlab.backend import ensure_keras

        return ensure_keras()
    raise AttributeError(f"module 'cnnlab.models.registry' has no attribute {name!r}")
