"""Vectorized seeds (hidden_core.vectorized) against one seed per trial, their memory, and
the method overhead of the effective-weights-once path.

    python -m benchmarks.bench_vectorized [--device cpu|cuda] [--quick] [--only PARTS]

1. cell: an MNIST-1D MLP cell of 8 seeds (the TrialConfig defaults: 2 x 100 units, batch
   128, SGD) trained for 2 epochs (val and test evaluated every epoch) by
   `train_seeds(config, 8 seeds)` against `train(config)` once per seed, interleaved in
   this process. The figure: samples/s of the cell / samples/s of one seed per trial
   (= 8 x one seed's time / the cell's time). One seed per trial pays here none of what a
   Ray trial pays around training (actor, network build, report round trips), so in a
   sweep the gain is at least this. Target >= 4x on the CPU, >= 10x on CUDA.
   steps: the same per training step and per method (8 one-seed steps of
   hidden_core.training's loop against one vectorized step), for the two batched
   forwards: `layers` (one bmm per Linear) and `vmap` (torch.func.vmap(functional_call)).
2. memory: peak RSS (ru_maxrss) of a fresh process that trains one seed, and of one that
   trains a vectorized cell of 8 seeds, same data (handed over in a file) and epochs. Target:
   the cell's under 8 x one seed's. Also what the training itself adds to the RSS it starts
   from (imports and data): the peak (VmHWM, reset through /proc/self/clear_refs just
   before training) minus the RSS before.
3. methods: each method's training step on the effective-weights-once path (a cell of one
   seed: every layer's effective weight computed once per step from the stacked
   tensors, the plain network through torch.func.functional_call, no parametrize getter)
   against today's dense step (hidden_core.training's loop, bench_methods.Step), on the
   MNIST-1D MLP; target <= 1.20x. Also each method's 8-seed vectorized step against the
   8-seed dense one. Conv4 width 8 (CPU: batch 16, as bench_methods' scaling; --quick:
   width 2) edge_popup on the path against dense as trained today; target <= 1.20x.

Every step runs with lr 0 (as bench_methods: each network stays at its initialization so
every candidate does the same work every round). Clock: process CPU time on a 1-thread
CPU (benchmarks.common.step_clock), wall time (synchronized) on CUDA.

4. sweep: the same grid of MLP seed cells run as a sweep on the embedded Ray, one trial per
   seed (vectorize: none) against one vectorized trial per cell (vectorize: seeds): trials
   per hour of the Tune phase, side by side (`sweep` below).

`run(device, quick, tiny=False)` returns report rows for benchmarks.run_all; NOTES is the
analysis printed into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from contextlib import nullcontext

import torch
from torch import nn

from benchmarks.bench_methods import CONV4, MLP, Step
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
from hidden_core.config import METHODS, RunOptions, make_config
from hidden_core.data import load_data
from hidden_core.methods import build_model
from hidden_core.training import train_network as train
from hidden_core.vectorized import SeedStack, train_seeds

NOTES = """\
- cell (target 4x missed on the CPU): on this CPU the MNIST-1D MLP's step is not mostly
  dispatch overhead but matmuls: 8 seeds' forward + backward matmuls in one bmm per layer
  cost 5.4x one seed's ("matmuls alone" row), so batching cannot shrink them; what it does
  shrink (optimizer, loss, elementwise ops, Python) gives 1.9-2.3x per training step
  across the methods and 2.0x for the whole cell with its evaluations. One seed per trial
  is measured here without any of what a Ray trial pays around training (about 0.7-1.9 s
  a trial in bench_sweep: actor, network build, statistics, report round trips), which a
  cell pays once for all its seeds: in a sweep the gain is larger than this figure. On a
  GPU (the 10x target) small matmuls are launch-bound, the case batching is for; not
  measured: no GPU was available to this work.
- layers vs vmap: one bmm per Linear beats torch.func.vmap(functional_call) on every
  method's 8-seed step (1.1-1.4x); the cross-entropy of all seeds as one kernel over
  (seeds, classes, batch) instead of under vmap saved 4x on that op (1.0 ms -> 0.25 ms).
- memory: a process's peak RSS (about 1 GB, nearly all of it the torch import) is paid
  once per cell instead of once per seed; the training itself adds about 180 MB to a
  one-seed process and about as much to a cell of 8.
