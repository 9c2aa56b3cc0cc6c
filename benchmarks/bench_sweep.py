"""Sweeps as a user runs them: the time to the first trial and how much of the wall is training.

    python -m benchmarks.bench_sweep [--quick]

Each sweep is one `hidden sweep run SPEC --results NEW_STORE --json --num-cpus CORES` call in
a fresh Python process (common.run_sweep_cli: the CLI itself, with Ray's start timed), so
"the call" is everything a user waits for: Python's start, the imports, the spec, Ray's
start, the data, Tune, the store writes and the tables the command prints.

Two sweeps of MNIST-1D MLPs (width 1, dense and edge_popup, each trial its own learning
rate, so that every trial is a grid cell of its own whatever the seed handling), one CPU per
trial, as many at once as the machine has cores: short trials of SHORT_EPOCHS epochs, about
1 s of training each on an idle core, and long ones of LONG_EPOCHS epochs, about 13 s (the
trial sizes of issue 23; measured 2026-12-07 as process CPU time, one thread, means of dense
and edge_popup: 0.039 s an epoch with evaluation). Full: 32 short and 8 long trials;
--quick: 16 and 4. Under load a trial's training seconds (wall) are longer: the mean is
printed.

Figures (targets from issue 23):
- time to the first trial (short sweep, target <= 6 s): from the moment the bench starts
  the `hidden sweep run` process to the earliest trial's started_at (the trial function
  began on its worker: after the worker's start and imports, before its data and network);
  beside it Ray's start inside that call (ray_setup.start_ray, i.e. ray.init of the embedded
  Ray: how long it took and when it began after the call), what came before it (when the
  process's Python started and when the `hidden` CLI was imported) and the load average at
  the call;
- Tune-phase efficiency (target >= 0.90 short, >= 0.95 long): the trials' training seconds
  (their own train_seconds: epochs including evaluation) / (Tune phase wall x concurrent
  trials); the Tune phase is Tuner.fit: actors, scheduling, reports, checkpoints, store
  writes, the tail;
- whole-call efficiency, printed beside it: training seconds / (the call's process wall x
  concurrent trials);
- per trial outside its training, for information: the median of (stored - started -
  training s) over the trials after each concurrent slot's first.

`run(quick)` returns report rows for benchmarks.run_all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import SweepCall, at_least, at_most, format_rows, info, row, run_sweep_cli

FIRST_TRIAL_S = 6.0  # short sweep: call -> first trial started
TARGETS = {"short": 0.90, "long": 0.95}  # Tune-phase efficiency
SHORT_EPOCHS, LONG_EPOCHS = 24, 320  # about 1 s and 13 s of training a trial on an idle core
IDLE_SECONDS = {"short": 1, "long": 13}  # what the sizes aim at (issue 23's "about 1-s" and "about 13-s" trials)
# (epochs, trials full, trials quick)
SIZES = {"short": (SHORT_EPOCHS, 32, 16), "long": (LONG_EPOCHS, 8, 4)}
CHILD_TIMEOUT_S = 1800


def spec(name: str, epochs: int, trials: int) -> dict:
    lrs = [round(0.001 + 0.0002 * i, 4) for i in range(max(1, trials // 2))]
    return {
        "name": f"bench_sweep_{name}",
        "base": {"dataset": "mnist1d", "model": "mlp", "width": 1.0, "epochs": epochs, "optimizer": "adam"},
        "grid": {"method": ["dense", "edge_popup"], "lr": lrs},
        "resources": {"cpu": 1},
    }


def rows_of(name: str, epochs: int, call: SweepCall) -> list[dict]:
    """The report rows of one sweep call (met / missed against TARGETS and FIRST_TRIAL_S)."""
    report = call.report
    n = len(call.trials)
    concurrency = int(report.get("concurrency") or 1)
    train = float(report.get("train_seconds") or 0.0)
    fit = float(report.get("fit_seconds") or 0.0)
    label = f"sweep, {name} trials ({n} x {epochs} epochs, {concurrency} at once)"
    started = sorted((t for t in call.trials if t["started_at"] is not None and t["finished_at"] is not None), key=lambda t: t["started_at"])
    # each concurrent slot's first trial also pays the worker's first-use imports: left out
    outside = [t["finished_at"] - t["started_at"] - t["train_seconds"] for t in started[concurrency:]]
    tune_eff = train / (fit * concurrency) if fit else float("nan")
    whole_eff = train / (call.process_seconds * concurrency) if call.process_seconds else float("nan")
    first = call.first_trial_seconds
    after_call = {k: call.times.get(k, float("nan")) - call.called_at for k in ("child_started", "cli_imported", "ray_start_began")}
    ray_began = after_call["ray_start_began"]
    target = TARGETS[name]
    first_label = f"{label}: call to first trial started (whole `hidden sweep run` process: Python, imports, Ray's start, data, Tune)"
    rows = [
        info(f"{label}: training seconds per trial (mean; sized for {IDLE_SECONDS[name]:g} s on an idle core)", round(train / max(n, 1), 2), "s"),
        row(first_label, round(first, 2), "s", f"<= {FIRST_TRIAL_S:g} s", at_most(first, FIRST_TRIAL_S)) if name == "short"
        else info(first_label, round(first, 2), "s"),
        info(f"{label}: Ray's start in that call (ray.init): took / began after the call", f"{call.ray_start_seconds:.2f} / {ray_began:.2f}", "s"),
        info(f"{label}: after the call: Python started / `hidden` CLI imported / Ray's start began",
             " / ".join(f"{v:.2f}" for v in after_call.values()), "s"),
        info(f"{label}: load average (1 / 5 / 15 min) at the call", call.load_at_call),
        info(f"{label}: Tune phase wall / whole call wall", f"{fit:.1f} / {call.process_seconds:.1f}", "s"),
        info(f"{label}: per trial outside its training (median)", round(statistics.median(outside), 3) if outside else "n/a", "s"),
        row(f"{label}: Tune-phase efficiency, training s / (Tune phase wall x concurrency)", round(tune_eff, 3), "",
            f">= {target}", at_least(tune_eff, target)),
        info(f"{label}: whole-call efficiency, training s / (call wall x concurrency)", round(whole_eff, 3)),
    ]
    return rows


def measure(name: str, epochs: int, trials: int) -> list[dict]:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        call = run_sweep_cli(spec(name, epochs, trials), Path(tmp), cores=cores, timeout_s=CHILD_TIMEOUT_S)
    return rows_of(name, epochs, call)


def run(quick: bool = False, tiny: bool = False) -> list[dict]:
    rows: list[dict] = []
    for name, (epochs, full, fewer) in SIZES.items():
        if tiny:
            epochs, trials = 2, 2
        else:
            trials = fewer if quick else full
        rows += measure(name, epochs, trials)
    return rows


NOTES = """\
- This round (2026-12-07 afternoon, alone on the machine, load 1.0-1.5, two runs of the
  module): call to first trial 6.89 / 6.94 s (1-s trials) and 6.84 / 6.51 s (13-s trials),
  the morning's 10.05 / 8.28 s; Tune-phase efficiency 0.775 / 0.777 (was 0.653 / 0.687) and
  0.844 / 0.848 (was 0.786 / 0.798); whole call 0.507 / 0.51 and 0.717 / 0.724. What
  changed, each measured on its own with 3 short sweeps (first trial):
  (1) Tune's trial actors run on the Python workers the raylet starts with Ray
  (ray_setup.trials_on_started_workers): Tune gave every trainable an env_vars
  runtime_env, so each slot's actor waited for a new process (setup_worker, the runtime-env
  agent, a second Python start and `import ray`) while the raylet's own workers sat idle:
  10.1-13.1 -> 7.6-9.6 s; (2) the embedded Ray starts in a background thread 0.5-0.8 s
  after the call (ray_setup.BackgroundStart, runner.ray_started_early; before: 2.6-3.6 s,
  after the largest trial's memory check, which imports torch), and Ray Tune is imported
  while ray.init waits for Ray's processes (about 2 s of it the driver's CPU is idle):
  7.0-8.4 s; (3) MNIST-1D read back from the data root no longer imports mnist1d.data and
  scipy (1 s of the driver's CPU beside Ray's start); (4) the trials' optimizers are
  torch.optim's SGD / Adam without their torch._dynamo import (eager_optim: 1.5-2.3 s of
  CPU in each worker's first trial, inside the Tune phase: efficiency 0.70-0.73 -> 0.74-0.78
  with (2)).
