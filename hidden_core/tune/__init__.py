"""The Ray side of a sweep, one job per module:

- runner: run_sweep, the run itself (spec -> lease -> Ray -> Tuner -> store), and SweepOptions
- planning: what is left to run, from the store alone (no Ray); dry-run lines
- lease: one live driver per sweep and store
- ray_setup: the embedded local Ray (loopback, own temp dir) or joining a cluster
- driver_state: the driver's queue, per-trial records and store writer during a run
- tune_callbacks: the Tune callback writing trials as they end; trial names
- search / pruning: the Tune searcher and the per-cell Optuna scheduler
- trainable / checkpoints: a trial on a worker, and its trial-keyed checkpoint folder
- sweep_data: the trials' data, checked and loaded once on the driver
- provenance, report, progress: what code ran, what a run did, the progress line

Import the runner lazily: `from hidden_core.tune.runner import run_sweep`; importing this
package alone does not import Ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_sweep", "SweepOptions", "SweepReport"]


def __getattr__(name: str) -> Any:
    if name in ("run_sweep", "SweepOptions"):
        from hidden_core.tune import runner

        return getattr(runner, name)
    if name == "SweepReport":
        from hidden_core.tune.report import SweepReport

        return SweepReport
    raise AttributeError(name)
