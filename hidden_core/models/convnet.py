"""Conv2/4/6/8 (Frankle et al. 2019, as used by edge-popup), in 1-D or 2-D.

Pairs of 3x3 convs with 64, 128, 256, 512 channels (capped at 512 past the fourth pair), a
2x2 max-pool after each pair, then 256-256-classes fully connected; all times `width`; no
biases (edge-popup's models have none, and the published parameter counts assume so).
"""

from __future__ import annotations

from torch import nn

from hidden_core.models.scaling import scaled

BASE_CHANNELS = (64, 128, 256, 512)
FC_UNITS = 256


class ConvNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, depth: int, width: float, batchnorm: bool):
        super().__init__()
        spatial = list(input_shape[1:])
        conv, pool, norm = (nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d) if len(spatial) == 1 else (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d)
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for pair in range(depth // 2):
            out = scaled(BASE_CHANNELS[min(pair, len(BASE_CHANNELS) - 1)], width)
            for _ in range(2):
                layers.append(conv(channels, out, kernel_size=3, padding=1, bias=False))
                if batchnorm:
                    layers.append(norm(out))
                layers.append(nn.ReLU(inplace=True))
                channels = out
            layers.append(pool(2))
            spatial = [s // 2 for s in spatial]
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        flat = channels
        for s in spatial:
            flat *= s
        hidden = scaled(FC_UNITS, width)
        head: list[nn.Module] = []
        for fan_in in (flat, hidden):
            head.append(nn.Linear(fan_in, hidden, bias=False))
            if batchnorm:
                head.append(nn.BatchNorm1d(hidden))
            head.append(nn.ReLU(inplace=True))
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(hidden, num_classes, bias=False)

    def forward(self, x):
        return self.classifier(self.head(self.features(x)))
