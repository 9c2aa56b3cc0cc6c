"""What a trial learned, out of a trained HiddenNetwork into a file, and back into a plain
network: the random weights are never stored, they are regenerated from config + seed
(build_model draws them on the CPU from an explicit generator, so they are bit-identical).

What each method keeps of a weight layer is its parametrization's to say (file_tensors, and
file_weight to rebuild the layer; docs/subnetworks.md lists them for readers). For every
method the file also keeps the parameters it trained outside the weight layers' state (a
dense network's weights, BatchNorm gamma/beta, a trained output layer) and the buffers
training changed (BatchNorm running statistics), which evaluation needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import hidden_core
from hidden_core.catalog import OPTIONS
from hidden_core.config import RunOptions, TrialConfig
from hidden_core.distributions import WEIGHT_LAYER_TYPES
from hidden_core.methods import HiddenNetwork, build_model
from hidden_core.methods.base import numpy_of, original_weight, parametrization_of
from hidden_core.models import build_architecture
from hidden_core.subnet.fileformat import (
    WHOLE_KINDS,
    Packed,
    SubnetFile,
    SubnetFormatError,
    pack_bits,
    pack_uints,
    packed_bits,
    read_subnet_file,
    write_subnet_file,
)

_INTERNAL = "parametrizations."  # parameters and buffers that belong to a parametrization
RUN_FIELDS = ("amp", "channels_last", "eval_batch_size", "compile")


def weight_layer_names(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


@torch.no_grad()
def learned_tensors(model: HiddenNetwork) -> tuple[dict[str, np.ndarray], dict[str, list[int]], dict[str, int]]:
    """The file's tensors for a (trained) network, the shapes of its weight layers with a
    state, and the bits per entry of its packed tensors."""
    modules = dict(model.net.named_modules())
    tensors: dict[str, np.ndarray] = {}
    shapes: dict[str, list[int]] = {}
    packed: dict[str, int] = {}
    for name in weight_layer_names(model.net):
        p = parametrization_of(modules[name])
        if p is None:
            continue
        for kind, value in p.file_tensors(original_weight(modules[name])).items():
            key = f"{kind}/{name}"
            if isinstance(value, Packed):
                tensors[key], packed[key] = pack_uints(value.values, value.bits), value.bits
            elif value.dtype == np.bool_:
                tensors[key], packed[key] = pack_bits(value), 1
            else:
                tensors[key] = value
        shapes[name] = list(original_weight(modules[name]).shape)
    for name, param in model.net.named_parameters():
        if param.requires_grad and _INTERNAL not in name:
            tensors[f"param/{name}"] = numpy_of(param)
    for name, buffer in model.net.named_buffers():
        if _INTERNAL not in name:
            tensors[f"buffer/{name}"] = numpy_of(buffer)
    return tensors, shapes, packed


def _git_commit() -> str | None:
    from hidden_core.provenance import git_commit  # imports nothing of the project

    return git_commit()


def header_config(config: TrialConfig) -> dict[str, Any]:
    """The config a file's header carries: every core field, and of the methods' own options
    only its method's (the others mean nothing to it, and each new method would otherwise
    lengthen every file's header); make_config gives the rest their defaults, the same trial."""
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in OPTIONS or OPTIONS[k][0] == config.method}


def save_subnet(
    path: str | os.PathLike[str],
    model: HiddenNetwork,
    config: TrialConfig,
    *,
    result: Any = None,
    run: RunOptions | None = None,
    **extra: Any,
) -> Path:
    """Write `model`'s learned state to `path` (a .safetensors file). `result`: the
    TrialResult whose status and metrics go into the header; `extra`: more header entries
    (e.g. sweep=...)."""
    tensors, shapes, packed = learned_tensors(model)
    metrics = {}
    status = ""
    if result is not None:
        metrics = {k: v for k, v in result.to_dict().items() if isinstance(v, int | float) and not isinstance(v, bool)}
        status = result.status
    run = run or RunOptions()
    metadata = {
        "config": json.dumps(header_config(config), sort_keys=True),
        "trial_id": config.trial_id,
        "method": config.method,
        "shapes": json.dumps(shapes),
        "status": status,
        "metrics": json.dumps(metrics),
        "run": json.dumps({"device": getattr(result, "device", None), **{k: getattr(run, k) for k in RUN_FIELDS}}),
        "hidden_version": hidden_core.__version__,
        "git_commit": _git_commit() or "",
        "torch_version": torch.__version__,
        **{k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()},
    }
    if packed != packed_bits({}, tensors):  # written only when it is not the default (mask/ and sign/ in 1 bit)
        metadata["packed"] = json.dumps(packed, sort_keys=True)
    return write_subnet_file(path, tensors, metadata)


