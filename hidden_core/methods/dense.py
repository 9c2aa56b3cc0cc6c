"""dense: every weight and BatchNorm parameter is trained (the baseline)."""

from hidden_core.methods.base import Method


class Dense(Method):
    name = "dense"

    def apply(self, model, generator):
        for p in model.parameters():
            p.requires_grad_(True)


METHOD = Dense
