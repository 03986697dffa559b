"""Helpers shared by the training tests (their tiny real-photo cache is conftest's `tiny_cache`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from cnnlab.runs import Run, TrainConfig
from cnnlab.training.trainer import train

EPOCHS = 6
WIDTH, HEIGHT = 16, 12  # every registered model still fits (conv2-fc512 ends at 2x1x128)


def make_config(cache_dir, out, **overrides) -> TrainConfig:
    """conv1 with unit pixels and lr 1e-3 (it learns), batch 4: two training steps per epoch."""
    settings = dict(model="conv1", cache=str(cache_dir), out=str(out), epochs=EPOCHS, batch_size=4,
                    learning_rate=1e-3, pixel_scale="unit", seed=0, any_input_size=True)
    settings.update(overrides)
    return TrainConfig(**settings)


def load_trained_model(run, weights: str = "best"):
    """(model with the run's weights, the run's configuration), as tests compare them."""
    opened = Run.open(run)
    return opened.build_model(weights), opened.config


def quiet_train(config: TrainConfig, **keywords) -> tuple[dict, str]:
    stream = io.StringIO()
    state = train(config, stream=stream, show_progress=keywords.pop("show_progress", False), **keywords)
    return state, stream.getvalue()


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def model_weights(run: Path, which: str) -> list[np.ndarray]:
    model, _ = load_trained_model(run, which)
    return [np.array(weight) for weight in model.get_weights()]


def same_weights(first, second) -> bool:
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


def losses(history, key="train_loss") -> list:
    return [entry[key] for entry in history]
