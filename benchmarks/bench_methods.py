"""Training-step cost of each method, edge-popup's mask selection, width scaling, compile.

    python -m benchmarks.bench_methods [--device cpu|cuda] [--quick] [--threads N] [--only PARTS]

1. Method overhead: one training step (forward + loss + backward + optimizer step, the
   body of hidden_core.training's hot loop) of every method relative to `dense` on the
   same model, data and batch: Conv4 at batch 128 on 32x32x3 random data (batch 32 with
   --quick on a CPU), and the default MLP (2 x 100 units) on MNIST-1D-shaped data at batch
   128. bn_only needs BatchNorm layers, so it is compared with dense on the same BatchNorm
   network. The MLP table also shows a `floor`: the cheapest possible learned
   parametrization (w * s), i.e. what any method built on torch.nn.utils.parametrize pays.
2. Mask selection: edge-popup with our per-layer threshold against the reference approach
   of allenai/hidden-networks (GetSubnet sorts every layer's scores each forward and
   scatters 0/1 into a mask), and the threshold primitives (kthvalue, topk, sort, numpy
   partition) timed on Conv4's layers on the device, with the fastest named.
6. Scaling: step time of dense and edge_popup on Conv4 at widths 0.25..8; the ratio must
   stay flat. On the CPU at batch 16 (SCALING_BATCH_CPU): width 8 (about 140M weights) then
   takes about 10 s a step, so the table fits the time budget; with --quick widths 0.25..2.
compile (full runs): eager vs torch.compile'd step, the compile time with a cold cache, and
   the steps needed to repay it against a default trial's steps.
On CUDA also: Conv4 images/s per method (bf16 autocast, channels_last, as training runs)
and the fraction of the GPU's peak (FLOPs per image counted by FlopCounterMode).

How it measures: every Step runs with the learning rate set to 0, so each network stays at
its initialization and every candidate does the same work every step (with lr 0.1 on a
fixed random batch, dense Conv4 dies within 5 steps into all-zero activations, whose kernels
are cheaper, which flattered dense). On the CPU with one thread the clock is the process's
CPU time (common.step_clock): it leaves out the time other jobs hold the core.

`run(device, quick, tiny=False)` returns report rows for benchmarks.run_all; NOTES is the
analysis printed into RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext

import torch
from torch import nn

from benchmarks.common import (
    format_rows,
    info,
    interleaved,
    median,
    paired_ratio,
    row,
    set_threads,
    step_clock,
    synchronizer,
)
from hidden_core.config import METHODS, make_config
from hidden_core.distributions import weight_layers
from hidden_core.methods import build_model
from hidden_core.methods.base import WeightParametrization, parametrization_of
from hidden_core.methods.edge_popup import SELECTION, THRESHOLDS
from hidden_core.training import make_optimizer

NOTES = """\
- Before/after the fast paths in hidden_core/methods/edge_popup.py (old and new TopKMask
  interleaved in one process with dense, CPU time, 1 thread, bit-identical training):
  Conv4 b128 edge_popup/dense 1.12x -> 1.02x; MLP 1.95x -> 1.62x; Conv4 width 4 b16
  1.72x -> 1.26x. The changes: the threshold by numpy partition on the CPU (4 ms for all
  of Conv4's layers, against 35 ms for torch.kthvalue and 270 ms for a sort), and
  abs + threshold + mask + product as one autograd node that partitions its magnitudes
  buffer in place and reuses it for the 0/1 mask (4 fewer weight-sized tensors a layer).
- Conv4, edge_popup vs dense: what is left of edge-popup's own work is small (about 15 ms
  of a 1.2 s step in torch.profiler); the rest of the spread between runs (1.00-1.08x) is
  noise: the same step varies by +-15% in CPU time from round to round on this shared
  machine, hence the extra dense/edge_popup rounds for this figure.
