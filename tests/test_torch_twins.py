"""benchmarks/torch_twins.py: the plain torch.nn models that training_speed's raw-PyTorch rows
train are the registered networks (same parameter counts, same weight tensors, same output
shape), so the raw rows time the same work. Nothing here is timed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from torch_twins import RESNETS, TUTORIAL, build_twin, parameter_count  # noqa: E402

from cnnlab.models import get_model_spec  # noqa: E402


def recipe_shape(name: str) -> tuple[int, int, int]:
    recipe = get_model_spec(name).recipe
    return 3, recipe.input_height, recipe.input_width


@pytest.mark.parametrize("name", [*TUTORIAL, *RESNETS])
def test_each_twin_has_the_registered_parameter_count_and_one_output(name):
    twin = build_twin(name, recipe_shape(name))
    # The registry's counts are checked against the built Keras models by tests/test_models.py.
    assert parameter_count(twin) == get_model_spec(name).parameters
    with torch.no_grad():
        assert twin.eval()(torch.zeros(2, *recipe_shape(name))).shape == (2, 1)


@pytest.mark.parametrize("name", ["conv2", "resnet9"])
def test_each_weight_tensor_matches_the_keras_models(name):
    from cnnlab.models import build_model

    keras_model = build_model(name, recipe_shape(name), 2)
    keras_sizes = sorted(int(weight.numpy().size) for weight in keras_model.weights)
    twin = build_twin(name, recipe_shape(name))
    twin_tensors = [*twin.parameters(), *(buffer for key, buffer in twin.named_buffers()
                                         if not key.endswith("num_batches_tracked"))]
    assert sorted(tensor.numel() for tensor in twin_tensors) == keras_sizes


def test_an_unknown_model_has_no_twin():
    with pytest.raises(KeyError, match="no torch.nn twin"):
        build_twin("efficientnet", (3, 64, 64))
