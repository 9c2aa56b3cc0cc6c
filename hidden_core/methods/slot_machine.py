"""slot_machine (Aladago & Torresani, ICML 2021, "Slot Machines: Discovering Winning
Combinations of Random Weights in Neural Networks"): every connection holds K fixed random
values and one learned score per value; the forward uses, per connection, the value its
scores select. Nothing else is learned. Reference: maxwell-aladago/slot-machines
(`selection_engine.py`, `conv2d.py`, `linear.py`; docs/methods.md, "Slot Machines").

- Values (K = `slot_machine_k`): slot 0 is the seed's weight (`original`, drawn from
  config.weight_dist like every method's), slots 1..K-1 are K-1 further draws from the same
  distribution with the layer's fans, from the build's generator. They are regenerated from
  config + seed like every random weight: never stored in a subnet file (a checkpoint
  holds them, as it holds every method's frozen weights). The reference draws all K i.i.d. from Glorot
  uniform U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (conv2d.py:63-67, linear.py:31-34).
- Scores: U(0, a) with that a, whatever weight_dist is (conv2d.py:68, linear.py:35).
- Selection (`slot_machine_selection`): "greedy" uses argmax(scores) (selection_engine.py
  GreedySelection); "probabilistic" draws one index per connection from softmax(scores) at
  every training forward (ProbabilisticSelection), from torch's global RNG like supermask's
  training sample. Evaluation uses the argmax under both rules: the network the reference
  saves (save_slot_checkpoint.py:23), and one fixed network, so `hidden subnet eval`
  reproduces the stored accuracy (the reference also samples when it evaluates "prob").
- Gradient: straight through the one-hot (selection_engine.py, "pass the upstream gradient
  as is"): w_eff = sum_k W_k onehot_k, so dL/ds_k = dL/dw_eff * W_k for every k, under both
  rules (the gradient does not depend on which value was drawn).
- Subnet file: the evaluated index of every weight, kind "index", ceil(log2 K) bits each.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hidden_core.distributions import draw, fans
from hidden_core.methods.base import (
    Method,
    Packed,
    WeightParametrization,
    attach,
    freeze,
    numpy_of,
    on_device,
    weight_layers,
)


def index_bits(k: int) -> int:
    """Bits per stored index among k >= 2 values: ceil(log2 k)."""
    return math.ceil(math.log2(k))


def glorot_bound(weight: torch.Tensor) -> float:
    """a = sqrt(6 / (fan_in + fan_out)): the reference's value bound and score bound (its
    `std`; fans with the receptive field, K not counted)."""
    fan_in, fan_out = fans(weight)
    return math.sqrt(6.0 / (fan_in + fan_out))


class _SelectedValue(torch.autograd.Function):
    """values[..., index] forward, bit for bit the reference's sum(W * onehot, -1) (a sum of
    one value and exact zeros); backward straight through the one-hot to every score,
    dL/ds = dL/dw_eff[..., None] * W. Gathering instead of multiplying by a one-hot keeps
    the forward free of a K-times-larger temporary."""

    @staticmethod
    def forward(ctx, values, scores, index):
        ctx.save_for_backward(values)
        return values.gather(-1, index.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx, grad):
        (values,) = ctx.saved_tensors
        return None, grad.unsqueeze(-1) * values, None


def sample_index(scores: torch.Tensor) -> torch.Tensor:
    """One index per connection drawn from softmax(scores) over the last dimension: the
    distribution of the reference's multinomial(softmax(s), 1), by inverse CDF (one uniform
    per connection instead of multinomial's per-row machinery; u in [cdf[j-1], cdf[j]) picks
    j, so a value of probability 0 is never drawn)."""
    cdf = torch.softmax(scores, dim=-1).cumsum(-1)
    u = torch.rand(cdf.shape[:-1], device=cdf.device, dtype=cdf.dtype)
    return (cdf <= u.unsqueeze(-1)).sum(-1).clamp_(max=scores.shape[-1] - 1)  # clamp: cdf[-1] may round below 1


class SlotSelection(WeightParametrization):
    def __init__(self, values: torch.Tensor, scores: torch.Tensor, selection: str):
        super().__init__()
        # persistent like `original`: a checkpoint and a vectorized cell's stacked state
        # (hidden_core.vectorized, built from state_dict) carry it; a subnet file never does
        self.register_buffer("values", values)
        self.scores = nn.Parameter(scores)
        self.selection = selection

    @property
    def k(self) -> int:
        return self.values.shape[-1]

    def index(self) -> torch.Tensor:
        """The index evaluation uses (argmax under both rules), int64 of the layer's shape."""
        return self.scores.detach().argmax(-1)

    def forward(self, weight):
        # a draw only for a step that learns: evaluation runs without gradients, also in a
        # vectorized cell, which calls this forward per seed without switching its mode
        if self.selection == "probabilistic" and self.training and torch.is_grad_enabled():
            index = sample_index(self.scores.detach())
        else:
            index = self.index()
        return _SelectedValue.apply(self.values, self.scores, index)

    def state(self, original):
        return self.index()  # changed_fraction: the connections whose chosen value moved

    def in_use(self, original):
        return torch.tensor(original.numel())  # every connection uses one value: density 1

    def file_tensors(self, original):
        return {"index": Packed(numpy_of(self.index()), index_bits(self.k))}

    def file_weight(self, original, stored):
        # 1-bit indices (K = 2) come back from the file as bool, wider ones as int64
        index = on_device(stored["index"], original).long()
        if tuple(index.shape) != tuple(original.shape):
            raise ValueError(f"index of shape {list(index.shape)} for a weight of shape {list(original.shape)}")
        if index.numel() and not 0 <= int(index.min()) <= int(index.max()) < self.k:
            raise ValueError(f"index values {int(index.min())}..{int(index.max())} outside [0, {self.k}) (slot_machine_k {self.k})")
        return self.values.gather(-1, index.unsqueeze(-1)).squeeze(-1).to(original.dtype)


class SlotMachine(Method):
    name = "slot_machine"

    def apply(self, model, generator):
        freeze(model)
        k = self.config.slot_machine_k
        for layer in weight_layers(model):
            w = layer.weight.detach()
            fan_in, fan_out = fans(w)
            # drawn on the CPU from the build's generator, like every random weight, so the
            # same config gives the same values on any device
            extra = draw(torch.Size((k - 1, *w.shape)), fan_in, fan_out, self.config, generator).to(w.dtype)
            values = torch.cat([w.to("cpu").unsqueeze(0), extra]).movedim(0, -1).contiguous()
            scores = torch.rand(values.shape, generator=generator) * glorot_bound(w)
            attach(layer, SlotSelection(values.to(w.device), scores.to(w.device), self.config.slot_machine_selection))


METHOD = SlotMachine
