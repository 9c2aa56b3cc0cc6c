"""lottery_ticket (Frankle & Carbin 2019; open_lth): iterative magnitude pruning with
rewinding. Every weight and BatchNorm parameter is trained, as in `dense`, through a fixed
0/1 mask per weight layer; between levels the level loop (hidden_core/lottery.py) prunes
the smallest-magnitude surviving weights and rewinds the survivors.

This file holds the method's semantics: the parametrization, how many weights each level
keeps, which ones (magnitude pruning, per layer or global), and the random-pruning control.

Counting, exactly as the references (both prune one weight more than the fraction says,
because they keep only weights strictly above the magnitude at the cutoff index):
- `global`: open_lth's `sparse_global` (pruning/sparse_global.py): ceil(rate * remaining) + 1
  weights pruned from every weight layer's survivors pooled (output layer included, as
  `sparse_global` with no layers ignored);
- `layer`: Frankle & Carbin's `prune_by_percent` (google-research/lottery-ticket-hypothesis,
  foundations/pruning.py): round(rate * remaining) + 1 pruned in each layer on its own
  (numpy's round, half to even). The extra weight per level compounds: a 290-weight layer
  keeps 14 weights after 12 levels at rate 0.2, where 0.8^12 * 290 = 20.
No level prunes below the final count, and the last level prunes to exactly round(k * n)
weights (per layer, or in total for `global`), k = keep_fraction as everywhere. Every layer
is pruned at the same rate, the output layer too: the LTH papers' halved output rate is not
used, so that a ticket at k has edge_popup's per-layer density at k. Ties in magnitude
(absent from trained float weights) are broken by position, so counts are always exact
where the references would prune every tied weight.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    kept_values_weight,
    numpy_of,
    parametrization_of,
    weight_layers,
)


class PrunableWeight(WeightParametrization):
    """The layer's weight is `trained * mask`. `trained` is the learned copy of the weight;
    the original stays frozen at its initialization (the supermask control and rewinding to
    epoch 0 read it). Pruned entries of `trained` are zero and stay exactly zero: their
    gradient is zero through the mask and weight decay of zero is zero (SGD with momentum and
    Adam alike)."""

    def __init__(self, original: torch.Tensor):
        super().__init__()
        self.trained = nn.Parameter(original.detach().clone())
        self.register_buffer("mask", torch.ones_like(original, dtype=torch.bool))

    def forward(self, original):
        return self.trained * self.mask

    def in_use(self, original):
        return self.mask.sum()

    def file_tensors(self, original):
        # the final ticket's mask, and the trained values of its kept weights in the mask's flat order
        return {"mask": numpy_of(self.mask), "values": numpy_of(self.trained[self.mask])}

    def file_weight(self, original, stored):
        return kept_values_weight(original, stored)

    @torch.no_grad()
    def reset(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        """Weights `values` under `mask` (pruned entries set to zero)."""
        self.mask.copy_(mask)
        self.trained.copy_(values * mask)


class LotteryTicket(Method):
    name = "lottery_ticket"

    def apply(self, model, generator):
        for p in model.parameters():
            p.requires_grad_(True)
        for layer in weight_layers(model):
            attach(layer, PrunableWeight(layer.weight))

    def params_learned(self, model):
        weights = {id(parametrization_of(layer).trained) for layer in weight_layers(model)}
        others = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in weights)
        return others + sum(int(parametrization_of(layer).mask.sum()) for layer in weight_layers(model))


METHOD = LotteryTicket


# ---- how many weights each level keeps ----------------------------------------------------


def level_count(keep_fraction: float, prune_rate: float) -> int:
    """Pruned levels to reach keep_fraction: ceil(log k / log(1 - rate)); 0 for k = 1. The
    tolerance keeps k = (1 - rate)^L (up to rounding) at L levels, not L + 1."""
    if keep_fraction >= 1:
        return 0
    return max(1, math.ceil(math.log(keep_fraction) / math.log(1 - prune_rate) - 1e-9))


def target_count(n: int, keep_fraction: float) -> int:
    """Weights kept out of n at the last level: round(k * n), at least one (edge_popup's count)."""
    return max(1, round(keep_fraction * n))


def next_count(remaining: int, prune_rate: float, target: int, last: bool, scope: str) -> int:
    """Weights kept after one more level: the reference's count (see the module docstring),
    never below the target; exactly the target at the last level."""
    if last:
        return target
    fraction = np.ceil(prune_rate * remaining) if scope == "global" else np.round(prune_rate * remaining)
    return max(target, remaining - int(fraction) - 1)


def prune_smallest(magnitudes: torch.Tensor, alive: torch.Tensor, keep: int) -> torch.Tensor:
    """The `keep` largest magnitudes among the `alive` entries (flat tensors), as a new bool
    mask; a subset of `alive`. Ties are broken by position (stable sort)."""
    alive_count = int(alive.sum())
    if keep >= alive_count:
        return alive.clone()
    values = magnitudes.detach().to(torch.float64).clone()
    values[~alive] = math.inf  # never among the smallest: pruned weights stay pruned
    order = torch.sort(values, stable=True).indices
    new = alive.clone()
    new[order[: alive_count - keep]] = False
    return new


def magnitude_masks(weights: list[torch.Tensor], masks: list[torch.Tensor], keep: list[int] | int, scope: str) -> list[torch.Tensor]:
    """The next level's masks from the trained `weights` and current `masks` (per layer, any
    device; returned on the CPU). `keep`: kept count per layer (scope 'layer') or in total
    (scope 'global')."""
    magnitudes = [w.detach().abs().reshape(-1).cpu() for w in weights]
    alive = [m.reshape(-1).cpu().bool() for m in masks]
    if scope == "layer":
        new = [prune_smallest(mag, a, k) for mag, a, k in zip(magnitudes, alive, keep, strict=True)]
    else:
        pooled = prune_smallest(torch.cat(magnitudes), torch.cat(alive), int(keep))
        new = list(pooled.split([a.numel() for a in alive]))
    return [n.reshape(m.shape) for n, m in zip(new, masks, strict=True)]


def level_keep_counts(sizes: list[int], keep_fraction: float, prune_rate: float, scope: str) -> list[list[int] | int]:
    """Kept weights after each level 0..L (level 0: everything): per layer for 'layer', the
    total for 'global'. The counts are what the masks hold exactly."""
    levels = level_count(keep_fraction, prune_rate)
    if scope == "layer":
        counts: list = [list(sizes)]
        targets = [target_count(n, keep_fraction) for n in sizes]
        for level in range(1, levels + 1):
            counts.append([next_count(r, prune_rate, t, level == levels, scope) for r, t in zip(counts[-1], targets, strict=True)])
        return counts
    total = sum(sizes)
    target = target_count(total, keep_fraction)
    counts = [total]
    for level in range(1, levels + 1):
        counts.append(next_count(counts[-1], prune_rate, target, level == levels, scope))
    return counts


def shuffled_masks(masks: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Random pruning at the same per-layer density: each layer's mask permuted at random
    (open_lth's randomly_prune branch, strategy 'layerwise')."""
    out = []
    for m in masks:
        flat = m.reshape(-1).cpu()
        out.append(flat[torch.randperm(flat.numel(), generator=generator)].reshape(m.shape))
    return out


def layer_masks(model: nn.Module) -> list[torch.Tensor]:
    return [parametrization_of(layer).mask.detach().to("cpu", copy=True) for layer in weight_layers(model)]


def trained_weights(model: nn.Module) -> list[torch.Tensor]:
    return [parametrization_of(layer).trained.detach() for layer in weight_layers(model)]
