"""hidden_core/eager_optim.py: torch.optim's SGD and Adam without the torch._dynamo import,
bit for bit the same as torch's, and a trial that trains with them never imports it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hidden_core import eager_optim

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}),
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.Adam, {"lr": 0.01}),
    (torch.optim.Adam, {"lr": 0.003, "weight_decay": 1e-4}),
]


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in ((7, 5), (5,), (3, 2, 2))]


def _steps(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], seed: int, n: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        optimizer.zero_grad(set_to_none=True)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()


def _same_state(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(torch.equal(a["state"][k][name], b["state"][k][name]) for k in a["state"] for name in a["state"][k])


@pytest.mark.parametrize(("torch_class", "kwargs"), CASES)
def test_the_eager_optimizers_step_bit_for_bit_as_torchs(torch_class, kwargs):
    ours_params, theirs_params = _params(0), _params(0)
    ours = eager_optim._EAGER[torch_class](ours_params, **kwargs)
    theirs = torch_class(theirs_params, **kwargs)
    assert isinstance(ours, torch_class) and type(ours) is not torch_class
    _steps(ours, ours_params, seed=1, n=6)
    _steps(theirs, theirs_params, seed=1, n=6)
    assert all(torch.equal(a, b) for a, b in zip(ours_params, theirs_params, strict=True))
    assert _same_state(ours.state_dict(), theirs.state_dict())
    # a checkpoint moves between the two either way, and training goes on identically
    ours_again = eager_optim._EAGER[torch_class](ours_params, **kwargs)
    ours_again.load_state_dict(theirs.state_dict())
    theirs_again = torch_class(theirs_params, **kwargs)
    theirs_again.load_state_dict(ours.state_dict())
    _steps(ours_again, ours_params, seed=2, n=3)
    _steps(theirs_again, theirs_params, seed=2, n=3)
    assert all(torch.equal(a, b) for a, b in zip(ours_params, theirs_params, strict=True))


def test_schedules_and_step_hooks_work_as_on_torchs_classes():
    params = _params(0)
    optimizer = eager_optim.make(torch.optim.SGD, params, lr=1.0, momentum=0.9)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2], gamma=0.1)
    calls = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append(opt.param_groups[0]["lr"]))
    for _ in range(3):
        _steps(optimizer, params, seed=3, n=1)
        schedule.step()
    assert calls == [1.0, 1.0, pytest.approx(0.1)]


def test_with_torch_dynamo_imported_make_returns_torchs_own_class(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch._dynamo", sys.modules.get("torch._dynamo") or object())
    assert type(eager_optim.make(torch.optim.Adam, _params(0), lr=0.1)) is torch.optim.Adam
    monkeypatch.delitem(sys.modules, "torch._dynamo")
    assert type(eager_optim.make(torch.optim.Adam, _params(0), lr=0.1)) is eager_optim.Adam


def test_a_trial_trained_in_a_fresh_process_never_imports_torch_dynamo():
    """Before: torch.optim's first optimizer imported it (1.5-2.3 s of CPU in every trial
    worker's first trial)."""
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "tests")
        from synthetic_splits import synthetic_splits
        from hidden_core.config import RunOptions, make_config
        from hidden_core.training import train_network
        for optimizer in ("sgd", "adam"):
            config = make_config({"method": "edge_popup", "model": "mlp", "mlp_units": 8, "epochs": 2, "batch_size": 32,
                                  "optimizer": optimizer, "schedule": "cosine"})
            train_network(config, RunOptions(device="cpu", threads=1), data=synthetic_splits(n=96, classes=10))
        print("torch._dynamo imported:", "torch._dynamo" in sys.modules)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch._dynamo imported: False" in done.stdout
