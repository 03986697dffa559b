"""How much memory a model's layer outputs take per photo, and the batch that bounds it.

Keras runs a functional model on PyTorch keeping every layer's output of a call alive until the
call returns, also without a gradient graph, so a forward pass's peak is about the batch times
the sum of all layer outputs: EfficientNet-Lite0 at 224 x 224 holds 90 MB per photo, and
`cnnlab evaluate` at its former fixed batch of 256 was killed for memory (22 GB resident) on
a 23 GB machine. Training (cnnlab.training.train_step) and inference size batches from this.
"""

from __future__ import annotations

# A forward pass's layer outputs stay within this: conv2 gets 149 photos a batch, resnet9 127,
# EfficientNet-Lite0 5 (224) to 11 (160). resnet9's evaluation peaked at 0.69 GB with 39-photo
# batches against 1.9 GB at 256 (benchmarks/README.md); per photo, small batches cost about the
# same on a CPU.
INFERENCE_BYTES = 512 << 20
LARGEST_INFERENCE_BATCH = 256


def activation_bytes_per_image(model) -> int:
    """Bytes of every layer's float32 output for one photo (what the backward pass keeps, roughly)."""
    total = 0
    for layer in model._flatten_layers(include_self=False):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer used more than once, or a nested model
            continue
        if isinstance(shape, (list, tuple)) and all(isinstance(size, (int, type(None))) for size in shape):
            elements = 1
            for size in shape[1:]:
                elements *= size or 1
            total += 4 * elements
    return total


def inference_batch_size(model, largest: int = LARGEST_INFERENCE_BATCH, budget: int = INFERENCE_BYTES) -> int:
    """Photos per forward pass at inference: at most `largest`, and whose layer outputs fit `budget`."""
    per_image = activation_bytes_per_image(model)
    return max(1, min(largest, budget // per_image if per_image else largest))
