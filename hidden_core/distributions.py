"""Named distributions for the frozen weights (docs/methods.md, "Weight distributions"), and
the initial values of the other parameters (biases, BatchNorm).

Every draw uses an explicit CPU generator so the same seed gives the same network on any
device, and nothing here touches the global RNG that training uses.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hidden_core.catalog import method_info
from hidden_core.config import TrialConfig

RELU_GAIN = math.sqrt(2.0)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear or ConvNd weight."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def draw(shape: torch.Size, fan_in: float, fan_out: float, config: TrialConfig, generator: torch.Generator) -> torch.Tensor:
    """One tensor of `shape` from config.weight_dist. fan_in/fan_out may already be scaled
    by the kept fraction (scale_fan)."""
    dist = config.weight_dist
    if dist == "kaiming_normal":
        return torch.randn(shape, generator=generator) * (RELU_GAIN / math.sqrt(fan_in))
    if dist == "kaiming_uniform":
        bound = RELU_GAIN * math.sqrt(3.0 / fan_in)
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    if dist == "signed_constant":
        return _random_signs(shape, 0.5, generator) * (RELU_GAIN / math.sqrt(fan_in))
    if dist == "unsigned_constant":
        return torch.full(shape, RELU_GAIN / math.sqrt(fan_in))
    if dist == "xavier_normal":
        return torch.randn(shape, generator=generator) * math.sqrt(2.0 / (fan_in + fan_out))
    if dist == "xavier_constant":
        return _random_signs(shape, 0.5, generator) * math.sqrt(2.0 / (fan_in + fan_out))
    if dist == "asymmetric_constant":
        return _random_signs(shape, config.dist_p, generator) * (RELU_GAIN / math.sqrt(fan_in))
    if dist == "binary":
        return _random_signs(shape, 0.5, generator) * config.dist_scale
    if dist == "uniform":
        return config.dist_low + torch.rand(shape, generator=generator) * (config.dist_high - config.dist_low)
    if dist == "normal":
        return config.dist_mean + torch.randn(shape, generator=generator) * config.dist_std
    raise ValueError(f"weight_dist: {dist!r} is not a known distribution")


def _random_signs(shape: torch.Size, p_positive: float, generator: torch.Generator) -> torch.Tensor:
    return torch.where(torch.rand(shape, generator=generator) < p_positive, 1.0, -1.0)


@torch.no_grad()
def init_weights(model: nn.Module, config: TrialConfig, fan_scale: float, generator: torch.Generator) -> None:
    """Draw every Linear/Conv weight of `model` from config.weight_dist.

    fan_scale multiplies the fans (scale_fan: the kept fraction k, so the kept subnetwork has
    the usual activation scale; docs/methods.md's convention fan*k, not the reference's
    fan*(1-k)).

    Biases (only the ResNet classifier has one) keep torch's Linear default
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from `generator`: open_lth's initializers
    (models/initializers.py) set only `.weight`. BatchNorm: gamma ~ U[0, 1), beta = 0 for
    bn_only on any model and for the BN-only paper's baselines (dense, random_features) on the
    ResNet, open_lth's model (models/bn_initializers.py `uniform`, the default batchnorm_init
    of cifar_resnet.py default_hparams); gamma = 1, beta = 0 otherwise, which the masked
    methods freeze: hidden-networks' NonAffineBatchNorm (utils/bn_type.py).
    """
    for layer in weight_layers(model):
        fan_in, fan_out = fans(layer.weight)
        values = draw(layer.weight.shape, fan_in * fan_scale, fan_out * fan_scale, config, generator)
        layer.weight.copy_(values.to(layer.weight.dtype))
    for layer in weight_layers(model):
        if layer.bias is not None:
            bound = 1.0 / math.sqrt(fans(layer.weight)[0])
            layer.bias.copy_(((torch.rand(layer.bias.shape, generator=generator) * 2 - 1) * bound).to(layer.bias.dtype))
    info = method_info(config.method)  # its registry line: does its BatchNorm start as open_lth's?
    if info.needs_batchnorm or (config.model == "resnet" and info.open_lth_bn_init):
        for bn in norm_layers(model):
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=generator).to(bn.weight.dtype))
            bn.bias.zero_()


WEIGHT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORM_LAYER_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


def norm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, NORM_LAYER_TYPES)]
