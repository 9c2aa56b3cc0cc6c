"""edge_popup (Ramanujan et al. 2020): one real score per weight; the forward keeps the
weights whose |score| is in the top k of their layer; the gradient reaches the scores
straight through the mask. Every Linear/Conv layer is masked (first and last too), weights
and BatchNorm affine parameters are frozen."""

from __future__ import annotations

import torch
from torch import nn

from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    freeze,
    kaiming_uniform_scores,
    masked_weight,
    weight_layers,
)

# How the k-th largest |score| is found, per device type. A selection beats a full sort on
# the CPU; `make bench` measures all three per device (benchmarks/bench_methods.py).
SELECTION: dict[str, str] = {"cpu": "kthvalue", "cuda": "kthvalue", "mps": "sort"}


def top_k_threshold(magnitudes: torch.Tensor, kept: int) -> torch.Tensor:
    """The smallest magnitude that is kept, as a 0-dim tensor on the scores' device (no
    host sync). `magnitudes` is flat."""
    how = SELECTION.get(magnitudes.device.type, "kthvalue")
    n = magnitudes.numel()
    if how == "kthvalue":
        return magnitudes.kthvalue(n - kept + 1).values
    if how == "topk":
        return magnitudes.topk(kept, sorted=False).values.min()
    return magnitudes.sort().values[n - kept]


class TopKMask(WeightParametrization):
    def __init__(self, scores: torch.Tensor, keep_fraction: float):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.kept = max(1, round(keep_fraction * scores.numel()))

    def mask(self, magnitudes: torch.Tensor | None = None) -> torch.Tensor:
        magnitudes = self.scores.detach().abs() if magnitudes is None else magnitudes.detach()
        return magnitudes >= top_k_threshold(magnitudes.view(-1), self.kept)

    def forward(self, weight):
        # Ranked by |score|: the gradient reaches the score through abs (times its sign), as
        # in the reference, where GetSubnet is applied to scores.abs().
        magnitudes = self.scores.abs()
        return masked_weight(weight, magnitudes, self.mask(magnitudes))

    def state(self, original):
        return self.mask()

    def in_use(self, original):
        return self.mask().sum()


class EdgePopup(Method):
    name = "edge_popup"

    def fan_scale(self):
        return self.config.keep_fraction if self.config.scale_fan else 1.0

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            attach(layer, TopKMask(kaiming_uniform_scores(layer.weight, generator), self.config.keep_fraction))
