"""`make demo`'s sweep against the machine: its FLOP/s against measured matmul throughput, and
its wall against its training seconds over the cores.

    python -m benchmarks.bench_demo [--quick]

The demo's sweep is run as `make demo` runs it: one `hidden sweep run quickstart.yaml` call
in a fresh Python process, an embedded Ray of all the cores, a new store
(common.run_sweep_cli); its wall is that process's, from start to exit (Python's start,
imports, Ray, data, Tune, the store writes, the spec's subnet_controls pass and the tables
it prints; `make demo`'s second command, `hidden analyze scaling`, is not in it).
Grids: full = sweeps/quickstart.yaml as it is (84 trials, 20 epochs, controls with its 3
draws); --quick = its 7 methods x widths 0.5, 2 x 2 seeds (28 trials) with 1 draw of each
control. Whatever the current code does by default is measured (vectorized seed cells,
controls as the code runs them).

Figures (issue 23):
- wall / (sum of the trials' training seconds / cores), target <= 1.25: the training
  seconds are the trials' own train_seconds from the store (epochs with evaluation; the
  seeds of a vectorized cell share its wall, so they add up to the time it trained); the
  same ratio without the controls pass is printed beside it;
- the demo's FLOP/s as a fraction of this machine's matmul throughput, measured in this
  run (no target set by the issue: printed for information). FLOPs: every trial's matmul
  and convolution FLOPs as torch.utils.flop_counter.FlopCounterMode counts them on the
  trial's own network (the one hidden_core.methods.build_model makes), per sample, for one
  training step (forward, loss, backward) and one evaluation forward, times the samples the
  trial went through (epochs_run x (train samples + validation and test samples)). The
  demo's FLOP/s are those FLOPs over the call's wall. The machine's throughput: an fp32
  matmul (MATMUL_N square) on one thread, FLOPs per second of process CPU time (so that
  other jobs holding the core do not count), the best of the rounds, times the cores; the
  same matmul on all cores in wall time is printed beside it. Also for information: the
  trials' FLOPs per training second against one core's throughput (trials run one thread
  each), which is how well training uses the core, whatever the overhead around it.

`run(quick)` returns report rows for benchmarks.run_all.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import SweepCall, at_most, format_rows, info, row, run_sweep_cli

WALL_TARGET = 1.25  # demo wall <= 1.25 x (training seconds / cores)
MATMUL_N = 1024
ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 3600

NOTES = """\
- The first version's trials per hour (the old target, 3x) are no longer measured: issue 23
  replaced that target with the two figures above. Its last reading (2026-12-02, quick
  sub-grid): 1.34x the first version (2196 against 1635 trials/h); issue 23 measured 1.02x on
  the whole grid, whose 84 trials summed 215-252 s of training on 2 cores against 129-151 s
  of wall (the controls pass left out).
"""


def sub_grid(quick: bool, tiny: bool) -> dict:
    """sweeps/quickstart.yaml, whole (full), or with a smaller grid and one draw per control
    (quick, tiny)."""
    import yaml

    spec = yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())
    spec["grid"] = dict(spec["grid"])
    if tiny:
        spec["base"] = {**spec["base"], "epochs": 2}
        spec["grid"].update(method=["dense", "edge_popup"], width=[0.25], seed=[0, 1])
    elif quick:
        spec["grid"].update(width=[0.5, 2])
    if (quick or tiny) and spec.get("subnet_controls"):
        spec["subnet_controls"] = {**spec["subnet_controls"], "draws": 1}
    return spec


# ---- FLOPs ----------------------------------------------------------------------------------
def flops_per_sample(config, batch: int | None = None) -> tuple[float, float]:
    """(training, evaluation) FLOPs per sample of the trial `config` on the CPU, as
    FlopCounterMode counts them: one training step (forward, loss with the method's
    penalty, backward) and one evaluation forward, each on a random batch."""
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from hidden_core.methods import build_model

    batch = batch or config.batch_size
    model = build_model(config, "cpu")
    info_ = config.dataset_info
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *info_.input_shape, generator=generator)
    y = torch.randint(0, info_.num_classes, (batch,), generator=generator)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = nn.functional.cross_entropy(model(x), y)
        penalty = model.penalty()
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
    train = counter.get_total_flops() / batch
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return train, counter.get_total_flops() / batch


def split_sizes(config) -> tuple[int, int]:
    """(train samples, validation + test samples) of the trial's data."""
    from hidden_core.config import make_run_options
    from hidden_core.data import load_data

    splits = load_data(config, make_run_options())
    return len(splits.y_train), len(splits.y_val) + len(splits.y_test)


def demo_flops(configs: dict, epochs_run: dict[str, int]) -> float:
    """Total FLOPs of the trials `epochs_run` names (trial_id -> epochs run), `configs`
    mapping trial_id -> TrialConfig: per-sample costs times samples seen."""
    per_sample: dict[tuple, tuple[float, float]] = {}
    sizes: dict[tuple, tuple[int, int]] = {}
    total = 0.0
    for trial_id, epochs in epochs_run.items():
        config = configs[trial_id]
        key = (config.method, config.model, config.width, config.depth, config.dataset, config.batch_size)
        if key not in per_sample:
            per_sample[key] = flops_per_sample(config)
        data_key = (config.dataset, config.val_fraction, config.split_seed)
        if data_key not in sizes:
            sizes[data_key] = split_sizes(config)
        (train, evaluation), (n_train, n_eval) = per_sample[key], sizes[data_key]
        total += epochs * (n_train * train + n_eval * evaluation)
    return total


