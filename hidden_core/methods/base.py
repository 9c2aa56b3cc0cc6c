"""What every method shares: the Method interface, weight parametrizations, and the
straight-through masked product used by the score-based methods."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from hidden_core.config import TrialConfig
from hidden_core.distributions import norm_layers, weight_layers


class Method(ABC):
    """Turns a built, initialized network into "what is learned" and "what is frozen"."""

    name: ClassVar[str]

    def __init__(self, config: TrialConfig):
        self.config = config

    def fan_scale(self) -> float:
        """Factor on the fans of the weight distribution when scale_fan is set."""
        return 1.0

    @abstractmethod
    def apply(self, model: nn.Module, generator: torch.Generator) -> None:
        """Freeze, re-parametrize and re-initialize `model` in place."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """Extra loss term added every step (None: nothing)."""
        return None

    def params_learned(self, model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)


class WeightParametrization(nn.Module):
    """A learned re-parametrization of one frozen weight tensor (`original`)."""

    def state(self, original: torch.Tensor) -> torch.Tensor:
        """The discrete state compared with the start for changed_fraction."""
        return self(original).detach()

    def in_use(self, original: torch.Tensor) -> torch.Tensor:
        """Number of weights the network uses (a 0-dim tensor)."""
        return torch.tensor(original.numel())


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def attach(layer: nn.Module, parametrization: WeightParametrization) -> None:
    """Re-parametrize layer.weight; the original weight stays frozen and bit-identical."""
    parametrize.register_parametrization(layer, "weight", parametrization)
    layer.parametrizations.weight.original.requires_grad_(False)


def parametrization_of(layer: nn.Module) -> WeightParametrization | None:
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight[0]
    return None


def original_weight(layer: nn.Module) -> torch.Tensor:
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


def weight_state(layer: nn.Module) -> torch.Tensor:
    p = parametrization_of(layer)
    return p.state(original_weight(layer)) if p is not None else layer.weight.detach()


def weights_in_use(layer: nn.Module) -> torch.Tensor:
    p = parametrization_of(layer)
    return p.in_use(original_weight(layer)) if p is not None else torch.tensor(layer.weight.numel())


def kaiming_uniform_scores(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """edge-popup's score init: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    bound = 1.0 / math.sqrt(weight.shape[1] * receptive)
    return ((torch.rand(weight.shape, generator=generator) * 2 - 1) * bound).to(weight.device)


# Ivan & Florian's score init (training-neural-connectivities Layers.py:11-12 and :65,
# RandomUniform(minval=0.01, maxval=0.1)), for free_prune and sign_flip.
REFERENCE_SCORE_LOW, REFERENCE_SCORE_HIGH = 0.01, 0.1


def reference_uniform_scores(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U(0.01, 0.1) per weight (positive: every connection starts kept / unflipped)."""
    u = torch.rand(weight.shape, generator=generator)
    return (REFERENCE_SCORE_LOW + u * (REFERENCE_SCORE_HIGH - REFERENCE_SCORE_LOW)).to(weight.device)


class _MaskedWeight(torch.autograd.Function):
    """weight * mask forward; the gradient passes straight through the mask to the scores:
    dL/ds = dL/dw_eff * w (edge-popup's GetSubnet, and the same estimator for free_prune).
    A custom Function keeps the backward to one multiply and saves no extra tensor."""

    @staticmethod
    def forward(ctx, weight, scores, mask):
        ctx.save_for_backward(weight)
        return weight * mask

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return None, grad * weight, None


def masked_weight(weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _MaskedWeight.apply(weight, scores, mask)


__all__ = [
    "Method",
    "WeightParametrization",
    "attach",
    "freeze",
    "kaiming_uniform_scores",
    "masked_weight",
    "reference_uniform_scores",
    "norm_layers",
    "original_weight",
    "parametrization_of",
    "weight_layers",
    "weight_state",
    "weights_in_use",
]