- methods on the effective-weights-once path (target 1.20x missed for 5 methods): no
  cheaper than today's parametrize getters on the MLP. edge_popup and free_prune cost the
  same as today, sign_flip, learn_fraction and supermask more (a functional_call per
  layer costs what the getter saved; supermask draws per seed from its own generator).
  The overhead is the methods' own work per layer, not the getter: edge_popup's forward +
  backward of one 100x100 layer is about 250 us either way, 90 us of it numpy's partition.
  In a vectorized cell that per-layer cost is shared by the seeds: edge_popup 1.5x and
  free_prune 1.2x a vectorized dense step.
- sweep (no target; the issue's 4x is per cell): the same grid of MNIST-1D MLP cells (dense
  and edge_popup x 4 widths x 8 seeds = 64 trials, 5 epochs) as a sweep on the embedded Ray
  of this 2-core machine, one trial per seed against one vectorized Tune trial per cell:
  4109 against 6199 trials/hour of the Tune phase, 1.51x (2026-12-02, load average 8-14
  from other work; with 4 cells x 3 epochs 1.13-1.51x over three runs). Less than the
  cell's ratio because both runs pay the same fixed costs per actor: process start and
  imports, and torch._dynamo imported by the first optimizer (about 3 s of a cell's first
  4.6 s here), which a short sweep on few actors cannot amortize. In steady state a cell of
  8 edge_popup seeds trained an epoch (with evaluation, statistics, subnet files) in 0.37 s
  against 8 x 0.19 s one seed at a time. Which cells `vectorize: auto` turns on (MLP cells)
  follows from these figures; conv nets run through vmap, not measured in a sweep.
- Conv4 edge_popup on the path: 1.42x dense at width 4, batch 16, against 1.32x for
  today's edge_popup: at that width the cost is edge-popup's elementwise passes over the
  weights (bench_methods' scaling notes), which the path does not remove.
"""

CELL_SEEDS = 8
CELL_TARGET = {"cpu": 4.0, "cuda": 10.0}
METHOD_TARGET = 1.20


# ---- steps ----------------------------------------------------------------------------
class VectorStep:
    """One training step of a SeedStack of `seeds` seeds, each on its own fixed random
    batch, as hidden_core.vectorized's loop runs it, with lr 0."""

    def __init__(self, method: str, shape: dict, *, seeds: int, batch: int, device: torch.device, forward: str = "auto", width: float = 1.0, norm: str | None = None):
        config = make_config(method=method, width=width, batch_size=batch, **({"norm": norm} if norm else {}), **shape)
        models = [build_model(config.model_copy(update={"seed": s}), device) for s in range(seeds)]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        self.stack = SeedStack(config, models, device, nn.CrossEntropyLoss(), autocast, forward)
        for group in self.stack.optimizer.param_groups:
            group["lr"] = 0.0
        generator = torch.Generator().manual_seed(0)
        info_ = config.dataset_info
        self.x = torch.randn(seeds, batch, *info_.input_shape, generator=generator).to(device)
        self.y = torch.randint(0, info_.num_classes, (seeds, batch), generator=generator).to(device)
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in range(seeds)]

    def __call__(self) -> None:
        self.stack.step(self.x, self.y, self.generators)


def _per_seed(step: Step, seeds: int):
    return lambda: [step() for _ in range(seeds)]


