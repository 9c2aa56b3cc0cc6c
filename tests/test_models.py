"""Architectures: published parameter counts, 1-D and 2-D inputs, width multipliers."""

import pytest
import torch

from hidden_core.config import make_config
from hidden_core.methods import build_model
from hidden_core.models import build_architecture


@pytest.mark.parametrize("depth, params", [(2, 4_300_992), (4, 2_425_024), (6, 2_261_184), (8, 5_275_840)])
def test_convnet_parameter_counts_match_the_published_ones(depth, params):
    net = build_architecture(make_config(model="convnet", depth=depth, dataset="cifar10"))
    assert sum(p.numel() for p in net.parameters()) == params


@pytest.mark.parametrize(
    "fields, in_shape, classes",
    [
        ({"model": "convnet", "depth": 4, "dataset": "mnist1d"}, (1, 40), 10),
        ({"model": "convnet", "depth": 2, "dataset": "mnist", "width": 0.5}, (1, 28, 28), 10),
        ({"model": "resnet", "depth": 8, "dataset": "cifar100", "width": 0.25}, (3, 32, 32), 100),
        ({"model": "resnet", "depth": 14, "dataset": "mnist1d"}, (1, 40), 10),
        ({"model": "mlp", "depth": 3, "dataset": "digits", "width": 1.7}, (1, 8, 8), 10),
        ({"model": "mlp", "depth": 0, "dataset": "mnist1d"}, (1, 40), 10),
    ],
)
def test_models_take_their_inputs(fields, in_shape, classes):
    out = build_architecture(make_config(fields))(torch.randn(3, *in_shape))
    assert out.shape == (3, classes)


def test_width_multiplier_rounds_and_keeps_at_least_one_unit():
    tiny = build_architecture(make_config(model="convnet", depth=2, dataset="cifar10", width=0.001))
    assert tiny.features[0].out_channels == 1
    assert build_architecture(make_config(model="mlp", width=2.5)).features[1].out_features == 250
    assert build_architecture(make_config(model="resnet", depth=20, width=2, dataset="cifar10")).classifier.in_features == 128


def test_resnet_depth_counts_blocks():
    net = build_architecture(make_config(model="resnet", depth=56, dataset="cifar10"))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 55  # 6n+2 = 56: 1 stem conv + 54 block convs + the classifier


def test_same_config_same_network():
    a = build_model(make_config(model="convnet", dataset="mnist1d", seed=3))
    b = build_model(make_config(model="convnet", dataset="mnist1d", seed=3))
    c = build_model(make_config(model="convnet", dataset="mnist1d", seed=4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
