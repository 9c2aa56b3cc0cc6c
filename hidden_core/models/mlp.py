"""Fully connected network: `depth` hidden layers of `units` ReLU units, no biases."""

from __future__ import annotations

import math

from torch import nn


class MLP(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, depth: int, units: int, batchnorm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for _ in range(depth):
            layers.append(nn.Linear(fan_in, units, bias=False))
            if batchnorm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(nn.ReLU(inplace=True))
            fan_in = units
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(fan_in, num_classes, bias=False)

    def forward(self, x):
        return self.classifier(self.features(x))