- MLP on MNIST-1D (every masked method misses): a dense step is 0.7 ms of about 40 small
  ops, so a method pays per op, not per weight. The `floor` row, the cheapest possible
  parametrization (w * s, no selection), already costs 1.12-1.18x: the parametrize getter
  plus one product and its backward per layer, about 40 us a layer here. edge_popup adds
  abs, threshold (15-25 us a layer), compare and product forward and 3 ops backward.
  torch.compile does not pay here (compile rows: no faster on this CPU, 8-13 s to
  compile, for an 870-step trial). Meeting 1.05x would take fusing the method into the
  layer (no parametrize), i.e. a change of the method architecture.
- Selection (ours vs the sorting reference) is bounded by the step: the reference's extra
  cost is its sort + scatter (about 0.3 s a Conv4 step), ours 4 ms, on a 1.1-1.2 s step,
  so the ratio sits at 1.25-1.33x however fast our selection is (2x at batch 32); the
  threshold rows show the selection itself is 60x faster than a sort on the CPU.
- Scaling on the CPU: flat (1.06-1.15x) from width 0.25 to 1; from width 2 on, Conv4's
  first linear layer (2.1M x width^2 weights) outgrows the cache, and above 32 MB every
  fresh tensor is new mmapped memory (page faults), so edge-popup's elementwise passes over
  the weights (abs, mask, product, gradient x weight x sign) turn memory-bound while
  dense's convolutions stay compute-bound. Measured at width 4, batch 16 (edge_popup
  overhead 436 ms a step): products 177 ms, abs 95 ms, sign 95 ms, partition 56 ms. On a
  GPU these passes run at memory bandwidth, small next to the convolutions.
- CUDA selection: SELECTION["cuda"] is still kthvalue, not measured (no GPU was available
  to this work); the "threshold on cuda" rows name the fastest and flag a wrong choice.
"""

EDGE_POPUP_TARGET = 1.05
METHOD_TARGET = 1.2
SELECTION_TARGET = 1.3
SCALING_FLATNESS = 1.10  # max/min of the edge_popup/dense ratio across widths
SCALING_WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SCALING_BATCH_CPU = 16  # width 8 (about 140M weights) takes about 10 s a step at 16
SCALING_BATCH_CUDA = 128

CONV4 = {"model": "convnet", "depth": 4, "dataset": "cifar10"}
MLP = {"model": "mlp", "dataset": "mnist1d"}

# Dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name().
# First match wins (so "H100 PCIe" precedes "H100"). Override with --peak-tflops.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("V100", 125.0),  # fp16: V100 has no bf16
    ("T4", 65.0),  # fp16
)


# ---- one training step, as hidden_core.training runs it -------------------------------
class Step:
    """A built network, its optimizer and one fixed random batch; calling it runs one
    training step exactly as hidden_core.training's hot loop does (autocast and
    channels_last on CUDA, penalty, zero_grad, backward, step, on-device accumulators),
    with the learning rate set to 0 (see below)."""

    def __init__(self, method: str, shape: dict, *, batch: int, device: torch.device, width: float = 1.0, norm: str | None = None, compile: bool = False):
        self.config = make_config(method=method, width=width, batch_size=batch, **({"norm": norm} if norm else {}), **shape)
        info_ = self.config.dataset_info
        self.model = build_model(self.config, device)
        self.model.train()
        self.channels_last = device.type == "cuda" and self.config.model != "mlp" and len(info_.input_shape) == 3
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.config, [p for p in self.model.parameters() if p.requires_grad])
        # lr 0: the optimizer does all its work (momentum, weight decay, update) but the
        # network stays at its initialization. With lr 0.1 on a fixed random batch, dense
        # Conv4 (no BatchNorm) diverges within 5 steps to all-zero activations, whose
        # kernels are cheaper: every method must be timed on a live network.
        for group in self.optimizer.param_groups:
            group["lr"] = 0.0
        self.forward = torch.compile(self.model) if compile else self.model
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        self.loss_fn = nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch, *info_.input_shape, generator=generator)
        self.x = x.to(device).contiguous(memory_format=torch.channels_last) if self.channels_last else x.to(device)
        self.y = torch.randint(0, info_.num_classes, (batch,), generator=generator).to(device)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.int64)

    def __call__(self) -> None:
        with self.autocast:
            logits = self.forward(self.x)
            loss = self.loss_fn(logits, self.y)
            penalty = self.model.penalty()
            if penalty is not None:
                loss = loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(self.y)
        self.correct += (logits.detach().argmax(1) == self.y).sum()


# ---- the reference edge-popup mask (allenai/hidden-networks, simple_initialization) ----
class _GetSubnet(torch.autograd.Function):
    """hidden-networks' GetSubnet: sort all scores, zero the bottom (1-k), one the rest;
    straight-through gradient."""

    @staticmethod
    def forward(ctx, scores, k):
        out = scores.clone()
        _, idx = scores.flatten().sort()
        j = int((1 - k) * scores.numel())
        flat_out = out.flatten()
        flat_out[idx[:j]] = 0
        flat_out[idx[j:]] = 1
        return out

    @staticmethod
    def backward(ctx, g):
        return g, None


class ReferenceSortMask(WeightParametrization):
    """SubnetConv.forward's `w = self.weight * GetSubnet.apply(self.scores.abs(), k)`."""

    def __init__(self, scores: nn.Parameter, keep_fraction: float):
        super().__init__()
        self.scores = scores
        self.keep_fraction = keep_fraction

    def forward(self, weight):
        return weight * _GetSubnet.apply(self.scores.abs(), self.keep_fraction)


