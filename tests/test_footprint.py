"""hidden_core/footprint.py: a trial's size before it runs. The parameter and activation
counts measured on the meta device are those of the real network; the byte estimate is the
documented formula; `largest` and `plan_footprint` find the biggest trial of a set or a
spec; require_fit refuses (ConfigError naming the fields to lower) a trial the machine's
memory cannot hold; require_device refuses a device this machine lacks, naming what it has."""

from __future__ import annotations

import pytest
import torch

from hidden_core import footprint
from hidden_core.config import make_config
from hidden_core.errors import ConfigError
from hidden_core.footprint import (
    BYTES_PER_ACTIVATION,
    BYTES_PER_PARAMETER,
    Footprint,
    activation_count,
    describe,
    gib,
    largest,
    parameter_count,
    plan_footprint,
    require_device,
    require_fit,
)
from hidden_core.models import build_architecture
from hidden_core.spec import parse_spec

CONFIGS = [
    make_config(model="mlp", dataset="mnist1d", width=0.5, depth=2, batch_size=32),
    make_config(model="mlp", dataset="digits", mlp_layer_units=[30, 20], batch_size=8),
    make_config(model="convnet", dataset="digits", width=0.25, depth=2, batch_size=4),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["mlp", "mlp_units", "convnet"])
def test_meta_counts_are_the_real_networks(config):
    """Measured without storage, the counts equal those of the network built for real and run
    on a real batch (leaf modules' outputs, as the module docstring defines activations)."""
    torch.manual_seed(0)
    net = build_architecture(config)
    assert parameter_count(config) == sum(p.numel() for p in net.parameters())
    total = 0

    def count(_m, _i, output):
        nonlocal total
        total += output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    with torch.no_grad():
        net(torch.zeros(config.batch_size, *config.dataset_info.input_shape))
    for h in hooks:
        h.remove()
    assert activation_count(config) == total > 0


def test_activations_grow_with_the_batch_and_parameters_do_not():
    small, big = make_config(batch_size=16, width=0.5), make_config(batch_size=64, width=0.5)
    assert activation_count(big) == 4 * activation_count(small)
    assert parameter_count(big) == parameter_count(small)


def test_bytes_follow_the_documented_formula():
    f = Footprint(CONFIGS[0], parameters=1000, activations=50)
    assert f.bytes == 1000 * BYTES_PER_PARAMETER + 50 * BYTES_PER_ACTIVATION == 1000 * 24 + 50 * 8


def test_a_huge_network_is_measured_without_its_memory():
    """A 10^10-weight MLP (40 GB of float32) is measured in a moment: shapes only."""
    config = make_config(model="mlp", dataset="mnist1d", mlp_layer_units=[100_000, 100_000], batch_size=1)
    assert parameter_count(config) == 40 * 100_000 + 100_000 * 100_000 + 100_000 * 10


def test_largest_is_the_most_parameters_at_its_largest_batch():
    configs = [make_config(width=w, batch_size=b) for w in (0.5, 2.0, 1.0) for b in (32, 128, 64)]
    found = largest(configs)
    assert found.config.width == 2.0 and found.config.batch_size == 128
    assert found.parameters == parameter_count(found.config) and found.activations == activation_count(found.config)
    assert largest([]) is None


def test_plan_footprint_names_the_largest_trial_and_its_grid_point():
    spec = parse_spec({"name": "f", "base": {"dataset": "mnist1d"}, "grid": {"width": [0.5, 4, 1], "seed": [0, 1]}})
    f, point = plan_footprint(spec.plan())
    assert f.config.width == 4 and dict(point)["width"] == 4
    assert "width=4" in describe(f, point) and f"{f.parameters:,} parameters" in describe(f, point)


def test_require_fit_refuses_what_the_memory_cannot_hold_naming_the_fields(monkeypatch):
    f = Footprint(CONFIGS[0], parameters=10**9, activations=0)  # 24 GB
    monkeypatch.setattr(footprint, "machine_memory", lambda device: (8 * 2**30, "RAM of this machine"))
    with pytest.raises(ConfigError) as err:
        require_fit(f, "cpu", (("width", 64.0), ("seed", 0)))
    problem = err.value.problems[0]
    assert problem.startswith("grid (width=64.0, seed=0): a trial needs about 22.35 GiB") and "RAM of this machine is 8.00 GiB" in problem
    assert problem.endswith("lower width")  # the size field that varies, not seed
    with pytest.raises(ConfigError, match="base: .* lower width, depth, mlp_units or batch_size"):
        require_fit(f, "cpu")
    require_fit(Footprint(CONFIGS[0], parameters=10**6, activations=0), "cpu")  # 24 MB fits
    monkeypatch.setattr(footprint, "machine_memory", lambda device: None)
    require_fit(f, "cuda")  # memory unknown (no GPU here): nothing to refuse on


def test_machine_memory_of_this_machine():
    memory = footprint.machine_memory("cpu")
    assert memory is not None and memory[0] > 2**27 and memory[1] == "RAM of this machine"
    if not torch.cuda.is_available():
        assert footprint.machine_memory("cuda") is None


def test_gib_text():
    assert gib(3 * 2**29) == "1.50 GiB" and gib(2**41) == "2.0 TiB"


def test_require_device_refuses_what_this_machine_lacks():
    for ok in ("cpu", "auto"):
        require_device(ok)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError) as err:
        require_device(f"cuda:{count + 63}")
    problem = err.value.problems[0]
    assert problem.startswith(f"device: 'cuda:{count + 63}' is not available") and "available here: cpu" in problem and problem.endswith(", or auto")
    if count == 0:
        with pytest.raises(ConfigError, match="device: 'cuda' is not available"):
            require_device("cuda")
