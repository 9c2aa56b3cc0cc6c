"""Methods: one file each (its class is the file's METHOD), one registry line each in
hidden_core/catalog.py. A method never touches a model's code: it re-parametrizes the
weights of a built network (torch.nn.utils.parametrize)."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from hidden_core.catalog import METHODS, method_info
from hidden_core.config import TrialConfig
from hidden_core.distributions import init_weights, norm_layers, weight_layers
from hidden_core.methods.base import Method, original_weight, weight_state, weights_in_use
from hidden_core.models import build_architecture
from hidden_core.records import (
    CHANGED_FRACTION,
    DENSITY,
    DISABLED_FEATURES,
    PARAMS_ACTIVE,
    PARAMS_LEARNED,
    PARAMS_TOTAL,
)

# A BatchNorm feature is "disabled" when |gamma| < 0.01: Frankle, Schwab & Morcos 2021
# (arXiv:2003.00152, ICLR 2021), Section 5, where gamma that close to zero is what lets
# BN-only training switch random features off (docs/methods.md, "Statistics").
DISABLED_GAMMA = 0.01


def method_class(name: str) -> type[Method]:
    """The Method class of `name`: the METHOD of the file its registry line names."""
    cls = importlib.import_module(method_info(name).module).METHOD
    assert cls.name == name, f"{method_info(name).module}.METHOD is {cls.name!r}, its registry line says {name!r}"
    return cls


class HiddenNetwork(nn.Module):
    """A built architecture plus the method that decides what of it is learned."""

    def __init__(self, net: nn.Module, method: Method):
        super().__init__()
        self.net = net
        self.method = method

    @property
    def classifier(self) -> nn.Module:
        return self.net.classifier

    def forward(self, x):
        return self.net(x)

    def penalty(self) -> torch.Tensor | None:
        return self.method.penalty(self.net)

    def optimized(self) -> list[nn.Parameter]:
        return self.method.optimized(self.net)

    def after_step(self, step: int) -> None:
        self.method.after_step(self.net, step)

    def after_epoch(self, epoch: int) -> None:
        self.method.after_epoch(self.net, epoch)

    @torch.no_grad()
    def weight_states(self) -> list[torch.Tensor]:
        """Per weight layer, the state that changed_fraction compares with the start."""
        return [weight_state(layer).clone() for layer in weight_layers(self.net)]

    @torch.no_grad()
    def statistics(self, initial_states: list[torch.Tensor] | None = None) -> dict[str, float | int]:
        """params_total/active/learned, density (weights in use / weights),
        changed_fraction (weights whose state differs from `initial_states`) and
        disabled_features (fraction of BatchNorm features with |gamma| < DISABLED_GAMMA; NaN
        without BatchNorm). All describe the network evaluation uses (docs/methods.md)."""
        layers = weight_layers(self.net)
        weights = sum(original_weight(layer).numel() for layer in layers)
        norms = norm_layers(self.net)
        norm_params = sum(p.numel() for bn in norms for p in (bn.weight, bn.bias) if p is not None)
        norm_params += sum(layer.bias.numel() for layer in layers if layer.bias is not None)  # the ResNet classifier's
        gammas = [bn.weight.detach().abs().flatten().to("cpu") for bn in norms if bn.weight is not None]
        in_use = torch.stack([weights_in_use(layer).to("cpu") for layer in layers]).sum().item()
        stats: dict[str, float | int] = {
            PARAMS_TOTAL: int(weights + norm_params),
            PARAMS_ACTIVE: int(in_use + norm_params),
            PARAMS_LEARNED: int(self.method.params_learned(self.net)),
            DENSITY: in_use / weights,
            DISABLED_FEATURES: float((torch.cat(gammas) < DISABLED_GAMMA).double().mean()) if gammas else float("nan"),
        }
        if initial_states is not None:
            changed = sum((weight_state(layer) != start).sum().to("cpu") for layer, start in zip(layers, initial_states, strict=True))
            stats[CHANGED_FRACTION] = float(changed) / weights
        return stats


def build_model(config: TrialConfig, device: torch.device | str = "cpu") -> HiddenNetwork:
    """The trial's network at its initialization: architecture, weights drawn from
    config.weight_dist with seed config.seed, re-parametrized by config.method. The same
    config always gives the same network, on any device."""
    method = method_class(config.method)(config)
    net = build_architecture(config)
    generator = torch.Generator().manual_seed(config.seed)
    init_weights(net, config, method.fan_scale(), generator)
    net.to(device)
    method.apply(net, generator)
    return HiddenNetwork(net, method)


__all__ = ["DISABLED_GAMMA", "METHODS", "HiddenNetwork", "Method", "build_model", "method_class"]