class _ScaledWeight(WeightParametrization):
    """The cheapest learned re-parametrization there is (w * s): what any method built on
    torch.nn.utils.parametrize pays at least (the `floor` row of the overhead tables)."""

    def __init__(self, scores: nn.Parameter):
        super().__init__()
        self.scores = scores

    def forward(self, weight):
        return weight * self.scores


def use_floor_parametrization(step: Step) -> Step:
    for layer in weight_layers(step.model.net):
        layer.parametrizations.weight[0] = _ScaledWeight(parametrization_of(layer).scores)
    return step


def use_reference_selection(step: Step) -> Step:
    """Swap every TopKMask of an edge_popup Step for the sorting reference (same scores)."""
    for layer in weight_layers(step.model.net):
        ours = parametrization_of(layer)
        layer.parametrizations.weight[0] = ReferenceSortMask(ours.scores, step.config.keep_fraction)
    return step


# ---- 1. method overhead ---------------------------------------------------------------
def method_overhead(
    label: str, shape: dict, *, batch: int, device: torch.device, rounds: int, inner: int, budget_s: float,
    width: float = 1.0, floor: bool = False, pair_rounds: int = 0, pair_budget_s: float = 0.0,
) -> list[dict]:
    """Every method against dense, interleaved. pair_rounds: then dense and edge_popup alone
    for that many more rounds (the 1.05x target needs a tighter figure than a 9-way
    interleaving gives in the same time); edge_popup's ratio is the median over all rounds."""
    steps = {m: Step(m, shape, batch=batch, device=device, width=width) for m in METHODS if m != "bn_only"}
    steps["dense+bn"] = Step("dense", shape, batch=batch, device=device, width=width, norm="batchnorm")
    steps["bn_only"] = Step("bn_only", shape, batch=batch, device=device, width=width)
    if floor:
        steps["floor"] = use_floor_parametrization(Step("edge_popup", shape, batch=batch, device=device, width=width))
    times = interleaved(steps, warmup=1, rounds=rounds, inner=inner, budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
    n = len(times["dense"])
    rows = [info(f"{label}: dense step time (median of {n})", round(1e3 * median(times["dense"]), 3), "ms")]
    popup_ratios = [a / b for a, b in zip(times["edge_popup"], times["dense"], strict=True)]
    if pair_rounds:
        pair = interleaved({m: steps[m] for m in ("dense", "edge_popup")}, warmup=0, rounds=pair_rounds, inner=inner, budget_s=pair_budget_s, sync=synchronizer(device), clock=step_clock(device))
        popup_ratios += [a / b for a, b in zip(pair["edge_popup"], pair["dense"], strict=True)]
    if floor:
        rows.append(info(f"{label}: floor (w * s through parametrize, no selection) / dense", round(paired_ratio(times, "floor", "dense"), 3), "x"))
    for method in METHODS:
        if method == "dense":
            continue
        reference = "dense+bn" if method == "bn_only" else "dense"
        ratio = median(popup_ratios) if method == "edge_popup" else paired_ratio(times, method, reference)
        target = EDGE_POPUP_TARGET if method == "edge_popup" else METHOD_TARGET
        note = " (vs dense with BatchNorm)" if method == "bn_only" else f" (median of {len(popup_ratios)} rounds)" if method == "edge_popup" else ""
        rows.append(row(f"{label}: {method} / dense step time{note}", round(ratio, 3), "x", f"<= {target:g}x", ratio <= target))
    return rows


# ---- 2. mask selection ----------------------------------------------------------------
def selection_vs_reference(*, batch: int, device: torch.device, rounds: int, budget_s: float, width: float = 1.0) -> list[dict]:
    steps = {
        "ours": Step("edge_popup", CONV4, batch=batch, device=device, width=width),
        "reference (sort)": use_reference_selection(Step("edge_popup", CONV4, batch=batch, device=device, width=width)),
    }
    times = interleaved(steps, warmup=1, rounds=rounds, budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
    speedup = paired_ratio(times, "reference (sort)", "ours")
    return [
        row(f"selection: Conv4 b{batch} step, reference sort / ours", round(speedup, 3), "x", f">= {SELECTION_TARGET:g}x", speedup >= SELECTION_TARGET),
        info(f"selection: Conv4 b{batch} step, ours (median)", round(1e3 * median(times["ours"]), 2), "ms"),
        info(f"selection: Conv4 b{batch} step, reference (median)", round(1e3 * median(times["reference (sort)"]), 2), "ms"),
    ]


def threshold_primitives(*, device: torch.device, rounds: int, width: float = 1.0) -> tuple[list[dict], str]:
    """Time each threshold primitive over all of Conv4's layers (one step's selections)."""
    net = build_model(make_config(method="edge_popup", width=width, **CONV4), device).net
    magnitudes = [parametrization_of(layer).scores.detach().abs().view(-1) for layer in weight_layers(net)]
    kept = [parametrization_of(layer).kept for layer in weight_layers(net)]
    available = [name for name in THRESHOLDS if device.type == "cpu" or name != "partition"]

    def all_layers(name):
        fn = THRESHOLDS[name]
        return lambda: [fn(m, k) for m, k in zip(magnitudes, kept, strict=True)]

    expected = [THRESHOLDS["sort"](m, k) for m, k in zip(magnitudes, kept, strict=True)]
    for name in available:
        got = all_layers(name)()
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True)), f"{name} disagrees with sort"
    times = interleaved({name: all_layers(name) for name in available}, warmup=1, rounds=rounds, sync=synchronizer(device), clock=step_clock(device))
    best = min(available, key=lambda name: median(times[name]))
    rows = [info(f"threshold on {device.type}: {name}, all Conv4 layers (median)", round(1e3 * median(times[name]), 3), "ms") for name in available]
    chosen = SELECTION.get(device.type, "kthvalue")
    ratio = median(times[chosen]) / median(times[best])
    rows.append(row(f"threshold on {device.type}: fastest is {best}; SELECTION uses {chosen}", round(ratio, 3), "x of best", "<= 1.1x of best", ratio <= 1.1))
    return rows, best


