"""supermask (Zhou et al. 2019): one logit per weight, frozen weights; training samples
mask ~ Bernoulli(sigmoid(logit)) every forward with a straight-through gradient to
sigmoid(logit) (uber-research/deconstructing-lottery-tickets masked_networks.py:182-185,
`Bernoulli(probs=sigmoid(mask)).sample() + sigmoid(mask) - stop_gradient(sigmoid(mask))`;
hidden-networks utils/conv_type.py StraightThroughBinomialSample is the same estimator).

Evaluation uses a binary mask, so what is evaluated is a subnetwork (docs/methods.md):
- "sampled" (default): the reference samples at test time too (masked_networks.py:186,
  "during test ... actually, sample them too"); we draw one sample per evaluation from a
  fixed per-layer seed, so every evaluation of the same logits is the same network, val and
  test see the same network, and a weight's kept/dropped state only changes when its
  probability crosses its fixed uniform draw.
- "deterministic": the reference's --round_mask at test time, round(sigmoid(logit))
  (masked_networks.py:177); TF rounds half to even, so the mask is sigmoid(logit) > 0.5.
density and changed_fraction count this evaluation mask: the network that was evaluated."""

from __future__ import annotations

import math

import torch
from torch import nn

from hidden_core.methods.base import (
    Method,
    WeightParametrization,
    attach,
    freeze,
    masked_file_weight,
    numpy_of,
    weight_layers,
)


def evaluation_mask(logits: torch.Tensor, evaluation: str, eval_seed: int) -> torch.Tensor:
    """The binary mask (bool) a supermask layer evaluates: sigmoid(logit) > 0.5, or one
    Bernoulli sample from the layer's fixed seed (the same network at every evaluation)."""
    p = torch.sigmoid(logits.detach())
    if evaluation == "deterministic":
        return p > 0.5
    generator = torch.Generator(device=p.device).manual_seed(eval_seed)
    return torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype) < p


def bernoulli_masked_weights(weight: torch.Tensor, logits: torch.Tensor, training: bool, generators: list[torch.Generator],
                             evaluation: str, eval_seeds: list[int]) -> torch.Tensor:
    """supermask's BernoulliMask.forward for stacked seeds, each seed's sample drawn from
    its own generator (the draw that seed's unvectorized trial makes at this step); in
    evaluation each seed's binary evaluation mask from its own fixed seed."""
    if not training:
        return weight * torch.stack([evaluation_mask(logits[i], evaluation, seed) for i, seed in enumerate(eval_seeds)])
    p = torch.sigmoid(logits)
    detached = p.detach()
    sample = torch.stack([torch.bernoulli(detached[i], generator=g) for i, g in enumerate(generators)])
    return weight * (sample + p - p.detach())


class BernoulliMask(WeightParametrization):
    def __init__(self, shape: torch.Size, init_keep: float, device: torch.device, evaluation: str, eval_seed: int):
        super().__init__()
        init_keep = min(init_keep, 1 - 1e-6)
        self.logits = nn.Parameter(torch.full(shape, math.log(init_keep / (1 - init_keep)), device=device))
        self.evaluation = evaluation
        self.eval_seed = eval_seed

    def eval_mask(self) -> torch.Tensor:
        """The binary mask of the evaluated network (bool)."""
        return evaluation_mask(self.logits, self.evaluation, self.eval_seed)

    def forward(self, weight):
        if not self.training:
            return weight * self.eval_mask()
        p = torch.sigmoid(self.logits)
        sample = torch.bernoulli(p.detach())
        # forward value: the sample; gradient: straight through to p (hence to the logit)
        return weight * (sample + p - p.detach())

    def state(self, original):
        return self.eval_mask()

    def in_use(self, original):
        return self.eval_mask().sum()

    def batched_weight(self, original, own, training, generators, per_seed):
        return bernoulli_masked_weights(original, own["logits"], training, generators, self.evaluation, [p.eval_seed for p in per_seed])

    def file_tensors(self, original):
        # what it evaluates is a binary mask; the logits keep the learned probabilities inspectable
        return {"mask": numpy_of(self.eval_mask()), "logits": numpy_of(self.logits.float())}

    def file_weight(self, original, stored):
        return masked_file_weight(original, stored)


class Supermask(Method):
    name = "supermask"

    def fan_scale(self):
        return self.config.supermask_init_keep if self.config.scale_fan else 1.0

    def apply(self, model, generator):
        freeze(model)
        for layer in weight_layers(model):
            eval_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            attach(layer, BernoulliMask(layer.weight.shape, self.config.supermask_init_keep, layer.weight.device, self.config.supermask_eval, eval_seed))


METHOD = Supermask
