"""random_features: only the output layer is trained (an extreme-learning-machine readout
on random features); a lower baseline."""

from hidden_core.methods.base import Method, freeze


class RandomFeatures(Method):
    name = "random_features"

    def apply(self, model, generator):
        freeze(model)
        for p in model.classifier.parameters():  # weight, and the ResNet's bias
            p.requires_grad_(True)


METHOD = RandomFeatures