# ---- 6. scaling -----------------------------------------------------------------------
def scaling(*, widths: tuple[float, ...], batch: int, device: torch.device, rounds: int, budget_s: float) -> list[dict]:
    rows = []
    ratios = []
    for width in widths:
        steps = {m: Step(m, CONV4, batch=batch, device=device, width=width) for m in ("dense", "edge_popup")}
        times = interleaved(steps, warmup=1, rounds=rounds, budget_s=budget_s / len(widths), sync=synchronizer(device), clock=step_clock(device))
        ratio = paired_ratio(times, "edge_popup", "dense")
        ratios.append(ratio)
        rows.append(info(f"scaling: Conv4 width {width:g} b{batch}, edge_popup / dense (dense {1e3 * median(times['dense']):.1f} ms)", round(ratio, 3), "x"))
        del steps
    spread = max(ratios) / min(ratios)
    rows.append(row(f"scaling: edge_popup/dense ratio, max/min over widths {widths[0]:g}..{widths[-1]:g}", round(spread, 3), "x", f"<= {SCALING_FLATNESS:g}x", spread <= SCALING_FLATNESS))
    rows.append(row("scaling: edge_popup/dense ratio at the widest width", round(ratios[-1], 3), "x", f"<= {METHOD_TARGET:g}x", ratios[-1] <= METHOD_TARGET))
    return rows


