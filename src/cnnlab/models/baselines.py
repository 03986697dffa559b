"""Non-neural baselines the tutorial discusses, to show what a CNN must beat.

Both share one small interface over uint8 photos in NHWC order (n, height, width, channels),
the layout PIL and the data loader give:

    baseline.fit(images, labels) -> baseline
    baseline.predict_proba(images) -> (n,) P(class 1) for two classes, (n, N) rows for N > 2
    baseline.predict(images) -> (n,) class indices

Labels are integer class indices 0..N-1 (the tutorial's cat = 1, dog = 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

# scikit-learn's HistGradientBoostingClassifier rather than XGBoost, which the tutorial used:
# scikit-learn is already a pinned dependency (for reference metrics), is well maintained and
# has wheels everywhere, and its histogram boosting is the same algorithm family (LightGBM-
# style), so "boosted trees on pixels" is reproduced without another multi-MB native package.
from sklearn.ensemble import HistGradientBoostingClassifier

from cnnlab.errors import UserError


class Baseline(Protocol):
    def fit(self, images: np.ndarray, labels: np.ndarray) -> "Baseline": ...
    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...
    def predict(self, images: np.ndarray) -> np.ndarray: ...


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise UserError(f"expected images shaped (n, height, width, channels), got shape {images.shape}")
    if len(images) == 0:
        raise UserError("expected at least one image, got none")
    return images


def _check_labels(labels: np.ndarray, count: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if labels.shape != (count,):
        raise UserError(f"expected {count} labels shaped ({count},), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels)):
        raise UserError("labels must be integer class indices 0..N-1")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise UserError(f"labels must be class indices >= 0, got {labels.min()}")
    return labels


def _as_output(probabilities: np.ndarray) -> np.ndarray:
    """(n, N) class probabilities -> the interface's shape: P(class 1) for two classes."""
    return probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities


class _ClassifierBase:
    num_classes: int | None = None

    def _set_classes(self, labels: np.ndarray, num_classes: int | None) -> None:
        self.num_classes = max(2, int(labels.max()) + 1) if num_classes is None else int(num_classes)
        if self.num_classes < 2 or labels.max() >= self.num_classes:
            raise UserError(f"labels must lie in 0..{self.num_classes - 1} for {self.num_classes} classes")

    def _require_fitted(self) -> None:
        if self.num_classes is None:
            raise UserError(f"{type(self).__name__} is not fitted yet; call fit(images, labels) first")

    def class_probabilities(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return _as_output(self.class_probabilities(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.argmax(self.class_probabilities(images), axis=1)


class MajorityClassBaseline(_ClassifierBase):
    """Ignores the photo: predicts the training set's majority class.

    predict_proba returns the training class frequencies for every photo (the best constant
    predictor for MSE and cross-entropy); predict returns the majority class (the lowest index
    on a tie), so its accuracy is the majority class's share.
    """

    def fit(self, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> "MajorityClassBaseline":
        images = _check_images(images)
        labels = _check_labels(labels, len(images))
        self._set_classes(labels, num_classes)
        counts = np.bincount(labels, minlength=self.num_classes)
        self.priors = counts / counts.sum()
        self.majority_class = int(np.argmax(counts))
        return self

    def class_probabilities(self, images: np.ndarray) -> np.ndarray:
        self._require_fitted()
        images = _check_images(images)
        return np.tile(self.priors, (len(images), 1))

    def predict(self, images: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return np.full(len(_check_images(images)), self.majority_class, dtype=np.int64)


def downsample(images: np.ndarray, block: int) -> np.ndarray:
    """Area-average non-overlapping block x block squares (trailing rows/columns that do not
    fill a block are dropped). 125 x 94 with block 4 gives 31 x 23 x 3 = 2,139 features."""
    images = _check_images(images)
    n, height, width, channels = images.shape
    rows, columns = height // block, width // block
    if rows == 0 or columns == 0:
        raise UserError(f"images of {height} x {width} are smaller than one {block} x {block} block")
    cropped = images[:, : rows * block, : columns * block, :].astype(np.float32)
    return cropped.reshape(n, rows, block, columns, block, channels).mean(axis=(2, 4))


class PixelBoostedTreesBaseline(_ClassifierBase):
    """Gradient-boosted trees on raw pixels (the tutorial's XGBoost-on-pixels experiment).

    Photos are area-averaged by `block` (4 by default: 125 x 94 -> 31 x 23, ~2.1k features)
    before the trees see them. Full resolution would give 35k features and 16x the training
    time for a model the tutorial already reports as worse than the MLP; trees split on single
    pixels, so averaging neighbours loses little for them and keeps 4,096 photos under a
    minute on two cores (28 s, 100 iterations, on 4,096 random 125 x 94 photos; the pixel-trees
    row of `cnnlab reproduce` reports its training seconds on the real ones). block=1 keeps every pixel.
    """

    def __init__(self, block: int = 4, max_iter: int = 100, learning_rate: float = 0.1,
                 random_state: int = 0, **tree_options: Any) -> None:
        if not isinstance(block, int) or block < 1:
            raise UserError(f"block must be a positive integer, got {block!r}")
        self.block = block
        self.classifier = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=learning_rate, random_state=random_state, **tree_options
        )

    def features(self, images: np.ndarray) -> np.ndarray:
        pooled = downsample(images, self.block)
        return pooled.reshape(len(pooled), -1)

    def fit(
        self, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None
    ) -> "PixelBoostedTreesBaseline":
        images = _check_images(images)
        labels = _check_labels(labels, len(images))
        self._set_classes(labels, num_classes)
        if len(np.unique(labels)) < 2:
            raise UserError("pixel-trees needs at least two classes among the training labels")
        self.classifier.fit(self.features(images), labels)
        return self

    def class_probabilities(self, images: np.ndarray) -> np.ndarray:
        self._require_fitted()
        seen = self.classifier.predict_proba(self.features(images))
        # Classes absent from the training labels get probability 0 in their own column.
        probabilities = np.zeros((len(seen), self.num_classes))
        probabilities[:, self.classifier.classes_] = seen
        return probabilities


@dataclasses.dataclass(frozen=True)
class BaselineInfo:
    name: str
    description: str
    factory: Callable[..., Baseline]


BASELINES: dict[str, BaselineInfo] = {
    "majority": BaselineInfo(
        "majority", "Predicts the training set's majority class (probabilities: its class shares).",
        MajorityClassBaseline,
    ),
    "pixel-trees": BaselineInfo(
        "pixel-trees", "Gradient-boosted trees (scikit-learn HistGradientBoosting) on 4x4 area-averaged "
        "raw pixels; the tutorial's XGBoost-on-pixels baseline.", PixelBoostedTreesBaseline,
    ),
}


def make_baseline(name: str, **options: Any) -> Baseline:
    if name not in BASELINES:
        raise UserError(f"unknown baseline {name!r}; known baselines: {', '.join(BASELINES)}")
    return BASELINES[name].factory(**options)


def describe_baselines() -> list[dict[str, str]]:
    return [{"name": info.name, "description": info.description, "family": "baseline"} for info in BASELINES.values()]
