"""What one run_sweep call did: a summary per trial it ended, counts, timings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hidden_core.records import FINAL_STATUSES as FINAL
from hidden_core.records import STATUSES, TRAIN_SECONDS


@dataclass
class TrialSummary:
    trial_id: str
    method: str
    width: float
    status: str
    epochs_run: int
    train_seconds: float
    best_val_acc: float | None
    test_acc_at_best_val: float | None
    node: str | None
    started_at: float | None
    finished_at: float
    resumed_from_epoch: int = 0  # epochs its checkpoint already held when this run started it
    health_flags: str | None = None  # the row's health_flags: "" healthy, None unknown (records.HEALTH_FLAGS)
    run: str = ""  # the Tune trial that trained it: the seeds of a vectorized cell share one (the ETA times runs)


@dataclass
class SweepReport:
    """What one run_sweep call did. `efficiency`: training seconds / (fit wall seconds x
    concurrent trials), the orchestration overhead figure of benchmarks."""

    sweep: str
    planned: int = 0  # trials the spec expands to
    skipped: int = 0  # already final in the store before this run
    to_run: int = 0  # what this run set out to do
    resumed: int = 0  # trials that went on from a checkpoint an earlier run (or attempt) left
    concurrency: int = 1
    wall_seconds: float = 0.0  # the whole call
    startup_seconds: float = 0.0  # Ray start/connect + data into the object store
    fit_seconds: float = 0.0  # inside Tuner.fit
    trials: list[TrialSummary] = field(default_factory=list)
    unfinished: int = 0  # started but not ended (interrupted): the next run resumes them
    controls: Any = None  # controls_pass.ControlsPassReport when the spec has subnet_controls: the pass after the trials
    controls_in_trials: Any = None  # controls_pass.ControlsPassReport: the controls the trials' own workers scored as they ended

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out

    @property
    def flagged(self) -> list[TrialSummary]:
        """The trials this run ended whose training health raised a flag (hidden_core/health.py)."""
        return [t for t in self.trials if t.health_flags]

    @property
    def train_seconds(self) -> float:
        return float(sum(t.train_seconds for t in self.trials if t.train_seconds and math.isfinite(t.train_seconds)))

    @property
    def efficiency(self) -> float:
        if not self.fit_seconds or not self.concurrency:
            return float("nan")
        return self.train_seconds / (self.fit_seconds * self.concurrency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep, "planned": self.planned, "skipped": self.skipped, "to_run": self.to_run,
            "resumed": self.resumed, "concurrency": self.concurrency, "wall_seconds": self.wall_seconds,
            "startup_seconds": self.startup_seconds, "fit_seconds": self.fit_seconds, "counts": self.counts,
            "health_flagged": len(self.flagged),
            TRAIN_SECONDS: self.train_seconds, "efficiency": self.efficiency, "unfinished": self.unfinished,
            **({"controls": vars(self.controls)} if self.controls is not None else {}),
            **({"controls_in_trials": vars(self.controls_in_trials)} if self.controls_in_trials is not None else {}),
        }


class SweepStopped(BaseException):
    """Ends a sweep before its trials are done. A BaseException, like KeyboardInterrupt, so
    that no `except Exception` on the way (Tune's, the callbacks') swallows it; the run's
    cleanup (lease, Ray, temp dirs) runs as for any error, then the CLI prints `line()` and
    exits `exit_code`. run_sweep attaches the run's report."""

    exit_code = 1
    report: SweepReport | None = None

    def what(self) -> str:
        return "stopped"

    def line(self, command: str, final_in_store: int | None = None) -> str:
        """One line: what stopped the sweep, how many of its trials are final (counted in
        the store when the caller can: a signal may land between a row and its summary),
        how to resume."""
        report = self.report
        if report is None:
            return f"sweep {self.what()}; run the same command again to resume: {command}"
        final = final_in_store if final_in_store is not None else report.skipped + sum(1 for s in report.trials if s.status in FINAL)
        return (f"sweep {report.sweep} {self.what()}: {final} of {report.planned} trials are final in the store "
                f"({max(0, final - report.skipped)} finished in this run); run the same command again to resume: {command}")


class SweepInterrupted(SweepStopped):
    """SIGINT or SIGTERM reached the driver (exit 128 + the signal: 130, 143)."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
        self.name = signal.Signals(signum).name

    def what(self) -> str:
        return f"interrupted by {self.name}"


class StoreFull(SweepStopped):
    """The results store's disk is full (ENOSPC): the sweep stops at the first write that
    fails, the trials not written re-run next time (exit 2, like any OSError of the CLI)."""

    exit_code = 2

    def __init__(self, err: OSError, path: str | None = None):
        super().__init__(err)
        self.path = path or err.filename or "?"

    def what(self) -> str:
        return f"stopped: no space left on device (ENOSPC) writing {self.path}"
