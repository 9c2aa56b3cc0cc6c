"""bn_only (Frankle, Schwab & Morcos 2021): only BatchNorm gamma and beta are trained
(optionally the output layer too); every conv and linear weight is frozen. gamma ~ U[0, 1],
beta = 0 at the start (open_lth's default)."""

from __future__ import annotations

import torch

from hidden_core.methods.base import Method, freeze, norm_layers


class BNOnly(Method):
    name = "bn_only"

    def apply(self, model, generator):
        freeze(model)
        with torch.no_grad():
            for bn in norm_layers(model):
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=generator))
                bn.bias.zero_()
                bn.weight.requires_grad_(True)
                bn.bias.requires_grad_(True)
        if self.config.train_output_layer:
            model.classifier.weight.requires_grad_(True)
