"""Experiments built from the library: the tutorial's reproduction (and later comparisons)."""
