"""biprop, multi-prize tickets (Diffenderfer & Kailkhura, ICLR 2021; chrundle/biprop), in its
MPT-1/32 form: binary weights, full-precision activations (binary activations, MPT-1/1, are
a different model, not a method). Per Linear/Conv layer, with frozen random weight w (n
entries) and one learned score s per weight:

    m     = edge-popup's top-k mask of |s|: the int((1-k)n) smallest |s| dropped
    alpha = sum(|w| * m) / int(k * n)          recomputed at every forward, never learned
    w_eff = sign(w) * (alpha * m)
    dL/ds = dL/dw_eff * w * sgn(s)             alpha gets no gradient

(biprop utils/conv_type.py: GetQuantnet_binary :60-89, SubnetConv :91-120). The gradient is
edge-popup's; only the forward value differs: the kept weights are binarized to +-alpha, one
gain per layer. The learned state is the mask alone (alpha follows from the mask and the
seed's weights), so a subnet file keeps 1 bit per weight and a control's mask gets its own
alpha. Every Linear/Conv layer is binarized and masked (first and last too); weights and
BatchNorm affine parameters are frozen, as for edge-popup."""

from __future__ import annotations

import torch
from torch import nn

from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    freeze,
    kaiming_uniform_scores,
    numpy_of,
    on_device,
    weight_layers,
)
from hidden_core.methods.edge_popup import kept_count, top_k_threshold


def reference_divisor(n: int, keep_fraction: float) -> int:
    """The reference's divisor, `num_unpruned = int(k * scores.numel())` (conv_type.py:75).
    It is not the number kept, n - int((1-k)n), which is one more whenever k*n is not an
    integer. Where int(k*n) is 0 the reference divides by zero (every weight inf); there,
    and only there, we divide by the number kept (1) instead."""
    return int(keep_fraction * n) or kept_count(n, keep_fraction)


def binarized(weight: torch.Tensor, mask: torch.Tensor, divisor: int) -> torch.Tensor:
    """sign(w) * (alpha * m), alpha = sum(|w| * m) / divisor; `mask` is 1.0/0.0 in weight's
    dtype. One expression for the forward and for file_weight, so a subnet file re-evaluates
    bit for bit."""
    alpha = (weight.abs() * mask).sum() / divisor
    return torch.sign(weight) * (alpha * mask)


class _BinarizedTopKWeight(torch.autograd.Function):
    """binarized(weight, the top-k mask of |scores|) forward. Backward: the reference's
    `g * abs_wgt` (conv_type.py:84-89) on dL/dquantnet = dL/dw_eff * sign(w)
    (conv_type.py:114), through scores.abs() (conv_type.py:105): dL/ds = dL/dw_eff * w *
    sgn(s), edge-popup's estimator; nothing reaches alpha."""

    @staticmethod
    def forward(ctx, weight, scores, kept, divisor):
        ctx.save_for_backward(weight, scores)
        magnitudes = scores.abs()
        # reshape, not view: scores of a channels_last model are not contiguous
        threshold = top_k_threshold(magnitudes.reshape(-1), kept)
        return binarized(weight, magnitudes.ge_(threshold), divisor)  # ge_ on a float tensor leaves 1.0 / 0.0

    @staticmethod
    def backward(ctx, grad):
        weight, scores = ctx.saved_tensors
        return None, (grad * weight).mul_(scores.sgn()), None, None


class BinarizedTopKMask(WeightParametrization):
    """edge-popup's scores and top-k mask, the kept weights binarized with the layer's gain.
    Not a subclass of edge_popup.TopKMask on purpose: code that dispatches on TopKMask
    (vectorized cells' batched forward) must not take it for edge-popup's plain mask."""

    def __init__(self, scores: torch.Tensor, keep_fraction: float):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.kept = kept_count(scores.numel(), keep_fraction)
        self.divisor = reference_divisor(scores.numel(), keep_fraction)

    def mask(self) -> torch.Tensor:
        magnitudes = self.scores.detach().abs()
        return magnitudes >= top_k_threshold(magnitudes.reshape(-1), self.kept)

    def forward(self, weight):
        return _BinarizedTopKWeight.apply(weight, self.scores, self.kept, self.divisor)

    @torch.no_grad()
    def gain(self, original: torch.Tensor) -> torch.Tensor:
        """The layer's alpha now (a 0-dim tensor): the magnitude of every kept weight."""
        return (original.abs() * self.mask().to(original.dtype)).sum() / self.divisor

    def state(self, original):
        return self.mask()

    def in_use(self, original):
        return self.mask().sum()

    def file_tensors(self, original):
        return {"mask": numpy_of(self.mask())}  # alpha and the signs follow from it and the seed

    def file_weight(self, original, stored):
        mask = on_device(stored["mask"], original)
        if mask.shape != original.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask is {mask.dtype}{list(mask.shape)}, the layer needs bool{list(original.shape)}")
        return binarized(original, mask.to(original.dtype), self.divisor)


class Biprop(Method):
    name = "biprop"

    def fan_scale(self):
        # The reference scales the fan by (1 - k) (utils/builder.py:199, hidden-networks issue
        # #9); the project's scale_fan is fan * k for every masked method (docs/methods.md).
        return self.config.keep_fraction if self.config.scale_fan else 1.0

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            scores = kaiming_uniform_scores(layer.weight, generator)  # conv_type.py:96, edge-popup's init
            attach(layer, BinarizedTopKMask(scores, self.config.keep_fraction))


METHOD = Biprop
