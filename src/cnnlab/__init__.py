"""cnnlab: turn a folder of photos into trained, compared and explained image classifiers."""

__version__ = "0.1.0"