def cell_steps(*, device: torch.device, methods: tuple[str, ...], seeds: int, rounds: int, inner: int, budget_s: float) -> list[dict]:
    rows = []
    for method in methods:
        norm = "batchnorm" if method == "bn_only" else None
        one = Step(method, MLP, batch=128, device=device, norm=norm) if norm else Step(method, MLP, batch=128, device=device)
        candidates = {"one seed per trial": _per_seed(one, seeds)}
        for forward in ("layers", "vmap"):
            candidates[forward] = VectorStep(method, MLP, seeds=seeds, batch=128, device=device, forward=forward, norm=norm)
        times = interleaved(candidates, warmup=1, rounds=rounds, inner=inner, budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
        for forward in ("layers", "vmap"):
            rows.append(info(f"steps: MLP {method}, {seeds} seeds, one per trial / vectorized ({forward})", round(paired_ratio(times, "one seed per trial", forward), 2), "x"))
    return rows


def matmul_floor(*, device: torch.device, seeds: int, rounds: int, inner: int) -> list[dict]:
    """The MLP's matmuls alone (forward and backward of 40-100-100-10 at batch 128): `seeds`
    seeds batched in one bmm per layer against one seed's plain matmuls. When this is
    near `seeds`, the matmuls are compute-bound and batching cannot shrink them: it bounds
    the vectorized speedup from above."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(100, 40), (100, 100), (10, 100)]

    def make(n):
        weights = [torch.randn(n, *s, generator=generator).to(device).requires_grad_() for s in shapes]
        x = torch.randn(n, 128, 40, generator=generator).to(device)

        def run():
            h = x
            for i, w in enumerate(weights):
                h = torch.bmm(h, w.transpose(1, 2)) if n > 1 else h[0].matmul(w[0].t()).unsqueeze(0)
                if i < len(weights) - 1:
                    h = torch.relu(h)
            h.sum().backward()

        return run

    times = interleaved({"one": make(1), "batched": make(seeds)}, warmup=1, rounds=rounds, inner=inner, sync=synchronizer(device), clock=step_clock(device))
    return [info(f"steps: MLP matmuls alone (fwd + bwd), {seeds} seeds in one bmm / one seed's", round(paired_ratio(times, "batched", "one"), 2), "x")]


# ---- 1. a whole cell ------------------------------------------------------------------
def cell(*, device: torch.device, seeds: int, epochs: int, rounds: int, budget_s: float, method: str = "dense", dataset: str = "mnist1d") -> list[dict]:
    config = make_config(method=method, epochs=epochs, **{**MLP, "dataset": dataset})
    run = RunOptions(device=str(device), threads=torch.get_num_threads())
    data = load_data(config, run)
    configs = [config.model_copy(update={"seed": s}) for s in range(seeds)]
    candidates = {
        "one seed per trial": lambda: [train(c, run, data=data) for c in configs],
        "vectorized": lambda: train_seeds(config, list(range(seeds)), run, data=data),
    }
    times = interleaved(candidates, warmup=1, rounds=rounds, budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
    ratio = paired_ratio(times, "one seed per trial", "vectorized")
    target = CELL_TARGET.get(device.type, CELL_TARGET["cpu"])
    samples = seeds * epochs * len(data.y_train)
    return [
        info(f"cell: MLP {dataset} {method} {seeds} seeds x {epochs} epochs, one seed per trial (median of {len(times['vectorized'])})", round(samples / median(times["one seed per trial"])), "samples/s"),
        info(f"cell: MLP {dataset} {method} {seeds} seeds x {epochs} epochs, vectorized", round(samples / median(times["vectorized"])), "samples/s"),
        row(f"cell: MLP {dataset} {method} {seeds} seeds, vectorized / one seed per trial, samples/s", round(ratio, 2), "x", f">= {target:g}x", ratio >= target),
    ]


# ---- 2. memory ------------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import json, resource, sys, torch
    from hidden_core.config import RunOptions, make_config
    from hidden_core.training import train_network as train
    from hidden_core.vectorized import train_seeds
    torch.set_num_threads(1)
    seeds, epochs, device, path, dataset = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    data = torch.load(path, weights_only=False)
    config = make_config(epochs=epochs, dataset=dataset, model="mlp")
    run = RunOptions(device=device, threads=1)

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS: what training adds shows
    before = status("VmRSS")
    if seeds == 0:
        train(config, run, data=data)
    else:
        train_seeds(config, list(range(seeds)), run, data=data)
    print(json.dumps({"before_kb": before, "training_peak_kb": status("VmHWM"), "process_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    """
)


def _child_rss(seeds: int, epochs: int, device: torch.device, data_path: str, dataset: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(seeds), str(epochs), str(device), data_path, dataset], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(*, device: torch.device, seeds: int, epochs: int, dataset: str = "mnist1d") -> list[dict]:
    data = load_data(make_config(**{**MLP, "dataset": dataset}))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "data.pt")
        torch.save(data, path)
        one = _child_rss(0, epochs, device, path, dataset)  # 0: train() of one seed
        many = _child_rss(seeds, epochs, device, path, dataset)
    mb = lambda kb: kb / 1024  # noqa: E731 - /proc and ru_maxrss count KiB on Linux
    added_one = one["training_peak_kb"] - one["before_kb"]
    added_many = many["training_peak_kb"] - many["before_kb"]
    ratio = many["process_peak_kb"] / (seeds * one["process_peak_kb"])
    added_ratio = added_many / (seeds * added_one) if added_one > 0 else float("nan")
    return [
        info("memory: peak RSS of a one-seed trial (process)", round(mb(one["process_peak_kb"])), "MB"),
        info(f"memory: peak RSS of a vectorized cell of {seeds} seeds (process)", round(mb(many["process_peak_kb"])), "MB"),
        row(f"memory: cell of {seeds} / ({seeds} x one-seed trial), process peak RSS", round(ratio, 3), "x", "< 1x", ratio < 1),
        info(f"memory: peak RSS added by training (peak - RSS before), one seed / cell of {seeds}", f"{mb(added_one):.1f} / {mb(added_many):.1f}", "MB"),
        info(f"memory: added by training, cell of {seeds} / ({seeds} x one seed)", round(added_ratio, 3), "x"),
    ]


