"""learn_fraction (Rosenfeld & Tsotsos 2019): a random fraction k of each layer's weights,
chosen once from the seed, is trained; every other weight stays at its initial value.

The learned entries live in their own tensor and the forward picks them with the fixed
subset, so neither weight decay nor momentum can ever move a frozen weight."""

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
    weight_layers,
)


class LearnedSubset(WeightParametrization):
    elementwise = True  # a vectorized cell calls it once on the stacked seeds

    def __init__(self, weight: torch.Tensor, keep_fraction: float, generator: torch.Generator):
        super().__init__()
        n = weight.numel()
        chosen = torch.randperm(n, generator=generator)[: max(1, round(keep_fraction * n))]
        subset = torch.zeros(n, dtype=torch.bool)
        subset[chosen] = True
        self.register_buffer("subset", subset.view(weight.shape).to(weight.device))
        self.values = nn.Parameter(weight.detach().clone())

    def forward(self, weight):
        return torch.where(self.subset, self.values, weight)

    def file_tensors(self, original):
        return {"values": numpy_of(self.values[self.subset])}  # in the subset's flat order; the subset comes from the seed

    def file_weight(self, original, stored):
        kept = int(self.subset.sum())
        if stored["values"].size != kept:
            raise ValueError(f"{stored['values'].size} values for a learned subset of {kept} weights")
        values = original.clone()
        values[self.subset] = on_device(stored["values"], original)
        return torch.where(self.subset, values, original)


class LearnFraction(Method):
    name = "learn_fraction"

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            attach(layer, LearnedSubset(layer.weight, self.config.keep_fraction, generator))

    def params_learned(self, model):
        return int(sum(parametrization_of(layer).subset.sum() for layer in weight_layers(model)))


METHOD = LearnFraction
