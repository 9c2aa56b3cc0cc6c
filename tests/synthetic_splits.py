"""A small separable classification task as DataSplits (no data set to load): the lottery
and checkpoint tests train on it in well under a second."""

import torch

from hidden_core.data import DataSplits


def synthetic_splits(n: int = 96, features: int = 40, classes: int = 10, seed: int = 0) -> DataSplits:
    """n examples per split (train, val, test), labels from a random linear map of the inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, 1, features, generator=g)
    w = torch.randn(features, classes, generator=g)
    y = (x[:, 0] @ w).argmax(1)
    return DataSplits(("synthetic", seed), x[:n], y[:n], x[n : 2 * n], y[n : 2 * n], x[2 * n :], y[2 * n :], classes)
