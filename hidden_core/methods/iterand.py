"""iterand (Chijiwa et al., NeurIPS 2021, "Pruning Randomly Initialized Neural Networks with
Iterative Randomization"; reference code dchiji-ntt/iterand): edge-popup whose PRUNED weights
are re-drawn from the weights' own distribution every `iterand_period` optimizer steps, each
with probability `iterand_rate` (the paper's K_per and r; the reference's `rerand_freq` and
`rerand_lambda`, rerand_mode "bernoulli"). Kept weights and the scores are never touched.

Reference lines (models/networks/sparse_modules.py unless named; docs/methods.md, "iterand"):
- the mask, `iterand_scores: signed` (default): GetSubnet (:8-21) keeps the scores >= the
  percentile of the SIGNED scores, `k = 1 + round(.01 * q * (n - 1))`; pure straight-through
  backward (:15-17), so dL/ds = dL/dw_eff * w; scores ~ kaiming_uniform_(fan_in, relu)
  = U(-sqrt(6/fan_in), sqrt(6/fan_in)) (:125, :32-34, config.yaml:143-145).
  `iterand_scores: abs` is our edge_popup's TopKMask exactly (|score|, hidden-networks).
- the re-draw (:46-65, :149-155): candidates = the weights the forward mask prunes at that
  moment (rerand_rate 1.0, config.yaml:153), b ~ Bernoulli(r) per weight, a fresh draw of the
  whole tensor from the init distribution (`init_param_(twin, init_mode, init_scale)`);
  w <- w*m + w*(1-m)*(1-b) + rnd*(1-m)*b.
- the period (commands/train.py:116-121): before iteration `it` (steps done) when
  (it + 1) % K == 0, i.e. here after step s when (s + 1) % K == 0.

Randomness: draw s of layer i comes from a CPU generator seeded by (config.seed, i, s), so
the draws are the same on any device and a resumed trial makes the uninterrupted one's.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import nn

from hidden_core.distributions import draw, fans
from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    freeze,
    kaiming_uniform_scores,
    masked_weight,
    numpy_of,
    on_device,
    original_weight,
    parametrization_of,
    weight_layers,
)
from hidden_core.methods.edge_popup import TopKMask, top_k_threshold

SIGNED, ABS = "signed", "abs"  # the `iterand_scores` values
_REDRAW_STREAM = 0x17E2A4D  # keeps the re-draw seeds apart from any other (seed, a, b) seed sequence


def reference_kept_count(n: int, keep_fraction: float) -> int:
    """How many of n weights the reference keeps: GetSubnet zeroes the scores below
    `percentile(scores, sparsity*100)`, the k-th smallest with
    k = 1 + round(.01 * float(q) * (n - 1)) (sparse_modules.py:19-21): round(...) of them
    (Python's round, half to even), sparsity = 1 - keep_fraction (the pruned fraction)."""
    q = (1 - keep_fraction) * 100
    return n - round(0.01 * float(q) * (n - 1))


def reference_scores(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The reference's score init, nn.init.kaiming_uniform_(mode='fan_in',
    nonlinearity='relu'): U(-sqrt(6/fan_in), sqrt(6/fan_in)) (sparse_modules.py:32-34 with
    init_mode_mask 'kaiming_uniform', init_scale_score 1.0)."""
    bound = math.sqrt(6.0 / fans(weight)[0])
    return ((torch.rand(weight.shape, generator=generator) * 2 - 1) * bound).to(weight.device)


def redraw_seed(seed: int, layer: int, step: int) -> int:
    """The seed of the re-draw after optimizer step `step` in weight layer `layer`."""
    return int(np.random.SeedSequence((seed, layer, step, _REDRAW_STREAM)).generate_state(1, np.uint64)[0] >> 1)


def weights_digest(weight: torch.Tensor) -> np.ndarray:
    """16 bytes that identify a weight tensor bit for bit (its float32 bytes on the CPU)."""
    data = weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return np.frombuffer(hashlib.blake2b(data, digest_size=16).digest(), dtype=np.uint8).copy()


class _Redrawn:
    """What both rankings share: the record of re-drawn weights and the subnet file.

    The re-draws overwrite the frozen `original` in place (it is still no optimizer
    parameter). `changed` marks the weights re-drawn at least once and `origin` identifies the
    seed's weights before any re-draw; both are buffers, so a checkpoint keeps them."""

    changed: torch.Tensor
    origin: torch.Tensor

    def _start_record(self, weight: torch.Tensor) -> None:
        self.register_buffer("changed", torch.zeros(weight.shape, dtype=torch.bool, device=weight.device))
        self.register_buffer("origin", torch.from_numpy(weights_digest(weight)))

    @torch.no_grad()
    def redraw(self, original: torch.Tensor, fresh: torch.Tensor, chosen: torch.Tensor) -> None:
        """Replace the pruned weights where `chosen` by `fresh` (the reference's t1 + t2 + t3:
        a kept weight never changes, whatever `chosen` says)."""
        replaced = chosen & ~self.mask()
        original.copy_(torch.where(replaced, fresh.to(original.dtype), original))
        self.changed |= replaced

    def state(self, original):
        return self.mask()

    def in_use(self, original):
        return self.mask().sum()

    def file_tensors(self, original):
        return {
            "mask": numpy_of(self.mask()),
            "changed": numpy_of(self.changed),
            "values": numpy_of(original[self.changed].to(torch.float32)),  # row-major order of `changed`
            "origin": numpy_of(self.origin),
        }

    def file_weight(self, original, stored):
        """The stored mask on the trial's weights: the seed's, with the re-drawn values put
        back. On weights of another seed (the `fresh` control: `origin` then differs) the
        re-drawn values belong to the trial's weights, not to these: the mask alone applies."""
        mask = on_device(stored["mask"], original).to(original.dtype)
        changed = on_device(stored["changed"], original)
        values = np.asarray(stored["values"])
        if changed.shape != original.shape:
            raise ValueError(f"changed has shape {list(changed.shape)}, the layer {list(original.shape)}")
        if values.ndim != 1 or values.shape[0] != int(changed.sum()):
            raise ValueError(f"values holds {values.size} weights, changed marks {int(changed.sum())}")
        if not np.array_equal(np.asarray(stored["origin"]), weights_digest(original)):
            return original * mask
        weight = original.clone()
        weight[changed] = on_device(values, original)
        return weight * mask


class SignedTopKMask(_Redrawn, WeightParametrization):
    """The reference's mask: the kept weights have the largest SIGNED scores
    (sparse_modules.py:137-138 ranks `weight_score`, not its abs), kept count
    reference_kept_count; forward weight * mask with the straight-through gradient
    dL/ds = dL/dw_eff * w (GetSubnet.backward returns g unchanged)."""

    def __init__(self, scores: torch.Tensor, keep_fraction: float, weight: torch.Tensor):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.kept = reference_kept_count(scores.numel(), keep_fraction)
        self._start_record(weight)

    def mask(self) -> torch.Tensor:
        values = self.scores.detach()
        # The reference's threshold is the k-th smallest score and it keeps scores >= it:
        # the kept-th largest, which top_k_threshold finds (reshape: channels_last scores)
        return values >= top_k_threshold(values.reshape(-1), self.kept)

    def forward(self, weight):
        return masked_weight(weight, self.scores, self.mask().to(weight.dtype))


class AbsTopKMask(_Redrawn, TopKMask):
    """edge_popup's TopKMask (|score|, n - int((1-k)n) kept, hidden-networks' score init)
    with the re-draws: `iterand_scores: abs`; with iterand_rate 0 it is edge_popup."""

    def __init__(self, scores: torch.Tensor, keep_fraction: float, weight: torch.Tensor):
        TopKMask.__init__(self, scores, keep_fraction)
        self._start_record(weight)


class IteRand(Method):
    name = "iterand"

    def fan_scale(self):
        return self.config.keep_fraction if self.config.scale_fan else 1.0

    def apply(self, model, generator):
        freeze(model)
        signed = self.config.iterand_scores == SIGNED
        for layer in weight_layers(model):
            if signed:
                p = SignedTopKMask(reference_scores(layer.weight, generator), self.config.keep_fraction, layer.weight)
            else:
                p = AbsTopKMask(kaiming_uniform_scores(layer.weight, generator), self.config.keep_fraction, layer.weight)
            attach(layer, p)

    def due(self, step: int) -> bool:
        """Whether the re-draw follows step `step`: the reference re-draws before iteration
        `it` (= steps done) when (it + 1) % rerand_freq == 0 (commands/train.py:119)."""
        return self.config.iterand_rate > 0 and (step + 1) % self.config.iterand_period == 0

    def after_step(self, model, step):
        if self.due(step):
            redraw_pruned(model, self.config, self.fan_scale(), step)


@torch.no_grad()
def redraw_pruned(model: nn.Module, config, fan_scale: float, step: int) -> None:
    """The reference's rerandomize (mode 'bernoulli') in every weight layer: a fresh draw of
    the whole tensor from config.weight_dist (the weights' own distribution and fan scale,
    as `init_param_(twin, init_mode, init_scale)`), then b ~ Bernoulli(iterand_rate) per
    weight; the pruned weights with b = 1 take the fresh values."""
    for index, layer in enumerate(weight_layers(model)):
        p = parametrization_of(layer)
        original = original_weight(layer)
        generator = torch.Generator().manual_seed(redraw_seed(config.seed, index, step))
        fan_in, fan_out = fans(original)
        fresh = draw(original.shape, fan_in * fan_scale, fan_out * fan_scale, config, generator)
        chosen = torch.rand(original.shape, generator=generator) < config.iterand_rate
        p.redraw(original, fresh.to(original.device), chosen.to(original.device))


METHOD = IteRand
