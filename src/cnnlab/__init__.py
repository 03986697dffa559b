"""cnnlab: turn a folder of photos into trained, compared and explained image classifiers.

The workflow from Python (cnnlab.workflow): `cnnlab.prepare`, `cnnlab.train` (returns a
TrainedRun: .evaluate(), .predict(), .export(), .report(), .plot_curves(), .top_losses()),
`cnnlab.open_run`, `cnnlab.compare`; and `cnnlab.load(RUN)`, a trained run as a Classifier
(`.predict(paths | PIL images | arrays)`). All are imported on first use, so `import cnnlab`
stays light (no Keras).
"""

from cnnlab.version import __version__  # noqa: F401

_FROM_CLASSIFIER = ("load", "Classifier", "Prediction")
_FROM_WORKFLOW = ("prepare", "train", "open_run", "compare", "TrainedRun")


def __getattr__(name: str):
    if name in _FROM_CLASSIFIER:
        from cnnlab.inference import classifier

        return getattr(classifier, name)
    if name in _FROM_WORKFLOW:
        from cnnlab import workflow

        return getattr(workflow, name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_FROM_CLASSIFIER, *_FROM_WORKFLOW])