def matmul_throughput(n: int = MATMUL_N, rounds: int = 10, inner: int = 3) -> tuple[float, float]:
    """(FLOP/s of one core: one thread, process CPU time, best round; FLOP/s of all the
    cores: as many threads, wall time, best round) of an fp32 n x n matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    flops = 2.0 * n**3 * inner
    threads = torch.get_num_threads()
    best = {}
    try:
        for name, count, clock in (("core", 1, time.process_time), ("all", os.cpu_count() or 1, time.perf_counter)):
            torch.set_num_threads(count)
            a @ b  # warm-up
            times = []
            for _ in range(rounds):
                t0 = clock()
                for _ in range(inner):
                    a @ b
                times.append(clock() - t0)
            best[name] = flops / min(times)
    finally:
        torch.set_num_threads(threads)
    return best["core"], best["all"]


# ---- rows ----------------------------------------------------------------------------------
def sig(value: float, digits: int = 3) -> float:
    """`value` to `digits` significant digits (a fraction of peak may be 0.0004)."""
    return float(f"{value:.{digits}g}")


def demo_rows(label: str, call: SweepCall, cores: int, flops: float, core_peak: float, all_wall_peak: float) -> list[dict]:
    """The report rows of one demo call: met / missed against WALL_TARGET."""
    report = call.report
    train = sum(t["train_seconds"] for t in call.trials if t["train_seconds"] == t["train_seconds"] and t["train_seconds"] is not None)
    # the controls: the pass after the trials, plus what the trials' workers spent scoring
    # them as they ended (spread over the concurrency: the wall it took)
    in_trials = float((report.get("controls_in_trials") or {}).get("seconds") or 0.0)
    controls = float((report.get("controls") or {}).get("seconds") or 0.0) + in_trials / max(1, int(report.get("concurrency") or 1))
    wall = call.process_seconds
    ideal = train / cores
    ratio = wall / ideal if ideal else float("nan")
    machine = core_peak * cores
    from hidden_core.records import COMPLETED

    return [
        info(f"{label}: trials completed / in the store", f"{sum(t['status'] == COMPLETED for t in call.trials)} / {len(call.trials)}"),
        info(f"{label}: load average (1 / 5 / 15 min) at the call", call.load_at_call),
        info(f"{label}: call wall / Tune phase wall / controls (the pass + the workers' scoring over the concurrency)", f"{wall:.1f} / {float(report.get('fit_seconds') or 0):.1f} / {controls:.1f}", "s"),
        info(f"{label}: sum of the trials' training seconds / cores", f"{train:.1f} / {cores}", "s"),
        row(f"{label}: call wall / (training seconds / cores)", round(ratio, 3), "x", f"<= {WALL_TARGET:g}x", at_most(ratio, WALL_TARGET)),
        info(f"{label}: same, the controls left out", round((wall - controls) / ideal, 3) if ideal else "n/a", "x"),
        info(f"{label}: matmul throughput ({MATMUL_N}^2 fp32): one core (CPU time) x {cores} / all cores (wall)",
             f"{machine / 1e9:.1f} / {all_wall_peak / 1e9:.1f}", "GFLOP/s"),
        info(f"{label}: training FLOPs (FlopCounterMode: train steps + evaluation forwards)", round(flops / 1e9, 1), "GFLOP"),
        info(f"{label}: demo FLOP/s (FLOPs / call wall) / measured matmul throughput (one core x {cores})",
             sig(flops / wall / machine) if wall and machine else "n/a", "of peak"),
        info(f"{label}: FLOPs per training second / one core's matmul throughput",
             sig(flops / train / core_peak) if train and core_peak else "n/a", "of peak"),
    ]


def run(quick: bool = False, tiny: bool = False) -> list[dict]:
    from hidden_core.spec import parse_spec

    cores = os.cpu_count() or 1
    spec = sub_grid(quick, tiny)
    core_peak, all_wall_peak = matmul_throughput(rounds=3 if (quick or tiny) else 10)
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        call = run_sweep_cli(spec, Path(tmp), cores=cores, timeout_s=CHILD_TIMEOUT_S, root=ROOT)
    planned = parse_spec(spec).plan().by_id
    configs = {tid: planned[tid].config for tid in planned}
    flops = demo_flops(configs, {t["trial_id"]: int(t["epochs_run"] or 0) for t in call.trials})
    grid = "tiny" if tiny else ("quick sub-grid, 1 draw per control" if quick else "whole grid")
    label = f"demo ({grid}: {len(planned)} trials, {cores} cores)"
    return demo_rows(label, call, cores, flops, core_peak, all_wall_peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    print(format_rows(run(quick=args.quick, tiny=args.tiny)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
