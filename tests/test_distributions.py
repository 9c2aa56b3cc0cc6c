"""Each weight distribution's empirical moments match docs/methods.md's formula.

Tolerance: 200,000 draws per check; means within 0.01 of the scale, std within 2%, sign
balance within 0.01 (all far beyond 5 standard errors of the estimates)."""

import math

import pytest
import torch

from hidden_core.config import make_config
from hidden_core.distributions import draw

N = (400, 500)  # 200,000 draws
FAN_IN, FAN_OUT = 500, 400
GAIN = math.sqrt(2)


def sample(dist, fan_in=FAN_IN, fan_out=FAN_OUT, **fields):
    return draw(torch.Size(N), fan_in, fan_out, make_config(weight_dist=dist, **fields), torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "dist, std",
    [
        ("kaiming_normal", GAIN / math.sqrt(FAN_IN)),
        ("kaiming_uniform", GAIN / math.sqrt(FAN_IN)),  # U(-b, b), b = gain*sqrt(3/fan): std = b/sqrt(3)
        ("xavier_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ],
)
def test_zero_mean_distributions(dist, std):
    w = sample(dist)
    assert abs(w.mean().item()) < 0.01 * std
    assert w.std().item() == pytest.approx(std, rel=0.02)


def test_kaiming_uniform_bound():
    w = sample("kaiming_uniform")
    bound = GAIN * math.sqrt(3 / FAN_IN)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound


@pytest.mark.parametrize(
    "dist, magnitude, p_plus, fields",
    [
        ("signed_constant", GAIN / math.sqrt(FAN_IN), 0.5, {}),
        ("unsigned_constant", GAIN / math.sqrt(FAN_IN), 1.0, {}),
        ("xavier_constant", math.sqrt(2 / (FAN_IN + FAN_OUT)), 0.5, {}),
        ("asymmetric_constant", GAIN / math.sqrt(FAN_IN), 0.8, {"dist_p": 0.8}),
        ("binary", 0.25, 0.5, {"dist_scale": 0.25}),
    ],
)
def test_constant_magnitude_distributions(dist, magnitude, p_plus, fields):
    w = sample(dist, **fields)
    assert torch.allclose(w.abs(), torch.full_like(w, magnitude))
    assert (w > 0).float().mean().item() == pytest.approx(p_plus, abs=0.01)


def test_explicit_uniform_and_normal():
    w = sample("uniform", dist_low=-0.5, dist_high=1.5)
    assert w.min().item() >= -0.5 and w.max().item() <= 1.5
    assert w.mean().item() == pytest.approx(0.5, abs=0.01)
    w = sample("normal", dist_mean=0.3, dist_std=2.0)
    assert w.mean().item() == pytest.approx(0.3, abs=0.02)
    assert w.std().item() == pytest.approx(2.0, rel=0.02)


def test_scale_fan_uses_the_kept_fan():
    """scale_fan with k=0.25: fan*k, so the scale doubles (the convention fan*k, not fan*(1-k))."""
    from hidden_core.methods import build_model

    plain = build_model(make_config(method="edge_popup", weight_dist="signed_constant", keep_fraction=0.25))
    scaled = build_model(make_config(method="edge_popup", weight_dist="signed_constant", keep_fraction=0.25, scale_fan=True))
    first = lambda m: m.net.features[1].parametrizations.weight.original  # noqa: E731
    assert torch.allclose(first(scaled).abs(), 2 * first(plain).abs())
