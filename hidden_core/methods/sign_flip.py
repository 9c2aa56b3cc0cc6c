"""sign_flip (Ivan & Florian 2020): weight magnitudes frozen, one score per weight,
effective weight = |w| * sign(score); scores start with the weight's sign, so training
starts from the initial network. The reference (training-neural-connectivities Functions.py
`flip`, Layers.py:65) computes w * sign(s_ref) with s_ref ~ U(0.01, 0.1) and an identity
backward; ours is s = sign(w) * s_ref, the same forward, and the same update under SGD and
Adam (both act per element and are odd in the gradient's sign). Optional "min flipping" penalty alpha * mean(kept sign)
per layer (alpha = -1 changes as few signs as possible)."""

from __future__ import annotations

import torch
from torch import nn

from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    freeze,
    numpy_of,
    on_device,
    parametrization_of,
    reference_uniform_scores,
    weight_layers,
)


def _signs(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


class _SignedMagnitude(torch.autograd.Function):
    """|w| * sign(s) forward; straight-through gradient dL/ds = dL/dw_eff * |w|."""

    @staticmethod
    def forward(ctx, magnitude, scores):
        ctx.save_for_backward(magnitude)
        return magnitude * _signs(scores)

    @staticmethod
    def backward(ctx, grad):
        (magnitude,) = ctx.saved_tensors
        return None, grad * magnitude


class LearnedSign(WeightParametrization):
    elementwise = True  # a vectorized cell calls it once on the stacked seeds

    def __init__(self, scores: torch.Tensor):
        super().__init__()
        self.scores = nn.Parameter(scores)

    def forward(self, weight):
        return _SignedMagnitude.apply(weight.abs(), self.scores)

    def state(self, original):
        return _signs(self.scores.detach())

    def file_tensors(self, original):
        return {"sign": numpy_of(self.scores >= 0)}  # _signs: t >= 0 -> +1

    def file_weight(self, original, stored):
        return original.abs() * torch.where(on_device(stored["sign"], original), 1.0, -1.0).to(original.dtype)

    def kept_sign_fraction_st(self, original: torch.Tensor) -> torch.Tensor:
        start = _signs(original)
        kept = (_signs(self.scores.detach()) == start).float()
        return (kept + (self.scores - self.scores.detach()) * start).mean()


class SignFlip(Method):
    name = "sign_flip"

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            magnitudes = reference_uniform_scores(layer.weight, generator)
            attach(layer, LearnedSign(magnitudes * _signs(layer.weight.detach())))

    def penalty(self, model):
        if self.config.penalty == 0:
            return None
        return self.config.penalty * sum(
            parametrization_of(layer).kept_sign_fraction_st(layer.parametrizations.weight.original) for layer in weight_layers(model)
        )


METHOD = SignFlip
