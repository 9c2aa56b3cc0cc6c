"""Sweep efficiency: how much of the wall time on the embedded local Ray is spent training.

    python -m benchmarks.bench_sweep [--quick]

A quickstart-like sweep of 16 trials (MNIST-1D MLPs: dense and edge_popup x widths
1..8 x 2 seeds), one CPU per trial, as many at once as the machine has cores, into a
fresh store. The figure is total training seconds (the trials' own train_seconds) /
(wall seconds x concurrent trials). Two walls: the Tune phase (Tuner.fit: scheduling,
actor reuse, reporting, checkpoints, store writes; the target), and the whole call
(also Ray's start-up and data into the object store; for information).

`run(quick)` returns report rows for benchmarks.run_all.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from benchmarks.common import format_rows, info, row

TARGET = 0.90


def spec(epochs: int, widths: list[float]) -> dict:
    return {
        "name": "bench_sweep",
        "base": {"dataset": "mnist1d", "model": "mlp", "epochs": epochs, "optimizer": "adam", "lr": 0.003},
        "grid": {"method": ["dense", "edge_popup"], "width": widths, "seed": [0, 1]},
        "resources": {"cpu": 1},
    }


def run(quick: bool = False, tiny: bool = False) -> list[dict]:
    from hidden_core.spec import parse_spec
    from hidden_core.tune.runner import run_sweep

    widths = [0.5, 1.0] if tiny else [1.0, 2.0, 4.0, 8.0]
    epochs = 2 if tiny else (8 if quick else 20)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as results:
        report = run_sweep(parse_spec(spec(epochs, widths)), results, progress=False, num_cpus=cores)
    n = len(report.trials)
    end_to_end = report.train_seconds / (report.wall_seconds * report.concurrency) if report.wall_seconds else float("nan")
    return [
        info(f"sweep: {n} trials, {epochs} epochs, {report.concurrency} at once: training seconds", round(report.train_seconds, 1), "s"),
        info("sweep: Tune phase wall / whole call wall", f"{report.fit_seconds:.1f} / {report.wall_seconds:.1f}", "s"),
        row("sweep: efficiency, training s / (Tune phase wall x concurrency)", round(report.efficiency, 3), "", f">= {TARGET}", report.efficiency >= TARGET),
        info("sweep: efficiency incl. Ray start-up, training s / (whole wall x concurrency)", round(end_to_end, 3)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(format_rows(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
