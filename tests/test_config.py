"""TrialConfig: validation at the edge, and a trial identity that survives cosmetic change."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from hidden_core.config import ConfigError, TrialConfig, make_config


def test_trial_id_ignores_key_order_float_noise_and_explicit_defaults():
    a = make_config({"method": "edge_popup", "keep_fraction": 0.3, "width": 2.0})
    b = make_config({"width": 2, "keep_fraction": 0.1 + 0.2, "method": "edge_popup", "lr": 0.1})
    assert a.trial_id == b.trial_id
    assert "lr" not in a.canonical()  # default-valued fields are left out of the identity


def test_options_a_method_does_not_read_collapse():
    # k means nothing to dense or bn_only: crossing it must not create duplicate trials
    assert make_config(method="dense", keep_fraction=0.3).trial_id == make_config(method="dense", keep_fraction=0.7).trial_id
    assert make_config(method="bn_only", keep_fraction=0.3).trial_id == make_config(method="bn_only").trial_id
    assert make_config(method="edge_popup", keep_fraction=0.3).trial_id != make_config(method="edge_popup", keep_fraction=0.7).trial_id
    assert make_config(method="dense", keep_fraction=0.3).normalized().keep_fraction == 0.5
    # distribution parameters only matter to the distribution that reads them
    assert make_config(dist_p=0.9).trial_id == make_config().trial_id
    assert make_config(weight_dist="asymmetric_constant", dist_p=0.9).trial_id != make_config(weight_dist="asymmetric_constant").trial_id


def test_resolved_defaults():
    assert make_config(model="convnet").depth == 4
    assert make_config(model="resnet").norm == "batchnorm"
    assert make_config(method="bn_only").norm == "batchnorm"
    assert make_config().norm == "none"
    assert make_config(dataset="cifar10").augment is True
    assert make_config(step_milestones="80,120").step_milestones == (80, 120)


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"keep_fraction": 1.5}, "keep_fraction: 1.5 is not in (0, 1]"),
        ({"keep_fraction": 0}, "keep_fraction: 0.0 is not in (0, 1]"),
        ({"width": -1}, "width: -1.0 is not in (0, 64]"),
        ({"width": 0}, "width: 0.0 is not in (0, 64]"),
        ({"method": "prune_everything"}, "method: 'prune_everything' is not allowed; input should be 'dense', 'edge_popup'"),
        ({"model": "vit"}, "model: 'vit' is not allowed"),
        ({"dataset": "imagenet"}, "dataset: 'imagenet' is not allowed"),
        ({"weight_dist": "cauchy"}, "weight_dist: 'cauchy' is not allowed"),
        ({"wdith": 2}, "wdith: unknown key (did you mean 'width'?); allowed keys: method, keep_fraction"),
        ({"model": "convnet", "depth": 3}, "depth: 3: convnet takes an even number of conv layers"),
        ({"model": "convnet", "depth": 8, "dataset": "digits"}, "depth: 8: convnet with 4 max-pools shrinks digits"),
        ({"model": "resnet", "depth": 21}, "depth: 21: resnet takes depth 6n+2"),
        ({"method": "bn_only", "norm": "none"}, "norm: method bn_only learns BatchNorm parameters"),
        ({"augment": True}, "augment: random crop and flip need an image data set"),
        ({"val_fraction": 1.0}, "val_fraction: 1.0 is not in [0, 1)"),
    ],
)
def test_bad_input_names_field_value_and_what_is_allowed(fields, expected):
    with pytest.raises(ConfigError) as err:
        make_config(fields)
    assert any(line.startswith(expected) for line in err.value.problems), err.value.problems


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        make_config(method="foo", keep_fraction=2, width=-3)
    assert [p.split(":")[0] for p in err.value.problems] == ["method", "keep_fraction", "width"]


def test_config_is_frozen():
    config = TrialConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.width = 2.0


def test_config_imports_neither_torch_nor_ray():
    code = "import sys, hidden_core.config; assert 'torch' not in sys.modules and 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
