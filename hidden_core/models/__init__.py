"""Architectures. They build plain torch layers and know nothing of methods: a method
re-parametrizes the built model's weights afterwards (hidden_core.methods)."""

from __future__ import annotations

from torch import nn

from hidden_core.config import TrialConfig
from hidden_core.models.convnet import ConvNet
from hidden_core.models.mlp import MLP
from hidden_core.models.resnet import CifarResNet
from hidden_core.models.scaling import scaled


def mlp_layer_units(config: TrialConfig) -> list[int]:
    """Each hidden layer's units times width: mlp_layer_units if given, else mlp_units for
    every layer."""
    units = config.mlp_layer_units or (config.mlp_units,) * config.depth
    return [scaled(u, config.width) for u in units]


def build_architecture(config: TrialConfig) -> nn.Module:
    info = config.dataset_info
    batchnorm = config.norm == "batchnorm"
    if config.model == "mlp":
        return MLP(info.input_shape, info.num_classes, mlp_layer_units(config), batchnorm)
    if config.model == "convnet":
        return ConvNet(info.input_shape, info.num_classes, config.depth, config.width, batchnorm)
    if config.model == "resnet":
        return CifarResNet(info.input_shape, info.num_classes, config.depth, config.width)
    raise ValueError(f"model: {config.model!r} is not a known model")


__all__ = ["mlp_layer_units", "MLP", "ConvNet", "CifarResNet", "build_architecture", "scaled"]
