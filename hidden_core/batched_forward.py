"""A plain architecture run on several seeds' tensors at once.

`batched_forward(skeleton)` returns a function f(state, x) -> logits where every tensor in
`state` (the skeleton's state_dict keys) and x carry a leading seed dimension, or x has
none (evaluation: the same inputs for every seed). Two implementations, the same values:

- `LayerInterpreter`: the skeleton traced by torch.fx, each layer run by one batched
  kernel (Linear: one bmm; BatchNorm1d: one batch_norm over seeds x channels). Only for
  graphs made of the layers it knows (the MLP); about 1.5x faster than vmap on the
  MNIST-1D MLP on the CPU (benchmarks/bench_vectorized.py).
- `torch.func.vmap(functional_call(skeleton, ...))`: any architecture (conv nets, ResNets).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

Forward = Callable[[dict[str, torch.Tensor], torch.Tensor, bool], torch.Tensor]


class NotBatchable(Exception):
    """The skeleton has a layer the interpreter has no batched kernel for."""


def _linear(module: nn.Linear, state, prefix, x, training):
    out = torch.bmm(x, state[prefix + "weight"].transpose(1, 2))
    if module.bias is not None:
        out = out + state[prefix + "bias"].unsqueeze(1)
    return out


def _relu(module: nn.ReLU, state, prefix, x, training):
    return F.relu(x, inplace=module.inplace)


def _flatten(module: nn.Flatten, state, prefix, x, training):
    if module.start_dim != 1 or module.end_dim != -1:
        raise NotBatchable("Flatten other than (1, -1)")
    return x.flatten(2)


def _batchnorm1d(module: nn.BatchNorm1d, state, prefix, x, training):
    """(seeds, batch, channels): each seed's own batch statistics and running stats, in one
    batch_norm over seeds x channels. The running stats are views of the stacked buffers,
    so batch_norm's in-place update lands in them."""
    seeds, batch, channels = x.shape
    stats = state[prefix + "running_mean"], state[prefix + "running_var"]
    out = F.batch_norm(
        x.transpose(0, 1).reshape(batch, seeds * channels),
        stats[0].view(-1),
        stats[1].view(-1),
        state[prefix + "weight"].reshape(-1),
        state[prefix + "bias"].reshape(-1),
        training,
        module.momentum,
        module.eps,
    )
    if training:
        state[prefix + "num_batches_tracked"].add_(1)
    return out.view(batch, seeds, channels).transpose(0, 1)


KERNELS: dict[type, Callable] = {nn.Linear: _linear, nn.ReLU: _relu, nn.Flatten: _flatten, nn.BatchNorm1d: _batchnorm1d}


class LayerInterpreter:
    """The skeleton's fx graph, each call_module node run by its batched kernel."""

    def __init__(self, skeleton: nn.Module):
        try:
            self.graph = torch.fx.symbolic_trace(skeleton).graph
        except Exception as err:  # noqa: BLE001 - fx raises many kinds on untraceable code
            raise NotBatchable(f"not traceable: {err}") from None
        modules = dict(skeleton.named_modules())
        self.steps = []
        for node in self.graph.nodes:
            if node.op == "call_module":
                module = modules[node.target]
                kernel = KERNELS.get(type(module))
                if kernel is None:
                    raise NotBatchable(type(module).__name__)
                if isinstance(module, nn.BatchNorm1d) and (module.momentum is None or not module.affine or not module.track_running_stats):
                    raise NotBatchable("BatchNorm1d without momentum, affine or running stats")
                self.steps.append((node, kernel, module, node.target + "."))
            elif node.op == "call_function" and node.target not in (F.relu, torch.relu, operator.add):
                raise NotBatchable(str(node.target))
            elif node.op not in ("placeholder", "output", "call_module", "call_function"):
                raise NotBatchable(node.op)
        self.nodes = list(self.graph.nodes)
        self.kernels = {node: (kernel, module, prefix) for node, kernel, module, prefix in self.steps}

    def __call__(self, state: dict[str, torch.Tensor], x: torch.Tensor, training: bool) -> torch.Tensor:
        values = {}
        for node in self.nodes:
            if node.op == "placeholder":
                values[node] = x
            elif node.op == "call_module":
                kernel, module, prefix = self.kernels[node]
                values[node] = kernel(module, state, prefix, values[node.args[0]], training)
            elif node.op == "call_function":
                args = [values[a] if isinstance(a, torch.fx.Node) else a for a in node.args]
                values[node] = node.target(*args, **node.kwargs)
            else:  # output
                return values[node.args[0]]
        raise AssertionError("graph without output")


def vmapped(skeleton: nn.Module) -> Forward:
    def one(state, x):
        return functional_call(skeleton, state, (x,))

    def forward(state, x, training):
        skeleton.train(training)
        return vmap(one)(state, x)

    return forward


def batched_forward(skeleton: nn.Module, prefer: str = "auto") -> tuple[str, Forward]:
    """(name, f): the layer interpreter where it applies (prefer 'auto' or 'layers'), else
    vmap. f(state, x, training) takes x with the seed dimension."""
    if prefer in ("auto", "layers"):
        try:
            interpreter = LayerInterpreter(skeleton)
            return "layers", interpreter
        except NotBatchable:
            if prefer == "layers":
                raise
    return "vmap", vmapped(skeleton)


__all__ = ["KERNELS", "LayerInterpreter", "NotBatchable", "batched_forward", "vmapped"]
