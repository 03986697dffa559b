"""Model registry: the tutorial's Keras models by name, modern small CNNs, plus non-neural baselines.

Importing this package registers the tutorial's models, then the modern ones, and imports no
Keras: each model's name, description, recipe and parameter and FLOP counts are plain data, and
its builder imports Keras (through cnnlab.backend, configured there once: PyTorch,
channels_first, unless the caller set Keras up first) when a model is built. So `cnnlab models`
lists them in a fraction of a second. The FLOP counters (Keras layer types) and the
scikit-learn baselines load on first use (`cnnlab.models.forward_flops`, `cnnlab.models.BASELINES`).
"""

from cnnlab.models.registry import (
    FAMILIES,
    ModelSpec,
    Recipe,
    build_model,
    classification_head,
    count_parameters,
    describe_models,
    get_model_spec,
    model_counts,
    model_names,
    register,
    unregister,
)

# Registration order is the listing order (`cnnlab models`): the tutorial's models first.
# isort: off
from cnnlab.models import tutorial  # noqa: F401,E402  (registers the tutorial's models)
from cnnlab.models import modern  # noqa: F401,E402  (registers the modern models, after the tutorial's)
from cnnlab.models import transfer  # noqa: F401,E402  (registers the transfer-learning model)
from cnnlab.models import efficientnet_lite  # noqa: F401,E402  (registers the offline-pretrained models)
# isort: on

_BASELINE_NAMES = ("BASELINES", "MajorityClassBaseline", "PixelBoostedTreesBaseline", "make_baseline",
                   "describe_baselines")
_FLOP_NAMES = ("FLOP_COUNTERS", "forward_flops", "layer_flops")


def __getattr__(name: str):
    if name in _BASELINE_NAMES:
        from cnnlab.models import baselines

        return getattr(baselines, name)
    if name in _FLOP_NAMES:
        from cnnlab.models import flops

        return getattr(flops, name)
    raise AttributeError(f"module 'cnnlab.models' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_BASELINE_NAMES, *_FLOP_NAMES])


__all__ = [
    "FAMILIES", "ModelSpec", "Recipe", "build_model", "classification_head",
    "count_parameters", "describe_models", "get_model_spec", "model_counts",
    "model_names", "register", "unregister", *_BASELINE_NAMES, *_FLOP_NAMES,
]
