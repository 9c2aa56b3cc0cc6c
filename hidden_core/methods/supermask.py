"""supermask (Zhou et al. 2019): one logit per weight; training samples
mask ~ Bernoulli(sigmoid(logit)) every forward, with a straight-through gradient.

Evaluation (eval mode) uses the EXPECTED mask: w * sigmoid(logit), deterministic. The
weights counted "in use" and the state compared for changed_fraction are those with
sigmoid(logit) >= 0.5."""

from __future__ import annotations

import math

import torch
from torch import nn

from hidden_core.methods.base import Method, WeightParametrization, attach, freeze, weight_layers


class BernoulliMask(WeightParametrization):
    def __init__(self, shape: torch.Size, init_keep: float, device: torch.device):
        super().__init__()
        init_keep = min(init_keep, 1 - 1e-6)
        self.logits = nn.Parameter(torch.full(shape, math.log(init_keep / (1 - init_keep)), device=device))

    def forward(self, weight):
        p = torch.sigmoid(self.logits)
        if not self.training:
            return weight * p
        sample = torch.bernoulli(p.detach())
        # forward value: the sample; gradient: straight through to p (hence to the logit)
        return weight * (sample + p - p.detach())

    def state(self, original):
        return self.logits.detach() >= 0

    def in_use(self, original):
        return (self.logits.detach() >= 0).sum()


class Supermask(Method):
    name = "supermask"

    def fan_scale(self):
        return self.config.supermask_init_keep if self.config.scale_fan else 1.0

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            attach(layer, BernoulliMask(layer.weight.shape, self.config.supermask_init_keep, layer.weight.device))