# ---- torch.compile: does it pay for itself within a trial? ----------------------------
def compile_tradeoff(label: str, shape: dict, *, batch: int, device: torch.device, rounds: int, inner: int, trial_steps: int) -> list[dict]:
    """Compiled vs eager step of dense and edge_popup, the (cold-cache) compile time, and
    how many steps repay it, against the steps of a default trial."""
    import torch._dynamo
    import torch._inductor.config as inductor_config

    rows = []
    for method in ("dense", "edge_popup"):
        eager = Step(method, shape, batch=batch, device=device)
        compiled = Step(method, shape, batch=batch, device=device, compile=True)
        torch._dynamo.reset()
        sync = synchronizer(device)
        with _patched(inductor_config, force_disable_caches=True):
            started = time.perf_counter()
            compiled()  # compiles forward and backward
            sync()
            compile_s = time.perf_counter() - started
        times = interleaved({"eager": eager, "compiled": compiled}, warmup=1, rounds=rounds, inner=inner, sync=sync, clock=step_clock(device))
        speedup = paired_ratio(times, "eager", "compiled")
        saved = median(times["eager"]) - median(times["compiled"])
        repay = compile_s / saved if saved > 0 else float("inf")
        wins = repay < trial_steps
        rows.append(info(f"compile: {label} {method}, eager / compiled step time", round(speedup, 3), "x"))
        rows.append(info(f"compile: {label} {method}, compile time (cold cache)", round(compile_s, 1), "s"))
        rows.append(info(f"compile: {label} {method}, steps to repay it (trial: {trial_steps}) -> {'use' if wins else 'skip'} compile", round(repay) if saved > 0 else "never", "steps"))
    torch._dynamo.reset()
    return rows


class _patched:
    def __init__(self, obj, **values):
        self.obj, self.values, self.saved = obj, values, {}

    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = getattr(self.obj, key)
            setattr(self.obj, key, value)

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            setattr(self.obj, key, value)


