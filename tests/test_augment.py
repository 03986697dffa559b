"""Per-batch augmentation: shapes, dtype and labels kept; seeded and deterministic; each
transform does what it says (mirror, shift, colour), checked against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.recipe.augment import Augment, alternating_flip_mask, jitter, translate
from cnnlab.training.batches import CacheBatches


def noise(count: int = 16, height: int = 12, width: int = 10, seed: int = 0) -> np.ndarray:
    """Random uint8 NHWC images: every pixel distinct enough that a shift or mirror is unique."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


EVERYTHING = Augment(flip="random", translate=3, padding="reflect", brightness=0.2, contrast=0.2, saturation=0.2)


def test_output_keeps_shape_and_dtype_and_leaves_the_input_alone():
    pixels = noise()
    before = pixels.copy()
    for augment in (Augment(), EVERYTHING, Augment(flip="alternating", translate=2, padding="zeros")):
        out = augment(pixels, np.random.default_rng(0), rows=np.arange(len(pixels)), epoch=1, seed=0)
        assert out.shape == pixels.shape and out.dtype == np.uint8
        assert out is not pixels
        np.testing.assert_array_equal(pixels, before)
    np.testing.assert_array_equal(Augment()(pixels, np.random.default_rng(0)), pixels)  # defaults: no change


def test_same_generator_seed_same_output_different_seed_different_output():
    pixels = noise(32)
    first = EVERYTHING(pixels, np.random.default_rng([7, 1, 0]))
    again = EVERYTHING(pixels, np.random.default_rng([7, 1, 0]))
    other = EVERYTHING(pixels, np.random.default_rng([7, 1, 1]))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, pixels)


def test_random_flip_mirrors_about_half_of_the_images_exactly():
    pixels = noise(200)
    out = Augment(flip="random")(pixels, np.random.default_rng(3))
    mirrored = np.array([np.array_equal(o, p[:, ::-1]) for o, p in zip(out, pixels)])
    unchanged = np.array([np.array_equal(o, p) for o, p in zip(out, pixels)])
    assert np.all(mirrored ^ unchanged)  # each image is either itself or its exact mirror image
    assert 70 <= mirrored.sum() <= 130  # a fair coin: 100 +- 4 standard deviations


def test_alternating_flip_flips_each_image_in_exactly_one_of_two_consecutive_epochs():
    rows = np.arange(1000, 1400)
    masks = [alternating_flip_mask(rows, epoch, seed=5) for epoch in range(4)]
    assert np.all(masks[0] ^ masks[1]) and np.all(masks[1] ^ masks[2]) and np.all(masks[2] ^ masks[3])
    np.testing.assert_array_equal(masks[0], masks[2])
    assert 150 <= masks[0].sum() <= 250  # a fair coin per image in epoch 0
    assert not np.array_equal(masks[0], alternating_flip_mask(rows, 0, seed=6))  # the seed matters
    # It depends on the image (its cache row), not on where the image sits in a batch.
    shuffled = np.random.default_rng(0).permutation(rows)
    np.testing.assert_array_equal(alternating_flip_mask(shuffled, 0, 5), masks[0][shuffled - 1000])

    pixels, batch_rows = noise(40), rows[:40]
    augment = Augment(flip="alternating")
    even = augment(pixels, np.random.default_rng(0), rows=batch_rows, epoch=0, seed=5)
    odd = augment(pixels, np.random.default_rng(1), rows=batch_rows, epoch=1, seed=5)
    for image, first, second in zip(pixels, even, odd):
        flips = [np.array_equal(first, image[:, ::-1]), np.array_equal(second, image[:, ::-1])]
        assert sorted(flips) == [False, True]
        assert np.array_equal(first, image) or np.array_equal(second, image)
    with pytest.raises(ValueError, match="rows"):
        augment(pixels, np.random.default_rng(0))