- Why 6 s is still missed (the timeline of one call, sampled every 20 ms in the driver and
  per process from /proc): the driver's own start ends at 3.8 s (Python and the CLI 0.6 s,
  torch's import and the memory check 3 s beside Ray's Python-side start, both holding the
  GIL in turn); ray.init ends at 5.3-5.8 s, of which 1.5-2.4 s waiting for the raylet to
  register, which waits for Ray's dashboard agent to start (0.7 s on an idle machine,
  measured in raylet.out; its Python processes, dashboard, autoscaler monitor, log monitor
  and the two agents, take about 2.5 CPU-s of the 2 cores meanwhile); then Tuner.fit, and
  the first trial 1.2-2.4 s later, after its worker imported Ray Tune, torch and the
  trainable (about 2.5 CPU-s each for the 2 workers at once). What would close it: a Ray
  started without the processes a local sweep does not use (the autoscaler monitor, the
  dashboard and its agent: not selectable through ray.init in Ray 2.60), or workers that
  import torch before the driver connects (the raylet starts them only when it does).
- Tune-phase efficiency: each slot's first trial still waits for its worker's imports
  (about 2 s of the 13.7 s Tune phase at 1-s trials); per trial after it, 0.029 s (1-s
  trials) and 0.097 s (13-s trials) go outside training. Tried and not merged (branch
  i23f, last round): workers that import torch and Ray Tune through Ray's worker-setup hook
  and a driver that waits for them before Tuner.fit: the import moves out of the Tune phase
  (efficiency 0.67 -> 0.72) but not out of the call, and on 2 cores it competes with the
  driver's own start (first trial no better).
- Where a sweep's time went outside training (16 trials of 8 epochs, MNIST-1D MLPs, 2 at
  once, 2 shared cores; the core train wrapped with phase timers in the workers and a Tune
  callback timing the driver's side; measured 2026-12-02, per trial): checkpoint writes
  0.008-0.026 s (one after the last epoch; checkpoint_every_s 30 s); reports (driver round
  trips, 1 s cadence) 0.04-0.08 s; the subnet file 0.02-0.05 s; network build 0.01-0.04 s;
  statistics 0.01 s; final report to the store row 0.02-0.03 s; the next trial on the same
  actor 0.02 s; data to the device 0 (a CPU tensor view; each worker fetches a split once).
- Fixed costs measured when issue 23 was filed: each sweep's Tune phase started a new worker
  process per concurrent trial that imported Ray Tune and torch (about 6.7 s; now the
  raylet's own workers, about 2.5 CPU-s each) and torch._dynamo (torch.optim imported it on
  the first optimizer: 2.3 s on an idle core; no longer imported); Tune's usage telemetry
  imported Ray's tracker integrations on every Tuner.fit (0.5-2 s; skipped since);
  generating MNIST-1D took 2.3 s of CPU per sweep (cached since); a bare ray.init takes
  2.2-4.1 s on this machine.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    print(format_rows(run(quick=args.quick, tiny=args.tiny)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
