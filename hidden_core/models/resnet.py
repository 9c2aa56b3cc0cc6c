"""CIFAR ResNet (He et al. 2016; open_lth's cifar_resnet_N_W): depth 6n+2, three stages of
n basic blocks with W, 2W, 4W channels (W = 16 * width), BatchNorm, 1x1 projection shortcuts
where the shape changes, a classifier with a bias (open_lth models/cifar_resnet.py:65,
`nn.Linear(plan[-1][0], outputs)`). Works on 1-D signals as well as images. Its BatchNorm
gamma is drawn by hidden_core.distributions.init_weights."""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from hidden_core.models.scaling import scaled

BASE_WIDTH = 16


class BasicBlock(nn.Module):
    def __init__(self, conv, norm, fan_in: int, out: int, stride: int):
        super().__init__()
        self.conv1 = conv(fan_in, out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out)
        self.conv2 = conv(out, out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = norm(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or fan_in != out:
            self.shortcut = nn.Sequential(conv(fan_in, out, kernel_size=1, stride=stride, bias=False), norm(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, depth: int, width: float):
        super().__init__()
        one_d = len(input_shape) == 2
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if one_d else (nn.Conv2d, nn.BatchNorm2d)
        blocks_per_stage = (depth - 2) // 6
        channels = scaled(BASE_WIDTH, width)
        layers: list[nn.Module] = [conv(input_shape[0], channels, kernel_size=3, padding=1, bias=False), norm(channels), nn.ReLU(inplace=True)]
        fan_in = channels
        for stage in range(3):
            out = scaled(BASE_WIDTH * 2**stage, width)
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(conv, norm, fan_in, out, stride))
                fan_in = out
        layers += [nn.AdaptiveAvgPool1d(1) if one_d else nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(fan_in, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
