"""bn_only (Frankle, Schwab & Morcos 2021): only BatchNorm gamma and beta are trained
(optionally the output layer, weight and bias, too: open_lth's `output_layer_names`,
models/cifar_resnet.py:81); every conv and linear weight is frozen, the ResNet classifier's
bias at its random init. gamma ~ U[0, 1), beta = 0 at the start (open_lth
models/bn_initializers.py `uniform`; drawn in hidden_core.distributions.init_weights)."""

from __future__ import annotations

from hidden_core.methods.base import Method, freeze, norm_layers


class BNOnly(Method):
    name = "bn_only"

    def apply(self, model, generator):
        freeze(model)
        for bn in norm_layers(model):
            bn.weight.requires_grad_(True)
            bn.bias.requires_grad_(True)
        if self.config.train_output_layer:
            for p in model.classifier.parameters():
                p.requires_grad_(True)


METHOD = BNOnly
