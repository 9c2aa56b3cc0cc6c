"""Fully connected network: one ReLU layer per entry of `units`, no biases.

`units` lists each hidden layer's width, so LeNet 300-100 (the MLP of Zhou et al.,
masked_networks.py:30-48, and of Ivan & Florian, MaskTrainer.py
PrepareMaskedMLP) is `mlp_layer_units: [300, 100]`."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn


class MLP(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, units: Sequence[int], batchnorm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for out in units:
            layers.append(nn.Linear(fan_in, out, bias=False))
            if batchnorm:
                layers.append(nn.BatchNorm1d(out))
            layers.append(nn.ReLU(inplace=True))
            fan_in = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(fan_in, num_classes, bias=False)

    def forward(self, x):
        return self.classifier(self.features(x))