def _check_matches(f: SubnetFile, expected: dict[str, np.ndarray], expected_shapes: dict[str, list[int]], expected_packed: dict[str, int]) -> None:
    """The file holds exactly the tensors its config's network has: the same names, the same
    layer shapes and packing, parameters and buffers of their shapes and dtypes, and layer
    states of their dtypes (a state whose size depends on what was learned, e.g. a ticket's
    kept values, is checked by the parametrization's file_weight)."""
    missing = sorted(set(expected) - set(f.tensors))
    extra = sorted(set(f.tensors) - set(expected))
    if missing or extra:
        raise SubnetFormatError(f.path, f"tensors do not match the {f.config.method} network its config builds: "
                                        f"missing {missing or 'none'}, unexpected {extra or 'none'}")
    for layer, shape in expected_shapes.items():
        if tuple(f.shapes.get(layer, ())) != tuple(shape):
            raise SubnetFormatError(f.path, f"header shape of layer {layer!r} is {list(f.shapes.get(layer, ()))}, the network's is {shape}")
    packed = f.packed
    for name in expected:
        if packed.get(name) != expected_packed.get(name):
            raise SubnetFormatError(f.path, f"tensor {name!r} is packed in {packed.get(name)} bits per entry, the network's state in {expected_packed.get(name)}")
    for name, value in expected.items():
        got = f.tensors[name]
        whole = name.partition("/")[0] in WHOLE_KINDS or name in expected_packed
        if got.dtype != value.dtype or (whole and got.shape != value.shape):
            raise SubnetFormatError(f.path, f"tensor {name!r} is {got.dtype}{list(got.shape)}, the network needs {value.dtype}{list(value.shape)}")


# Rebuilding a file's network holds, per weight, the method's network (weight and score or
# mask: 2 float32), the plain network (1 float32) and a temporary: 16 bytes.
EVAL_BYTES_PER_PARAMETER = 16


def require_model_fits(f: SubnetFile) -> None:
    """SubnetFormatError (exit 2) when the network f's config declares would not fit in the
    memory budget (fileformat.memory_budget_bytes), measured on the meta device: nothing is
    allocated. A forged config (a huge width or depth) stops here, not in the allocator."""
    from hidden_core.footprint import parameter_count
    from hidden_core.subnet.fileformat import MEMORY_BUDGET_ENV, memory_budget_bytes

    parameters = parameter_count(f.config)
    need, budget = parameters * EVAL_BYTES_PER_PARAMETER, memory_budget_bytes()
    if need > budget:
        raise SubnetFormatError(f.path, f"its config ({f.config.model}, width {f.config.width:g}, depth {f.config.depth}) builds {parameters:,} "
                                        f"parameters, about {need / 2**30:.2f} GiB to rebuild, more than the memory budget of "
                                        f"{budget / 2**30:.2f} GiB (set {MEMORY_BUDGET_ENV} to raise it)")


def _on(value: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(value, order="C")).to(device)


def layer_states(f: SubnetFile) -> dict[str, dict[str, np.ndarray]]:
    """layer -> {kind: array}: every per-layer state of the file, packed ones unpacked."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in f.tensors:
        kind, _, layer = name.partition("/")
        if kind not in WHOLE_KINDS:
            out.setdefault(layer, {})[kind] = f.unpacked(name)
    return out


@torch.no_grad()
def materialize(
    f: SubnetFile,
    device: torch.device | str = "cpu",
    *,
    weights_seed: int | None = None,
    replace: dict[str, dict[str, np.ndarray]] | None = None,
) -> nn.Module:
    """A plain network (the architecture's own layers, no parametrization) with the file's
    effective weights. The controls swap parts: `weights_seed` draws the random weights with
    another seed, `replace` = {kind: {layer: array}} replaces stored states (masks and signs
    as bool arrays of the layer's shape)."""
    device = torch.device(device)
    require_model_fits(f)
    config = f.config if weights_seed is None else f.config.model_copy(update={"seed": weights_seed})
    hidden = build_model(config, device)
    _check_matches(f, *learned_tensors(hidden))
    states = layer_states(f)
    for kind, layers in (replace or {}).items():
        for layer, value in layers.items():
            states.setdefault(layer, {})[kind] = value
    with torch.random.fork_rng(devices=[]):  # the layers' default init must not move the caller's RNG
        plain = build_architecture(f.config).to(device)
    hidden_modules = dict(hidden.net.named_modules())
    plain_modules = dict(plain.named_modules())
    done: set[str] = set()
    for name in weight_layer_names(hidden.net):
        layer = hidden_modules[name]
        original = original_weight(layer)
        p = parametrization_of(layer)
        if p is not None:
            try:
                weight = p.file_weight(original, states.get(name, {}))
            except (ValueError, KeyError, RuntimeError) as err:
                raise SubnetFormatError(f.path, f"layer {name!r}: {err}") from None
        elif f"param/{name}.weight" in f.tensors:
            weight = _on(f.tensors[f"param/{name}.weight"], device)
        else:
            weight = original  # frozen and never re-parametrized (random_features' hidden layers)
        plain_modules[name].weight.copy_(weight)
        done.add(f"{name}.weight")
    hidden_params = dict(hidden.net.named_parameters())
    for name, param in plain.named_parameters():
        if name in done:
            continue
        stored = f.tensors.get(f"param/{name}")
        param.copy_(_on(stored, device) if stored is not None else hidden_params[name])
    for name, buffer in plain.named_buffers():
        buffer.copy_(_on(f.tensors[f"buffer/{name}"], device))
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain.eval()


def load_subnetwork(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """The subnetwork stored in `path` as a plain torch.nn.Module in eval mode, effective
    weights materialized: no dependency on hidden's parametrizations, usable anywhere."""
    return materialize(read_subnet_file(path), device)
