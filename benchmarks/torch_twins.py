"""cnnlab's registered models written again in plain torch.nn, for training_speed.py's raw-PyTorch
rows: what the same network costs without Keras and without cnnlab's trainer.

Each twin has the Keras model's layers, shapes and parameter count (tests/test_torch_twins.py
checks the counts against the registry), and returns the logit of the one output unit: the
sigmoid is applied by the loss (cnnlab's cross-entropy reads the logits too, recipe/losses.py)
or, for the mlp's MSE, by the loop. Initialisation follows Keras' (Glorot uniform and zero biases
for the tutorial's layers, He normal for resnet9's convolutions), although speed does not depend
on it. Two layout choices are torch's natural ones rather than Keras': Flatten keeps NCHW order
(Keras' channels-first Flatten transposes to NHWC first, a copy per step), and a resnet9 twin
built with channels_last=True runs NHWC memory, as cnnlab's ChannelsLastMemory layer makes Keras do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# name -> (convolution filters, dense units), as cnnlab.models.tutorial registers them.
TUTORIAL = {
    "mlp": ((), (512,)),
    "conv1": ((24,), (128, 128)),
    "conv2": ((48, 48), (256, 256)),
    "conv2-wide": ((128, 128), (256, 256)),
    "conv2-fc512": ((64, 128), (512, 512)),
}
# name -> (stem width, stage widths), as cnnlab.models.modern registers them.
RESNETS = {"resnet9": (24, (48, 96, 192)), "resnet9-tiny": (16, (32, 64, 128))}
KERAS_BATCH_NORM_EPSILON = 1e-3  # keras.layers.BatchNormalization's default (torch's is 1e-5)
KERAS_BATCH_NORM_MOMENTUM = 0.9  # models/modern.py; torch's momentum weighs the new batch: 1 - 0.9


def _keras_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class TutorialNet(nn.Module):
    """[Conv 3x3 valid + ReLU, MaxPool 2x2] per filter count, Flatten, Dense + ReLU per unit count, Dense 1."""

    def __init__(self, input_shape: Sequence[int], conv_filters: Sequence[int], dense_units: Sequence[int]):
        super().__init__()
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        for filters in conv_filters:
            layers += [nn.Conv2d(channels, filters, 3), nn.ReLU(), nn.MaxPool2d(2)]
            channels, height, width = filters, (height - 2) // 2, (width - 2) // 2
        layers.append(nn.Flatten())
        features = channels * height * width
        for units in dense_units:
            layers += [nn.Linear(features, units), nn.ReLU()]
            features = units
        layers.append(nn.Linear(features, 1))
        self.layers = nn.Sequential(*layers)
        self.apply(_keras_init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def _conv_bn_relu(inputs: int, outputs: int) -> nn.Sequential:
    convolution = nn.Conv2d(inputs, outputs, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(convolution.weight, nonlinearity="relu")  # Keras' he_normal, untruncated
    return nn.Sequential(convolution,
                         nn.BatchNorm2d(outputs, eps=KERAS_BATCH_NORM_EPSILON, momentum=1 - KERAS_BATCH_NORM_MOMENTUM),
                         nn.ReLU())


class Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.branch = nn.Sequential(_conv_bn_relu(width, width), _conv_bn_relu(width, width))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs + self.branch(inputs)


class ResNet9(nn.Module):
    """models/modern.py's build_resnet9 (pool first; residual blocks in stages 1 and 3)."""

    def __init__(self, stem_width: int, widths: Sequence[int], residual_stages: Sequence[int] = (1, 3)):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, stem_width)]
        channels = stem_width
        for stage, width in enumerate(widths, start=1):
            # ceil_mode: Keras' 'same' pooling keeps the last odd row and column.
            layers += [nn.MaxPool2d(2, ceil_mode=True), _conv_bn_relu(channels, width)]
            if stage in residual_stages:
                layers.append(Residual(width))
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, 1)
        _keras_init(self.head)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def build_twin(name: str, input_shape: Sequence[int]) -> nn.Module:
    """The torch.nn twin of registered model `name` for channels-first `input_shape` (C, H, W)."""
    if name in TUTORIAL:
        return TutorialNet(input_shape, *TUTORIAL[name])
    if name in RESNETS:
        return ResNet9(*RESNETS[name])
    raise KeyError(f"no torch.nn twin of {name!r}; twins: {', '.join([*TUTORIAL, *RESNETS])}")


def parameter_count(module: nn.Module) -> int:
    """Weights and batch-norm statistics, as Keras' count_params counts them (moving mean and
    variance are non-trainable weights there, buffers here)."""
    statistics = sum(buffer.numel() for name, buffer in module.named_buffers() if not name.endswith("num_batches_tracked"))
    return sum(parameter.numel() for parameter in module.parameters()) + statistics
