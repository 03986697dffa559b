"""What Strika's 2019 tutorial published for each of its models: the one copy of its figures.

Measured on its 1,024 validation photos. Its accuracies are the best over thresholds 0.1..0.9
chosen on those same photos (optimistic; cnnlab reports them beside honest figures). The
model registry shows them with each tutorial model; reproductions and reports compare with them.
"""

from __future__ import annotations

PUBLISHED: dict[str, dict] = {
    "mlp": {"note": "about as good as random guessing"},
    "conv1": {"mse": 0.36, "pearson": 0.15},
    "conv2": {"mse": 0.33, "pearson": 0.21, "accuracy": 0.61},
    "conv2-wide": {"pearson": 0.30, "accuracy": 0.67},
    "conv2-fc512": {"pearson": 0.42, "accuracy": 0.75},
}


def published(model: str) -> dict:
    """A copy of the tutorial's figures for `model` ({} for models the tutorial did not have)."""
    return dict(PUBLISHED.get(model, {}))
