"""The non-neural baselines the tutorial compares against: the majority class, and boosted trees
on downsampled pixels (the tutorial's XGBoost remark), on photos whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab import models


def bright_and_dark(count: int, seed: int = 0, size=(32, 24)) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC photos: class 1 bright (150-255), class 0 dark (0-105), with pixel noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    low = np.where(labels == 1, 150, 0)[:, None, None, None]
    images = (low + rng.integers(0, 106, (count, *size, 3))).astype(np.uint8)
    return images, labels


def test_baselines_are_discoverable():
    assert set(models.BASELINES) == {"majority", "pixel-trees"}
    assert all(info.description for info in models.BASELINES.values())
    assert isinstance(models.make_baseline("majority"), models.MajorityClassBaseline)
    with pytest.raises(ValueError, match="known baselines"):
        models.make_baseline("xgboost")


def test_majority_baseline_predicts_the_majority_class():
    images = np.zeros((10, 8, 6, 3), dtype=np.uint8)
    labels = np.array([1, 1, 1, 0, 1, 0, 1, 1, 0, 1])  # 7 cats, 3 dogs
    baseline = models.MajorityClassBaseline().fit(images, labels)
    test_images = np.full((4, 8, 6, 3), 200, dtype=np.uint8)
    np.testing.assert_array_equal(baseline.predict(test_images), [1, 1, 1, 1])
    np.testing.assert_allclose(baseline.predict_proba(test_images), [0.7] * 4)

    three = models.MajorityClassBaseline().fit(images, np.array([2, 2, 0, 1, 2, 2, 0, 2, 1, 2]))
    assert three.predict_proba(test_images).shape == (4, 3)
    np.testing.assert_allclose(three.predict_proba(test_images)[0], [0.2, 0.2, 0.6])
    np.testing.assert_array_equal(three.predict(test_images), [2, 2, 2, 2])


def test_baselines_refuse_bad_input():
    with pytest.raises(ValueError, match="not fitted"):
        models.MajorityClassBaseline().predict(np.zeros((1, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="height, width, channels"):
        models.MajorityClassBaseline().fit(np.zeros((4, 4, 3), dtype=np.uint8), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="labels"):
        models.MajorityClassBaseline().fit(np.zeros((2, 4, 4, 3), dtype=np.uint8), np.zeros(3, dtype=int))


def test_pixel_trees_learn_bright_versus_dark():
    train_images, train_labels = bright_and_dark(200, seed=0)
    test_images, test_labels = bright_and_dark(100, seed=1)
    baseline = models.PixelBoostedTreesBaseline(max_iter=20).fit(train_images, train_labels)
    assert baseline.features(test_images).shape == (100, 8 * 6 * 3)  # 32 x 24 in 4 x 4 blocks
    probabilities = baseline.predict_proba(test_images)
    assert probabilities.shape == (100,)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert np.mean((probabilities > 0.5) == test_labels) > 0.9
    assert np.mean(baseline.predict(test_images) == test_labels) > 0.9


def test_pixel_trees_handle_three_classes_and_block_size():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    images = (labels[:, None, None, None] * 100 + rng.integers(0, 50, (120, 16, 12, 3))).astype(np.uint8)
    baseline = models.PixelBoostedTreesBaseline(block=2, max_iter=10).fit(images, labels)
    probabilities = baseline.predict_proba(images)
    assert probabilities.shape == (120, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert np.mean(baseline.predict(images) == labels) > 0.9
    with pytest.raises(ValueError, match="block"):
        models.PixelBoostedTreesBaseline(block=0)


def test_downsample_is_an_area_average():
    image = np.arange(4 * 6 * 1, dtype=np.uint8).reshape(1, 4, 6, 1)
    from cnnlab.models.baselines import downsample

    pooled = downsample(image, 2)
    assert pooled.shape == (1, 2, 3, 1)
    assert pooled[0, 0, 0, 0] == pytest.approx((0 + 1 + 6 + 7) / 4)
