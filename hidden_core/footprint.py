"""How big a trial is before it runs: parameter count and a memory estimate.

The network is built on PyTorch's ``meta`` device (shapes only, no storage), so a trial of
10^10 weights is measured in milliseconds and without the memory it would need. The
estimate is deliberately rough and on the high side, for refusing what cannot fit, not for
packing trials:

    bytes ~ parameters * BYTES_PER_PARAMETER + activations * BYTES_PER_ACTIVATION

- ``BYTES_PER_PARAMETER`` = 24: the float32 weight, its score/mask or logit, a gradient,
  up to two optimizer moments (Adam) and the mask cache: six float32 values per weight.
- activations: every leaf module's output for one training batch (a meta forward pass),
  float32, kept for backward and matched by a gradient of the same size: 8 bytes each.

Data sets are not counted (the largest supported one, CIFAR-100 as float32, is 0.7 GB).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hidden_core.config import TrialConfig
from hidden_core.errors import ConfigError

BYTES_PER_PARAMETER = 24
BYTES_PER_ACTIVATION = 8
MAX_ARCHITECTURES = 64  # distinct architectures measured per spec (each build is ~1-100 ms)
ARCHITECTURE_FIELDS = ("model", "dataset", "width", "depth", "mlp_units", "norm")


@dataclass(frozen=True)
class Footprint:
    config: TrialConfig
    parameters: int
    activations: int  # float values of one training batch's forward pass

    @property
    def bytes(self) -> int:
        return self.parameters * BYTES_PER_PARAMETER + self.activations * BYTES_PER_ACTIVATION


def parameter_count(config: TrialConfig) -> int:
    import torch

    from hidden_core.models import build_architecture

    with torch.device("meta"):
        net = build_architecture(config)
    return sum(p.numel() for p in net.parameters())


def activation_count(config: TrialConfig) -> int:
    import torch

    from hidden_core.models import build_architecture

    with torch.device("meta"):
        net = build_architecture(config)
    total = 0

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(torch.empty(config.batch_size, *config.dataset_info.input_shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def largest(configs: Iterable[TrialConfig]) -> Footprint | None:
    """The footprint of the biggest of `configs` (by parameters, then batch size)."""
    by_architecture: dict[tuple[Any, ...], TrialConfig] = {}
    for config in configs:
        key = tuple(getattr(config, f) for f in ARCHITECTURE_FIELDS)
        if key not in by_architecture or config.batch_size > by_architecture[key].batch_size:
            by_architecture[key] = config
    if not by_architecture:
        return None
    candidates = sorted(by_architecture.values(), key=lambda c: (c.width * (c.depth or 1) * c.mlp_units), reverse=True)[:MAX_ARCHITECTURES]
    counted = [(parameter_count(c), c.batch_size, i) for i, c in enumerate(candidates)]
    parameters, _, index = max(counted)
    config = candidates[index]
    return Footprint(config, parameters, activation_count(config))


def machine_memory(device: str) -> tuple[int, str] | None:
    """(bytes, what) of the memory a trial on `device` ('cpu' or 'cuda') can use here, or None."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(0)
        return props.total_memory, f"GPU memory of {props.name}"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM of this machine"
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n < 2**40 else f"{n / 2**40:.1f} TiB"


def describe(footprint: Footprint, point: Sequence[tuple[str, Any]] = ()) -> str:
    c = footprint.config
    where = ", ".join(f"{a}={_value(v, a)}" for a, v in point)
    return (f"largest trial: {footprint.parameters:,} parameters, about {gib(footprint.bytes)} to train "
            f"({c.model} depth {c.depth} width {c.width:g} on {c.dataset}, batch {c.batch_size}{'; ' + where if where else ''})")


def require_fit(footprint: Footprint, device: str, point: Sequence[tuple[str, Any]] = ()) -> None:
    """ConfigError naming the fields when the largest trial cannot fit this machine."""
    memory = machine_memory(device)
    if memory is None or footprint.bytes <= memory[0]:
        return
    size_fields = [f for f in ("width", "depth", "mlp_units", "batch_size") if any(a == f or (isinstance(v, dict) and f in v) for a, v in point)]
    where = f"grid ({', '.join(f'{a}={_value(v, a)}' for a, v in point)})" if point else "base"
    fields = ", ".join(size_fields) or "width, depth, mlp_units or batch_size"
    raise ConfigError([
        f"{where}: a trial needs about {gib(footprint.bytes)} ({footprint.parameters:,} parameters, batch {footprint.config.batch_size}) "
        f"but the {memory[1]} is {gib(memory[0])}; lower {fields}"
    ])


def _value(value: Any, axis: str) -> Any:
    return value.get(axis) if isinstance(value, dict) else value


def plan_footprint(plan: Any) -> tuple[Footprint, tuple[tuple[str, Any], ...]] | None:
    """The largest trial of a spec's Plan and its grid point (axis, value) pairs."""
    entries = [(t.config, t.point) for t in plan.trials] + [(p.template, p.point) for p in plan.points]
    footprint = largest(config for config, _ in entries)
    if footprint is None:
        return None
    point = next(p for config, p in entries if config == footprint.config)
    return footprint, point


def require_device(name: str) -> None:
    """ConfigError when the device a run asks for is not on this machine, naming what is."""
    if name in ("auto", "cpu"):
        return
    import torch

    available = ["cpu"]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    available += [f"cuda:{i}" for i in range(count)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.append("mps")
    if name == "cuda" and count:
        return
    if name in available:
        return
    why = ("this torch was built without CUDA" if not torch.backends.cuda.is_built() else "no CUDA GPU is visible") if name.startswith("cuda") and not count else "it is not on this machine"
    raise ConfigError([f"device: {name!r} is not available ({why}); available here: {', '.join(available)}, or auto"])
