"""What every method shares: the Method interface, weight parametrizations, and the
straight-through masked product used by the score-based methods."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from hidden_core.config import TrialConfig
from hidden_core.distributions import norm_layers, weight_layers
from hidden_core.subnet.fileformat import Packed


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

    def optimized(self, model: nn.Module) -> list[nn.Parameter]:
        """What the optimizer holds: by default every parameter that learns at the start. A
        method that switches what learns between epochs (after_epoch) returns them all; SGD
        and Adam skip a parameter whose .grad stays None."""
        return [p for p in model.parameters() if p.requires_grad]

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step; `step` counts this training's steps from 1 and
        continues across a resume, so what this does must follow from the model's state, the
        config and `step` alone (randomness from a generator seeded by them, never a
        stateful one): a resumed trial then is the uninterrupted one."""
        return None

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        """Called after each epoch's steps (epoch counts from 1), before evaluation."""
        return None


class WeightParametrization(nn.Module):
    """A learned re-parametrization of one frozen weight tensor (`original`)."""

    # Its forward is elementwise in all of its tensors: called once on the stacked (seed, ...)
    # tensors of a vectorized cell, it gives every seed's own effective weight.
    elementwise: ClassVar[bool] = False

    def batched_weight(self, original: torch.Tensor, own: dict[str, torch.Tensor], training: bool,
                       generators: list[torch.Generator], per_seed: list[WeightParametrization]) -> torch.Tensor | None:
        """Its batched form: the effective weights of a vectorized cell's seeds at once, from
        the stacked (seed, ...) `original` and its own tensors `own` (attribute -> stack),
        each seed's generator and each seed's own instance (`per_seed`: their fixed
        attributes). None: no batched form (elementwise, or the forward once per seed)."""
        return None

    def state(self, original: torch.Tensor) -> torch.Tensor:
        """The discrete state compared with the start for changed_fraction."""
        return self(original).detach()

    def in_use(self, original: torch.Tensor) -> torch.Tensor:
        """Number of weights the network uses (a 0-dim tensor)."""
        return torch.tensor(original.numel())

    def file_tensors(self, original: torch.Tensor) -> dict[str, np.ndarray | Packed]:
        """What a subnet file keeps of this layer, by kind (a lowercase word): a bool array of
        the layer's shape is stored bit-packed, Packed(uints, bits) in `bits` bits per entry,
        any other array as it is. The random weights are never stored (the seed regenerates
        them)."""
        raise NotImplementedError(f"{type(self).__name__} does not say what a subnet file keeps of its layer")

    def file_weight(self, original: torch.Tensor, stored: dict[str, np.ndarray]) -> torch.Tensor:
        """The effective weight rebuilt from a file's arrays of this layer (packed kinds
        unpacked to the layer's shape) and the seed's `original`; ValueError when they do
        not fit. The controls call it with a replaced mask or sign."""
        raise NotImplementedError(f"{type(self).__name__} cannot rebuild its layer from a subnet file")


def on_device(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A file's array as a tensor on `like`'s device (bool and integer arrays keep their
    dtype; floats take `like`'s)."""
    t = torch.from_numpy(np.asarray(array, order="C")).to(like.device)
    return t.to(like.dtype) if t.is_floating_point() else t


def numpy_of(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu").contiguous().numpy()


def masked_file_weight(original: torch.Tensor, stored: dict[str, np.ndarray]) -> torch.Tensor:
    """original * the stored mask: what every mask method's file rebuilds."""
    return original * on_device(stored["mask"], original).to(original.dtype)


def kept_values_weight(original: torch.Tensor, stored: dict[str, np.ndarray]) -> torch.Tensor:
    """Zero but at the stored mask, where the stored trained values stand (in the mask's flat
    order): what a file of a method that trained its kept weights rebuilds (lottery_ticket,
    Gem-Miner fine-tuned). ValueError when the counts differ."""
    mask = on_device(stored["mask"], original)
    values = on_device(stored["values"], original).reshape(-1)
    if values.numel() != int(mask.sum()):
        raise ValueError(f"{values.numel()} values for a mask keeping {int(mask.sum())} weights")
    weight = torch.zeros_like(original)
    weight[mask] = values
    return weight


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
    "Packed",
    "kept_values_weight",
    "masked_file_weight",
    "numpy_of",
    "on_device",
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
