"""edge_popup (Ramanujan et al. 2020): one real score per weight; the forward keeps the
weights whose |score| is in the top k of their layer; the gradient reaches the scores
straight through the mask. Every Linear/Conv layer is masked (first and last too), weights
and BatchNorm affine parameters are frozen."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    freeze,
    kaiming_uniform_scores,
    masked_file_weight,
    numpy_of,
    weight_layers,
)

# How the k-th largest |score| is found, per device type; `make bench` times every strategy
# on the device (benchmarks/bench_methods.py, "threshold on ..."). On the CPU numpy's
# partition (introselect, SIMD since numpy 2) is about 10x faster than torch.kthvalue (3 ms
# against 35-50 ms for Conv4's 2.1M-weight layer) and 100x faster than a sort.
SELECTION: dict[str, str] = {"cpu": "partition", "cuda": "kthvalue", "mps": "sort"}


def _kthvalue(magnitudes: torch.Tensor, kept: int) -> torch.Tensor:
    return magnitudes.kthvalue(magnitudes.numel() - kept + 1).values


def _topk(magnitudes: torch.Tensor, kept: int) -> torch.Tensor:
    return magnitudes.topk(kept, sorted=False).values.min()


def _sort(magnitudes: torch.Tensor, kept: int) -> torch.Tensor:
    return magnitudes.sort().values[magnitudes.numel() - kept]


_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)


def _partition(magnitudes: torch.Tensor, kept: int, *, in_place: bool = False) -> torch.Tensor:
    """numpy's partition on a CPU tensor (elsewhere, or for a dtype numpy lacks: kthvalue).
    On the CPU reading the value is no device sync. in_place: reorder `magnitudes` itself
    instead of a copy (it must then be contiguous)."""
    if magnitudes.device.type != "cpu" or magnitudes.dtype not in _NUMPY_DTYPES:
        return _kthvalue(magnitudes, kept)
    k = magnitudes.numel() - kept
    values = magnitudes.detach().numpy()
    if in_place:
        values.partition(k)
        return torch.tensor(values[k])  # a copy: the caller overwrites `magnitudes`
    return torch.from_numpy(np.partition(values, k)[k : k + 1].reshape(()))


# Each returns the same value: the kept-th largest of a flat tensor, as a 0-dim tensor.
THRESHOLDS = {"kthvalue": _kthvalue, "topk": _topk, "sort": _sort, "partition": _partition}


def _selection(device: torch.device) -> str:
    how = SELECTION.get(device.type, "kthvalue")
    if how == "partition" and torch.compiler.is_compiling():
        how = "kthvalue"  # numpy inside a compiled graph would be traced as a full sort
    return how


def top_k_threshold(magnitudes: torch.Tensor, kept: int) -> torch.Tensor:
    """The smallest magnitude that is kept, as a 0-dim tensor on the scores' device (no
    host sync). `magnitudes` is flat."""
    return THRESHOLDS[_selection(magnitudes.device)](magnitudes, kept)


class _TopKMaskedWeight(torch.autograd.Function):
    """weight * (|scores| >= the layer's threshold) forward. The gradient reaches the scores
    straight through the mask and the abs, as in the reference where GetSubnet is applied to
    scores.abs(): dL/ds = dL/dw_eff * w * sign(s).

    One autograd node for abs + mask + product (it matters for small, overhead-bound
    networks), and as few full-size temporaries as possible (it matters for wide ones: on
    the CPU every tensor over 32 MB is fresh mmapped memory, paid in page faults): the
    magnitudes buffer is partitioned in place, refilled, and turned into the 0/1 mask in
    place. Bit for bit what `weight * (scores.abs() >= threshold)` gives."""

    @staticmethod
    def forward(ctx, weight, scores, kept):
        ctx.save_for_backward(weight, scores)
        magnitudes = scores.abs()
        how = _selection(magnitudes.device)
        if how == "partition" and magnitudes.is_contiguous():
            threshold = _partition(magnitudes.view(-1), kept, in_place=True)
            torch.abs(scores, out=magnitudes)
        else:
            # reshape, not view: scores of a channels_last model are not contiguous
            threshold = THRESHOLDS[how](magnitudes.reshape(-1), kept)
        return weight * magnitudes.ge_(threshold)  # ge_ on a float tensor leaves 1.0 / 0.0

    @staticmethod
    def backward(ctx, grad):
        weight, scores = ctx.saved_tensors
        return None, (grad * weight).mul_(scores.sgn()), None


# ---- the batched form: every seed of a vectorized cell at once (hidden_core/vectorized.py) ----
def batched_top_k_threshold(magnitudes: torch.Tensor, kept: int, *, in_place: bool = False) -> torch.Tensor:
    """Per row of (seeds, n) magnitudes, the kept-th largest: edge-popup's per-layer
    threshold (hidden_core.methods.edge_popup.top_k_threshold) for every seed in one call.
    On the CPU numpy's partition along the rows (as edge_popup picks on the CPU), elsewhere
    kthvalue along the rows. in_place (CPU only, contiguous `magnitudes`): reorder the
    rows themselves instead of a copy (a wide layer's copy is fresh memory, paid in page
    faults)."""
    n = magnitudes.shape[1]
    if magnitudes.device.type == "cpu" and magnitudes.dtype in (torch.float32, torch.float64):
        values = magnitudes.detach().numpy()
        if in_place and magnitudes.is_contiguous():
            values.partition(n - kept, axis=1)
            return torch.from_numpy(values[:, n - kept].copy())
        return torch.from_numpy(np.partition(values, n - kept, axis=1)[:, n - kept])
    return magnitudes.kthvalue(n - kept + 1, dim=1).values


class _BatchedTopKMaskedWeight(torch.autograd.Function):
    """edge_popup's _TopKMaskedWeight with one threshold per seed: forward
    weight * (|scores| >= threshold of that seed's layer), gradient straight through the
    mask and the abs to the scores, dL/ds = dL/dw_eff * w * sign(s)."""

    @staticmethod
    def forward(ctx, weight, scores, kept):
        ctx.save_for_backward(weight, scores)
        magnitudes = scores.abs()
        in_place = magnitudes.device.type == "cpu" and magnitudes.is_contiguous()
        threshold = batched_top_k_threshold(magnitudes.view(len(scores), -1) if in_place else magnitudes.reshape(len(scores), -1), kept, in_place=in_place)
        if in_place:
            torch.abs(scores, out=magnitudes)  # refill the partitioned buffer
        threshold = threshold.view(-1, *([1] * (scores.dim() - 1)))
        return weight * magnitudes.ge_(threshold)

    @staticmethod
    def backward(ctx, grad):
        weight, scores = ctx.saved_tensors
        return None, (grad * weight).mul_(scores.sgn()), None


def kept_count(n: int, keep_fraction: float) -> int:
    """How many of a layer's n weights edge-popup keeps: the reference zeroes the
    int((1 - k) * n) lowest scores (hidden-networks utils/conv_type.py GetSubnet.forward,
    `j = int((1 - k) * scores.numel())`) and keeps the rest. At least 1 for any k > 0."""
    return n - int((1 - keep_fraction) * n)


class TopKMask(WeightParametrization):
    def __init__(self, scores: torch.Tensor, keep_fraction: float):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.kept = kept_count(scores.numel(), keep_fraction)

    def mask(self) -> torch.Tensor:
        magnitudes = self.scores.detach().abs()
        # reshape, not view: scores of a channels_last model are not contiguous
        return magnitudes >= top_k_threshold(magnitudes.reshape(-1), self.kept)

    def forward(self, weight):
        return _TopKMaskedWeight.apply(weight, self.scores, self.kept)

    def state(self, original):
        return self.mask()

    def in_use(self, original):
        return self.mask().sum()

    def batched_weight(self, original, own, training, generators, per_seed):
        return _BatchedTopKMaskedWeight.apply(original, own["scores"], self.kept)

    def file_tensors(self, original):
        return {"mask": numpy_of(self.mask())}

    def file_weight(self, original, stored):
        return masked_file_weight(original, stored)


class EdgePopup(Method):
    name = "edge_popup"

    def fan_scale(self):
        return self.config.keep_fraction if self.config.scale_fan else 1.0

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            attach(layer, TopKMask(kaiming_uniform_scores(layer.weight, generator), self.config.keep_fraction))


METHOD = EdgePopup