# ---- 3. method overhead on the effective-weights-once path -----------------------------
def method_overhead(*, device: torch.device, rounds: int, inner: int, budget_s: float, seeds: int) -> list[dict]:
    candidates = {"dense (today)": Step("dense", MLP, batch=128, device=device), "dense+bn (today)": Step("dense", MLP, batch=128, device=device, norm="batchnorm")}
    for method in METHODS:
        candidates[f"{method} (path)"] = VectorStep(method, MLP, seeds=1, batch=128, device=device, norm="batchnorm" if method == "bn_only" else None)
        candidates[f"{method} (today)"] = Step(method, MLP, batch=128, device=device)
    times = interleaved(candidates, warmup=1, rounds=rounds, inner=inner, budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
    rows = []
    for method in METHODS:
        reference = "dense+bn (today)" if method == "bn_only" else "dense (today)"
        ratio = paired_ratio(times, f"{method} (path)", reference)
        today = paired_ratio(times, f"{method} (today)", reference)
        rows.append(row(f"methods: MLP {method} on the path / dense today (today's {method}: {today:.2f}x)", round(ratio, 3), "x", f"<= {METHOD_TARGET:g}x", ratio <= METHOD_TARGET))
    # in a vectorized cell: each method's step against the dense one of the same cell size
    cells = {m: VectorStep(m, MLP, seeds=seeds, batch=128, device=device, norm="batchnorm" if m == "bn_only" else None) for m in METHODS}
    cells["dense+bn"] = VectorStep("dense", MLP, seeds=seeds, batch=128, device=device, norm="batchnorm")
    times = interleaved(cells, warmup=1, rounds=rounds, inner=max(1, inner // 4), budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
    for method in METHODS:
        if method != "dense":
            ratio = paired_ratio(times, method, "dense+bn" if method == "bn_only" else "dense")
            rows.append(info(f"methods: MLP {method} / dense, both vectorized ({seeds} seeds)", round(ratio, 3), "x"))
    return rows


def conv4_edge_popup(*, device: torch.device, width: float, batch: int, rounds: int, budget_s: float) -> list[dict]:
    candidates = {
        "dense (today)": Step("dense", CONV4, batch=batch, device=device, width=width),
        "edge_popup (today)": Step("edge_popup", CONV4, batch=batch, device=device, width=width),
        "edge_popup (path)": VectorStep("edge_popup", CONV4, seeds=1, batch=batch, device=device, width=width),
    }
    times = interleaved(candidates, warmup=1, rounds=rounds, budget_s=budget_s, sync=synchronizer(device), clock=step_clock(device))
    ratio = paired_ratio(times, "edge_popup (path)", "dense (today)")
    today = paired_ratio(times, "edge_popup (today)", "dense (today)")
    return [
        info(f"methods: Conv4 width {width:g} b{batch}, dense step (median of {len(times['dense (today)'])})", round(1e3 * median(times["dense (today)"]), 1), "ms"),
        row(f"methods: Conv4 width {width:g} b{batch} edge_popup on the path / dense today (today's: {today:.2f}x)", round(ratio, 3), "x", f"<= {METHOD_TARGET:g}x", ratio <= METHOD_TARGET),
    ]


# ---- 4. a sweep of seed cells ---------------------------------------------------------
def sweep_spec(vectorize: str, seeds: int, epochs: int, device: str, widths: tuple[float, ...] = (1.0, 2.0)) -> dict:
    return {
        "name": f"bench_vectorized_{vectorize}",
        "base": {"dataset": "mnist1d", "model": "mlp", "epochs": epochs},
        "grid": {"method": ["dense", {"method": "edge_popup", "keep_fraction": 0.5}], "width": list(widths), "seed": list(range(seeds))},
        "resources": {"cpu": 1, "gpu": 1 if device == "cuda" else 0},
        "vectorize": vectorize,
    }


def sweep(*, device: torch.device, seeds: int, epochs: int, rounds: int, widths: tuple[float, ...] = (1.0, 2.0)) -> list[dict]:
    """The same grid (MNIST-1D MLP, dense and edge_popup x `widths` x `seeds` seeds: more
    cells than CPUs here, so actors are reused as in a real sweep) run as a sweep on
    the embedded local Ray, one trial per seed (vectorize: none) and one vectorized trial
    per cell (vectorize: seeds), back to back in one Ray (each into a fresh store), `rounds`
    times alternating. Figure: trials per hour of the Tune phase (Tuner.fit: actors,
    training, reports, checkpoints, store writes), and of the whole call."""
    from hidden_core.spec import parse_spec
    from hidden_core.tune.ray_setup import start_ray, stop_ray
    from hidden_core.tune.runner import run_sweep

    cores = os.cpu_count() or 1
    fit: dict[str, list[float]] = {"none": [], "seeds": []}
    whole: dict[str, list[float]] = {"none": [], "seeds": []}
    trials = 0
    started = start_ray(None, cores)
    try:
        for _ in range(rounds):
            for mode in ("none", "seeds"):
                with tempfile.TemporaryDirectory() as results:
                    report = run_sweep(parse_spec(sweep_spec(mode, seeds, epochs, device.type, widths)), results, progress=False, num_cpus=cores)
                trials = len(report.trials)
                assert report.counts["completed"] == trials == 2 * len(widths) * seeds, report.counts
                fit[mode].append(trials / report.fit_seconds * 3600)
                whole[mode].append(trials / report.wall_seconds * 3600)
    finally:
        stop_ray(started)
    ratio = median(fit["seeds"]) / median(fit["none"])
    name = f"sweep: MLP mnist1d, {2 * len(widths)} cells x {seeds} seeds x {epochs} epochs, {cores} CPUs"
    return [
        info(f"{name}, one trial per seed: trials/hour (Tune phase | whole call)", f"{median(fit['none']):.0f} | {median(whole['none']):.0f}", "trials/h"),
        info(f"{name}, vectorized cells: trials/hour (Tune phase | whole call)", f"{median(fit['seeds']):.0f} | {median(whole['seeds']):.0f}", "trials/h"),
        info(f"{name}: vectorized / one trial per seed, trials/hour of the Tune phase (median of {rounds})", round(ratio, 2), "x"),
    ]


# ---- driver ---------------------------------------------------------------------------
PARTS = ("cell", "steps", "memory", "methods", "conv4", "sweep")


def run(device: str = "cpu", quick: bool = False, tiny: bool = False, parts: tuple[str, ...] = PARTS) -> list[dict]:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    rows: list[dict] = []
    if tiny:  # smoke test: every code path, meaningless numbers
        rows += cell(device=dev, seeds=2, epochs=1, rounds=1, budget_s=0, dataset="digits")
        rows += cell_steps(device=dev, methods=("edge_popup",), seeds=2, rounds=1, inner=1, budget_s=0)
        rows += matmul_floor(device=dev, seeds=2, rounds=1, inner=1)
        rows += memory(device=dev, seeds=2, epochs=1, dataset="digits")
        rows += method_overhead(device=dev, rounds=1, inner=1, budget_s=0, seeds=2)
        rows += conv4_edge_popup(device=dev, width=0.125, batch=2, rounds=1, budget_s=0)
        return rows  # (the sweep part starts a Ray: tests/test_bench_vectorized.py runs it on its own, marked slow)
    if "cell" in parts:
        rows += cell(device=dev, seeds=CELL_SEEDS, epochs=2, rounds=3 if quick else 7, budget_s=20 if quick else 90)
    if "steps" in parts:
        methods = ("dense", "edge_popup") if quick else METHODS
        rows += cell_steps(device=dev, methods=methods, seeds=CELL_SEEDS, rounds=3 if quick else 7, inner=5 if quick else 10, budget_s=5 if quick else 15)
        rows += matmul_floor(device=dev, seeds=CELL_SEEDS, rounds=5 if quick else 11, inner=20)
    if "memory" in parts:
        rows += memory(device=dev, seeds=CELL_SEEDS, epochs=2)
    if "methods" in parts:
        rows += method_overhead(device=dev, rounds=5 if quick else 15, inner=10 if quick else 20, budget_s=15 if quick else 60, seeds=CELL_SEEDS)
    if "conv4" in parts:
        width = 8.0 if (cuda or not quick) else 2.0
        rows += conv4_edge_popup(device=dev, width=width, batch=128 if cuda else 16, rounds=3 if quick else 5, budget_s=30 if quick else 120)
    if "sweep" in parts:
        rows += sweep(device=dev, seeds=CELL_SEEDS, epochs=3 if quick else 5, rounds=1 if quick else 2,
                      widths=(1.0, 2.0) if quick else (0.5, 1.0, 2.0, 4.0))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="smoke test: tiny models, one round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args()
    set_threads(args.threads)
    rows = run(args.device, args.quick, args.tiny, tuple(args.only.split(",")))
    print(format_rows(rows))
    return 0 if all(r["met"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
