"""Fit and score the non-neural baselines on a prepared cache, as the tutorial discusses them."""

from __future__ import annotations

import time

import numpy as np

from cnnlab.data.reader import Cache
from cnnlab.metrics import choose_threshold, classification_report, to_jsonable


def run_baseline(name: str, cache: Cache) -> dict:
    """Train a baseline on the cache's training split; report val (and test) like evaluate_run."""
    from threadpoolctl import threadpool_limits

    from cnnlab.models import make_baseline

    baseline = make_baseline(name)
    train_rows = cache.indices("train")
    started = time.perf_counter()
    # Baselines need their training pixels at once; uint8 keeps that to 35 KB per photo.
    # One OpenMP thread: with PyTorch's OpenMP runtime loaded in the same process,
    # scikit-learn's threads spin against it (44 s instead of 1.1 s for 64
    # photos; the pixel-trees row's training seconds in `cnnlab reproduce --quick` show it).
    with threadpool_limits(limits=1, user_api="openmp"):
        baseline.fit(np.asarray(cache.images[train_rows]), cache.labels[train_rows])
    seconds = time.perf_counter() - started
    result = {"model": name, "family": "baseline", "training_seconds": round(seconds, 2), "splits": {}}
    threshold = None
    for split in ("val", "test"):
        rows = cache.indices(split)
        if len(rows) == 0:
            continue
        with threadpool_limits(limits=1, user_api="openmp"):
            probabilities = np.clip(np.asarray(baseline.predict_proba(np.asarray(cache.images[rows])), dtype=np.float64), 0, 1)
        labels = cache.labels[rows]
        if split == "val" and len(cache.classes) == 2:
            threshold = choose_threshold(labels, probabilities)
        result["splits"][split] = classification_report(
            labels, probabilities, cache.classes, threshold=threshold if len(cache.classes) == 2 else None)
    result["validation_threshold"] = threshold
    return to_jsonable(result)
