"""cnnlab's leaner Adam update moves the weights and moments exactly as Keras' own Adam does."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.backend import keras
from cnnlab.recipe.torch_adam import adam, adam_w


def numpy(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def trained_variables(optimizer, steps: int = 6):
    """Three variables (a kernel, a bias, a scalar) after `steps` updates with fixed random gradients."""
    generator = np.random.default_rng(7)
    shapes = [(13, 5), (5,), ()]
    variables = [keras.Variable(generator.normal(0, 1, shape).astype("float32")) for shape in shapes]
    gradient_steps = [[generator.normal(0, 10.0 ** generator.integers(-4, 1), shape).astype("float32")
                       for shape in shapes] for _ in range(steps)]
    for gradients in gradient_steps:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients], variables)
    return [numpy(v) for v in variables] + [numpy(v) for v in optimizer.variables]


SCHEDULE = {"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.01, "decay_steps": 10}}


@pytest.mark.parametrize("case", [
    (adam, keras.optimizers.Adam, {"learning_rate": 1e-3}),
    (adam, keras.optimizers.Adam, {"learning_rate": 1e-6}),  # the tutorial's
    (adam, keras.optimizers.Adam, {"learning_rate": 0.05, "amsgrad": True}),
    (adam, keras.optimizers.Adam, {"learning_rate": 0.01, "weight_decay": 0.1, "use_ema": True, "ema_momentum": 0.5}),
    (adam_w, keras.optimizers.AdamW, {"learning_rate": 0.01, "weight_decay": 0.01}),
    (adam_w, keras.optimizers.AdamW, {"learning_rate": SCHEDULE, "weight_decay": 0.05}),
], ids=["adam", "adam-tutorial-lr", "amsgrad", "adam-decay-ema", "adamw", "adamw-schedule"])
def test_lean_adam_updates_as_keras_adam_does(case):
    ours, theirs, arguments = case
    if isinstance(arguments["learning_rate"], dict):
        arguments = {**arguments, "learning_rate": keras.optimizers.schedules.deserialize(arguments["learning_rate"])}
    got, want = trained_variables(ours(**arguments)), trained_variables(theirs(**arguments))
    assert len(got) == len(want)
    for ours_value, keras_value in zip(got, want):
        np.testing.assert_allclose(ours_value, keras_value, rtol=2e-6, atol=1e-9)
    assert not np.allclose(got[0], trained_variables(theirs(**arguments), steps=0)[0])  # the weights did move


def test_the_recipe_gives_the_lean_optimizer_on_torch_and_keras_own_elsewhere():
    from cnnlab.models import get_model_spec

    optimizer = get_model_spec("conv2").recipe.make_optimizer()
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(numpy(optimizer.learning_rate)) == pytest.approx(1e-6)
    lean = keras.backend.backend() == "torch"
    assert type(optimizer).__name__ == ("LeanAdam" if lean else "Adam")
    decoupled = get_model_spec("resnet9").recipe.make_optimizer(steps_per_epoch=10)
    assert isinstance(decoupled, keras.optimizers.AdamW)
    assert type(decoupled).__name__ == ("LeanAdamW" if lean else "AdamW")
