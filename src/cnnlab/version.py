"""cnnlab's version: the one copy, importable from every layer without the package root."""

__version__ = "0.1.0"