def _find_shift(original: np.ndarray, shifted: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """The (dy, dx) with shifted[y, x] == original[y + dy, x + dx] wherever that is inside."""
    height, width = original.shape[:2]
    found = []
    for dy in range(-limit, limit + 1):
        for dx in range(-limit, limit + 1):
            inside_out = shifted[max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
            inside_in = original[max(0, dy):height + min(0, dy), max(0, dx):width + min(0, dx)]
            if np.array_equal(inside_out, inside_in):
                found.append((dy, dx))
    return found


@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_translation_shifts_the_content_and_pads_the_border(padding):
    pixels, limit = noise(60, 12, 10), 3
    out = translate(pixels, np.random.default_rng(1), limit, padding)
    shifts = []
    for original, shifted in zip(pixels, out):
        (shift,) = _find_shift(original, shifted, limit)  # exactly one shift explains the image
        shifts.append(shift)
        dy, dx = shift
        padded = np.pad(original, ((limit, limit), (limit, limit), (0, 0)),
                        mode="reflect" if padding == "reflect" else "constant")
        # The whole image, border included, is the window of the padded image at that offset.
        np.testing.assert_array_equal(shifted, padded[limit + dy:limit + dy + 12, limit + dx:limit + dx + 10])
    shifts = np.array(shifts)
    assert shifts.min() == -limit and shifts.max() == limit  # both directions, up to the limit
    assert len({tuple(s) for s in shifts}) > 10
    with pytest.raises(ValueError, match="reflect"):
        translate(pixels, np.random.default_rng(0), 12, "reflect")


def test_jitter_stays_in_range_and_applies_one_factor_per_image():
    pixels = noise(50)
    pixels[0] = 255  # saturated white: brightening must clip, not wrap around
    pixels[1] = 0
    out = jitter(pixels, np.random.default_rng(2), brightness=0.5, contrast=0.5, saturation=0.5)
    assert out.dtype == np.uint8 and out.min() >= 0 and out.max() <= 255
    assert not np.array_equal(out, pixels)

    # Brightness alone multiplies every pixel of an image by one factor within the range.
    bright = jitter(pixels, np.random.default_rng(2), brightness=0.2, contrast=0.0, saturation=0.0)
    for original, changed in zip(pixels[2:], bright[2:]):
        mask = (original > 50) & (changed < 255)
        ratios = changed[mask] / original[mask].astype(np.float64)
        assert 0.8 - 0.02 <= np.median(ratios) <= 1.2 + 0.02
        assert np.abs(ratios - np.median(ratios)).max() < 0.02  # one factor (up to rounding)

    # Saturation leaves a grey image grey and unchanged; contrast keeps its mean level.
    grey = np.repeat(noise(8)[..., :1], 3, axis=-1)
    np.testing.assert_array_equal(jitter(grey, np.random.default_rng(0), 0.0, 0.0, 0.5), grey)
    flat = np.full((4, 6, 6, 3), 90, dtype=np.uint8)
    np.testing.assert_array_equal(jitter(flat, np.random.default_rng(0), 0.0, 0.5, 0.0), flat)


def test_jitter_equals_the_three_adjustments_applied_one_after_another():
    """jitter applies brightness, contrast and saturation in one fused affine step; check it
    against the textbook sequence in float64 (equal up to one grey level of rounding)."""
    pixels = noise(20, 9, 7, seed=8)
    strengths = np.array([0.3, 0.4, 0.5])[:, None]
    b, c, s = 1.0 + np.random.default_rng(9).uniform(-1.0, 1.0, size=(3, 20)).astype(np.float32) * strengths
    luma = np.array([0.299, 0.587, 0.114])
    x = pixels * b[:, None, None, None]
    mean = (x @ luma).mean(axis=(1, 2))[:, None, None, None]
    x = mean + c[:, None, None, None] * (x - mean)
    grey = (x @ luma)[..., None]
    x = grey + s[:, None, None, None] * (x - grey)
    expected = np.clip(np.rint(x), 0, 255)
    out = jitter(pixels, np.random.default_rng(9), 0.3, 0.4, 0.5)
    assert np.abs(out - expected).max() <= 1 and np.mean(out != expected) < 0.01


def test_augmented_batches_keep_their_labels_and_are_reproducible():
    images, labels = noise(24, 8, 8, seed=4), np.arange(24) % 2
    rows = np.arange(24)
    plain = CacheBatches(images, labels, rows, 2, 8, "raw", shuffle=True, seed=3)
    augmented = CacheBatches(images, labels, rows, 2, 8, "raw", shuffle=True, seed=3, augment=EVERYTHING)
    for epoch in range(2):
        plain.set_epoch(epoch)
        augmented.set_epoch(epoch)
        for index in range(len(plain)):
            (plain_inputs, plain_targets), (inputs, targets) = plain[index], augmented[index]
            np.testing.assert_array_equal(targets, plain_targets)
            assert inputs.shape == plain_inputs.shape and inputs.dtype == np.float32
            assert not np.array_equal(inputs, plain_inputs)
            np.testing.assert_array_equal(inputs, augmented[index][0])  # the same batch again: same pixels
    augmented.set_epoch(0)
    first_epoch = augmented[0][0]
    augmented.set_epoch(1)
    assert not np.array_equal(first_epoch, augmented[0][0])  # another epoch, another augmentation


def test_settings_are_checked_and_read_from_dicts():
    assert Augment.from_value({"flip": "random", "translate": 2}) == Augment(flip="random", translate=2)
    assert Augment.from_value(None) is None
    assert Augment.from_value(EVERYTHING) is EVERYTHING
    assert Augment.from_value(EVERYTHING.to_dict()) == EVERYTHING
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augment.from_value({"flop": "random"})
    with pytest.raises(ValueError, match="flip"):
        Augment(flip="vertical")
    with pytest.raises(ValueError, match="translate"):
        Augment(translate=-1)
    with pytest.raises(ValueError, match="brightness"):
        Augment(brightness=1.5)
    with pytest.raises(ValueError, match="uint8"):
        EVERYTHING(noise().astype(np.float32), np.random.default_rng(0))
