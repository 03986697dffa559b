"""A seeded, class-balanced subset of a split's rows (`--train-limit`, `--val-limit`, --quick)."""

from __future__ import annotations

import numpy as np


def subset(rows: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A seeded subset of `limit` rows that keeps the classes as balanced as the split is."""
    if limit is None or limit >= len(rows):
        return rows
    generator = np.random.default_rng([seed, 12345])
    by_class = [generator.permutation(rows[labels[rows] == label]) for label in np.unique(labels[rows])]
    interleaved = [row for group in zip(*by_class) for row in group]
    leftovers = [row for group in by_class for row in group[min(map(len, by_class)):]]
    return np.sort(np.array((interleaved + leftovers)[:limit]))
