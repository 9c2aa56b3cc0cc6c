"""gem_miner (Sreenivasan et al. 2022, "Rare Gems: Finding Lottery Tickets at Initialization";
reference ksreenivasan/pruning_is_enough @ 8c4c9e8, where Gem-Miner is `algo: hc_iter` with
`hc_quantized: True`). Citations are file:line of that commit.

Search (the first epochs - gem_miner_finetune_epochs epochs): every weight has a score in
[0, 1], drawn U[0, 1] (utils/conv_type.py:128-130). The forward keeps a weight when its score
is above 0.5 and it was never pruned (`flag`): mask = (score > 0.5) * flag (conv_type.py:77,
:173-174). The gradient reaches the scores straight through the rounding, times the flag
(conv_type.py:87-90, :174): dL/ds = dL/dw_eff * w * flag. After every optimizer step the scores
are clamped to [0, 1] (trainers/default.py:52-57). The loss adds lambda * ||s||_2^2 over every
layer's scores (utils/net_utils.py:704-713; L1: :715-724). Every gem_miner_period epochs
(after 1-based epochs T+1, 2T+1, ...: main.py:203 with 0-based `epoch % T == 0 and epoch != 0`)
the scores still flagged are pooled over all layers and the lowest ceil(rate * active) are
pruned for good (BottomK, net_utils.py:456-503: flag &= |s| > the n-th smallest active score,
so ties at that score go too), with rate = 1 - k^(1 / floor((search_epochs - 1) / T))
(net_utils.py:791-802), so that about k of the weights are left after the last prune.

Fine-tuning (optional, the last gem_miner_finetune_epochs epochs; the reference's is as long
as its search, main_utils.py:317): the found subnetwork's weights are trained from their random
values under a fixed mask: every weight never pruned by BottomK (gem_miner_unflag, the
reference's unflag_before_finetune, main_utils.py:250-253) or the found mask itself. The scores
are frozen and the regularizer is off (main_utils.py:269-272); fine_tune_wd is applied as its
SGD does (coupled L2, 0.5 * wd * ||w||^2 in the loss gives exactly SGD's and Adam's weight_decay
term). The subnet file then keeps the fine-tune mask and the float32 values of its kept weights
(as lottery_ticket's); without fine-tuning, the found mask alone (1 bit per weight).

Where the reference differs and we do not follow (docs/methods.md, "gem_miner"): at k = 1 its
BottomK prunes everything (ceil(0) = 0 indexes the largest score) while we prune nothing; its
"every weight pruned" rescue (main.py:231-241, prune to the target and stop the search early)
is not reproduced (a search stops only at its epoch count here).
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
    freeze,
    kept_values_weight,
    masked_weight,
    numpy_of,
    on_device,
    parametrization_of,
    weight_layers,
)

# hc_quantized's quantize_threshold (args_helper.py:678-683, 0.5 in every Gem-Miner config):
# a weight is in the mask when its score is strictly above it.
QUANTIZE_THRESHOLD = 0.5


def prune_rate(keep_fraction: float, search_epochs: int, period: int) -> float:
    """The fraction of the active scores each prune removes (net_utils.py:791-802, in numpy as
    there): (1 - rate)^prunes = k with prunes = floor((search_epochs - 1) / period)."""
    prunes = (search_epochs - 1) // period
    if prunes < 1 or keep_fraction >= 1:
        return 0.0
    return float(1 - np.exp(np.log(keep_fraction) / prunes))


def prunes_after(epoch: int, search_epochs: int, period: int) -> bool:
    """main.py:203: after 0-based epoch e with e % T == 0 and e != 0, i.e. 1-based epoch e + 1."""
    return 1 < epoch <= search_epochs and (epoch - 1) % period == 0


def _sync_tuning(module: GemMinerMask, _incompatible_keys) -> None:
    """After a checkpoint is loaded: the Python mirror of the loaded phase."""
    module.tuning = bool(module.tuning_flag)


class GemMinerMask(WeightParametrization):
    """Scores in [0, 1] and the never-pruned flag; with fine-tuning also the trained copy of the
    weight and the fine-tune mask."""

    def __init__(self, scores: torch.Tensor, original: torch.Tensor, fine_tunes: bool):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.register_buffer("flag", torch.ones_like(scores, dtype=torch.bool))
        self.fine_tunes = fine_tunes
        # which network the layer is: a buffer so a checkpoint keeps it, mirrored in a Python
        # bool so the forward reads no device tensor (a host sync per layer on a GPU)
        self.register_buffer("tuning_flag", torch.zeros((), dtype=torch.bool))
        self.tuning = False
        self.register_load_state_dict_post_hook(_sync_tuning)
        # True from the switch to fine-tuning until the next training forward: the evaluation of
        # the search's last epoch still shows the found subnetwork (the "rare gem" before any
        # weight training, what the reference's search loop reports, main.py:175-188).
        self.show_found = False
        if fine_tunes:
            # learns from the start so the optimizer holds it; its .grad stays None (SGD and Adam
            # skip it) until the fine-tune forward uses it
            self.trained = nn.Parameter(original.detach().clone())
            self.register_buffer("tuned_mask", torch.zeros_like(scores, dtype=torch.bool))

    def found_mask(self) -> torch.Tensor:
        return (self.scores.detach() > QUANTIZE_THRESHOLD) & self.flag

    def mask(self) -> torch.Tensor:
        return self.tuned_mask if self.tuning else self.found_mask()

    def forward(self, original):
        if self.training:
            self.show_found = False
        if self.tuning and not self.show_found:
            return self.trained * self.tuned_mask
        # original * flag: the straight-through gradient is dL/dw_eff * w * flag (the reference
        # multiplies the rounded scores by flag.data); the forward is original * mask as
        # mask implies flag
        return masked_weight(original * self.flag, self.scores, self.found_mask())

    def state(self, original):
        return self.mask()

    def in_use(self, original):
        return self.mask().sum()

    def file_tensors(self, original):
        mask = self.mask()
        if not self.fine_tunes:
            return {"mask": numpy_of(mask)}
        weights = self.trained if self.tuning else original
        return {"mask": numpy_of(mask), "values": numpy_of(weights.detach()[mask])}

    def file_weight(self, original, stored):
        if not self.fine_tunes:
            return original * on_device(stored["mask"], original).to(original.dtype)
        return kept_values_weight(original, stored)

    @torch.no_grad()
    def start_tuning(self, original: torch.Tensor, unflag: bool) -> None:
        self.tuned_mask.copy_(self.flag if unflag else self.found_mask())
        self.trained.copy_(original)
        self.tuning_flag.fill_(True)
        self.tuning = True
        self.show_found = True


def masks_of(model: nn.Module) -> list[GemMinerMask]:
    return [parametrization_of(layer) for layer in weight_layers(model)]


@torch.no_grad()
def bottom_k_prune(parts: list[GemMinerMask], rate: float) -> None:
    """BottomK over all layers (net_utils.py:456-503): n = ceil(rate * active); the threshold is
    the n-th smallest |score| among the active ones; a weight stays active only when its |score|
    is strictly above it."""
    active = torch.cat([p.scores.detach().abs()[p.flag] for p in parts])
    n = math.ceil(rate * active.numel())
    if n == 0:
        return
    threshold = active.kthvalue(n).values
    for p in parts:
        p.flag &= p.scores.detach().abs() > threshold


class GemMiner(Method):
    name = "gem_miner"

    @property
    def search_epochs(self) -> int:
        return self.config.epochs - self.config.gem_miner_finetune_epochs

    def apply(self, model, generator):
        freeze(model)
        fine_tunes = self.config.gem_miner_finetune_epochs > 0
        for layer in weight_layers(model):
            scores = torch.rand(layer.weight.shape, generator=generator).to(layer.weight.device)  # U[0, 1)
            attach(layer, GemMinerMask(scores, layer.weight, fine_tunes))

    def optimized(self, model):
        return [q for p in masks_of(model) for q in p.parameters()]

    def params_learned(self, model):
        parts = masks_of(model)
        scores = sum(p.scores.numel() for p in parts)
        return scores + sum(int(p.tuned_mask.sum()) for p in parts if p.fine_tunes)

    def penalty(self, model):
        parts = masks_of(model)
        if parts[0].tuning:
            wd = self.config.gem_miner_finetune_weight_decay
            return None if wd == 0 else 0.5 * wd * sum(p.trained.square().sum() for p in parts)
        lam = self.config.gem_miner_lambda
        if lam == 0:
            return None
        if self.config.gem_miner_regularizer == "L1":
            return lam * sum(p.scores.abs().sum() for p in parts)
        return lam * sum(p.scores.square().sum() for p in parts)

    @torch.no_grad()
    def after_step(self, model, step):
        for p in masks_of(model):
            if not p.tuning:
                p.scores.clamp_(0.0, 1.0)

    @torch.no_grad()
    def after_epoch(self, model, epoch):
        parts = masks_of(model)
        period = self.config.gem_miner_period
        if prunes_after(epoch, self.search_epochs, period):
            bottom_k_prune(parts, prune_rate(self.config.keep_fraction, self.search_epochs, period))
        if parts[0].fine_tunes and epoch == self.search_epochs:
            for layer, p in zip(weight_layers(model), parts, strict=True):
                p.start_tuning(layer.parametrizations.weight.original, self.config.gem_miner_unflag)


METHOD = GemMiner
