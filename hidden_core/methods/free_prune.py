"""free_prune (Ivan & Florian 2020): one score per weight, mask = (score > 0), straight-through
gradient (the reference's `mask`, Functions.py: sign(relu(s)) forward, identity backward).
Scores start at U(0.01, 0.1) as the reference's (Layers.py:11-12, :65), so every connection
is kept at first and the sparsity
emerges from training alone (no k, no cutoff). Optional penalty alpha * mean(mask) per layer;
alpha = -1 is MinPruning (change as few connections as possible)."""

from __future__ import annotations

import torch
from torch import nn

from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    freeze,
    masked_file_weight,
    masked_weight,
    numpy_of,
    parametrization_of,
    reference_uniform_scores,
    weight_layers,
)


class PositiveScoreMask(WeightParametrization):
    elementwise = True  # a vectorized cell calls it once on the stacked seeds

    def __init__(self, scores: torch.Tensor):
        super().__init__()
        self.scores = nn.Parameter(scores)

    def mask(self) -> torch.Tensor:
        return self.scores.detach() > 0

    def forward(self, weight):
        return masked_weight(weight, self.scores, self.mask())

    def state(self, original):
        return self.mask()

    def in_use(self, original):
        return self.mask().sum()

    def file_tensors(self, original):
        return {"mask": numpy_of(self.mask())}

    def file_weight(self, original, stored):
        return masked_file_weight(original, stored)

    def kept_fraction_st(self) -> torch.Tensor:
        """mean(mask) whose gradient flows straight through to the scores."""
        return (self.mask().float() + self.scores - self.scores.detach()).mean()


class FreePrune(Method):
    name = "free_prune"

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            attach(layer, PositiveScoreMask(reference_uniform_scores(layer.weight, generator)))

    def penalty(self, model):
        if self.config.penalty == 0:
            return None
        return self.config.penalty * sum(parametrization_of(layer).kept_fraction_st() for layer in weight_layers(model))


METHOD = FreePrune
