"""cnnlab: turn a folder of photos into trained, compared and explained image classifiers.

`cnnlab.load(RUN)` returns a trained run as a Classifier (`.predict(paths | PIL images | arrays)`);
it is imported on first use, so `import cnnlab` stays light (no Keras).
"""

from cnnlab.version import __version__  # noqa: F401

_LAZY = ("load", "Classifier", "Prediction")


def __getattr__(name: str):
    if name in _LAZY:
        from cnnlab.inference import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