def trial_steps(n_train: int, batch: int = 128, epochs: int = 30) -> int:
    """Optimizer steps of a trial at the TrialConfig defaults (30 epochs, batch 128)."""
    return epochs * -(-n_train // batch)


# ---- GPU throughput -------------------------------------------------------------------
def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


def flops_per_image(step: Step, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / batch


def gpu_throughput(*, device: torch.device, batch: int, rounds: int, budget_s: float, peak: float | None, width: float = 1.0, inner: int = 10) -> list[dict]:
    """Conv4 images/s per method as training runs it, and the fraction of the device's
    peak: (training FLOPs per image, forward + backward as FlopCounterMode counts them for
    that method) x images/s / peak."""
    steps = {m: Step(m, CONV4, batch=batch, device=device, width=width) for m in METHODS}
    flops = {m: flops_per_image(s, batch) for m, s in steps.items()}
    times = interleaved(steps, warmup=min(3, inner), rounds=rounds, inner=inner, budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
    kind = "bf16, channels_last" if device.type == "cuda" else "fp32"
    rows = []
    for m in METHODS:
        images_s = batch / median(times[m])
        rows.append(info(f"{device.type}: Conv4 b{batch} {m} images/s ({kind})", round(images_s), "img/s"))
        if peak:
            fraction = flops[m] * images_s / (peak * 1e12)
            rows.append(info(f"{device.type}: Conv4 {m} fraction of peak ({flops[m] / 1e9:.2f} GFLOP/img, peak {peak:g} TFLOP/s)", round(fraction, 4), "of peak"))
    if not peak:
        rows.append(info(f"{device.type}: fraction of peak not computed: unknown device, pass --peak-tflops", "-"))
    return rows


# ---- driver ---------------------------------------------------------------------------
PARTS = ("conv4", "mlp", "selection", "thresholds", "compile", "scaling", "gpu")
MNIST1D_TRAIN = 3600  # mnist1d training examples at the default val_fraction 0.1
CIFAR_TRAIN = 45000


def run(device: str = "cpu", quick: bool = False, tiny: bool = False, peak: float | None = None, parts: tuple[str, ...] = PARTS) -> list[dict]:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    rows: list[dict] = []
    if tiny:  # smoke test: every code path, a few steps, meaningless numbers
        rows += method_overhead("tiny Conv4", CONV4, batch=2, device=dev, rounds=1, inner=1, budget_s=0, width=0.125, pair_rounds=1)
        rows += method_overhead("tiny MLP", MLP, batch=8, device=dev, rounds=1, inner=1, budget_s=0, floor=True)
        rows += selection_vs_reference(batch=2, device=dev, rounds=1, budget_s=0, width=0.125)
        rows += threshold_primitives(device=dev, rounds=1, width=0.125)[0]
        rows += scaling(widths=(0.125, 0.25), batch=2, device=dev, rounds=1, budget_s=0)
        rows += gpu_throughput(device=dev, batch=4, rounds=1, budget_s=0, peak=peak or 1.0, width=0.125, inner=1)
        return rows
    conv_batch = 128 if (cuda or not quick) else 32
    if "conv4" in parts:
        rows += method_overhead(
            f"Conv4 b{conv_batch}", CONV4, batch=conv_batch, device=dev, rounds=3 if quick else 4, inner=10 if cuda else 1, budget_s=20 if quick else 60,
            pair_rounds=6 if quick else 16, pair_budget_s=10 if quick else 45,
        )
    if "mlp" in parts:
        rows += method_overhead("MLP mnist1d b128", MLP, batch=128, device=dev, rounds=7 if quick else 21, inner=20, budget_s=5 if quick else 20, floor=True)
    if "selection" in parts:
        rows += selection_vs_reference(batch=conv_batch, device=dev, rounds=3 if quick else 7, budget_s=10 if quick else 40)
    if "thresholds" in parts:
        rows += threshold_primitives(device=dev, rounds=5 if quick else 15)[0]
    if "compile" in parts and not quick:
        rows += compile_tradeoff("MLP mnist1d b128", MLP, batch=128, device=dev, rounds=11, inner=20, trial_steps=trial_steps(MNIST1D_TRAIN))
        if cuda:
            rows += compile_tradeoff("Conv4 b128", CONV4, batch=128, device=dev, rounds=5, inner=10, trial_steps=trial_steps(CIFAR_TRAIN))
    if "scaling" in parts:
        widths = SCALING_WIDTHS[:4] if quick else SCALING_WIDTHS
        rows += scaling(widths=widths, batch=SCALING_BATCH_CUDA if cuda else SCALING_BATCH_CPU, device=dev, rounds=3 if quick else 5, budget_s=15 if quick else 80)
    if cuda and "gpu" in parts:
        rows += gpu_throughput(device=dev, batch=128, rounds=5, budget_s=60, peak=peak_tflops(dev, peak))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="smoke test: tiny models, one round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args()
    set_threads(args.threads)
    rows = run(args.device, args.quick, args.tiny, args.peak_tflops, tuple(args.only.split(",")))
    print(format_rows(rows))
    return 0 if all(r["met"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
