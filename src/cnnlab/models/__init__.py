"""Model registry: the tutorial's Keras models by name, modern small CNNs, plus non-neural baselines.

Importing this package gets Keras from cnnlab.backend (configured there once: PyTorch,
channels_first, unless the caller set Keras up first) and registers the tutorial's models, then the modern ones. The scikit-learn
baselines load lazily (`cnnlab.models.BASELINES`, `cnnlab.models.make_baseline`) so Keras-only
users skip sklearn.
"""

# Registration order is the listing order (`cnnlab models`): the tutorial's models first.
# isort: off
from cnnlab.models import tutorial  # noqa: F401  (registers the tutorial's models)
from cnnlab.models import modern  # noqa: F401  (registers the modern models, after the tutorial's)
from cnnlab.models import transfer  # noqa: F401  (registers the transfer-learning model)
from cnnlab.models import efficientnet_lite  # noqa: F401  (registers the offline-pretrained models)
# isort: on
from cnnlab.models.flops import FLOP_COUNTERS, forward_flops, layer_flops
from cnnlab.models.registry import (
    FAMILIES,
    ModelSpec,
    Recipe,
    build_model,
    classification_head,
    count_parameters,
    describe_models,
    get_model_spec,
    model_names,
    register,
    unregister,
)

_BASELINE_NAMES = ("BASELINES", "MajorityClassBaseline", "PixelBoostedTreesBaseline", "make_baseline",
                   "describe_baselines")


def __getattr__(name: str):
    if name in _BASELINE_NAMES:
        from cnnlab.models import baselines

        return getattr(baselines, name)
    raise AttributeError(f"module 'cnnlab.models' has no attribute {name!r}")


__all__ = [
    "FAMILIES", "FLOP_COUNTERS", "ModelSpec", "Recipe", "build_model", "classification_head",
    "count_parameters", "describe_models", "forward_flops", "get_model_spec", "layer_flops",
    "model_names", "register", "unregister", *_BASELINE_NAMES,
]
