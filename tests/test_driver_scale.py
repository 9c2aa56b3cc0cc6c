"""The driver's per-trial work does not grow with the number of trials in the run.

Each test counts the work (trial status reads), never times it: Tune calls the scheduler's
choose_trial_to_run and the callbacks' on_step_end on every step of its loop, a few steps
per trial, so anything there that walks every trial of the run is quadratic over a sweep.
The slow test at the end runs a few hundred near-free trials end to end
(benchmarks/bench_scale.py measures the same path at 100 to 5,000).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ray.tune.experiment import Trial

from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.driver_state import SweepRuntime
from hidden_core.tune.pruning import PruningScheduler
from hidden_core.tune.tune_callbacks import SweepCallback


class CountingTrial:
    """A Tune trial whose every status read is counted."""

    reads = 0

    def __init__(self, trial_id: str, status: str = Trial.PENDING):
        self.trial_id = trial_id
        self._status = status
        self.config = {"trial_id": trial_id, "cell_id": "c", "trial": {"method": "dense"}}

    @property
    def status(self) -> str:
        CountingTrial.reads += 1
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value


class Controller:
    def __init__(self) -> None:
        self.trials: list[CountingTrial] = []

    def get_trials(self) -> list[CountingTrial]:
        return self.trials


def _runtime(tmp_path: Path, progress=None) -> SweepRuntime:
    spec = parse_spec({"name": "scale", "base": {"dataset": "digits", "model": "mlp", "epochs": 1}, "grid": {"seed": [0]}})
    return SweepRuntime(spec, ResultStore(tmp_path / "results"), str(tmp_path / "results"), studies=None, run_values={},
                        provenance={}, progress=progress)


def _reads_to_choose(n_ended: int, tmp_path: Path) -> int:
    """Status reads of choose_trial_to_run, summed over 10 calls, in a run where n_ended
    trials have ended and 2 are running and 1 is pending."""
    scheduler, controller = PruningScheduler(_runtime(tmp_path)), Controller()
    for i in range(n_ended + 3):
        trial = CountingTrial(f"t{i}")
        controller.trials.append(trial)
        scheduler.on_trial_add(controller, trial)
    for trial in controller.trials[:n_ended]:
        trial.status = Trial.TERMINATED
    for trial in controller.trials[n_ended:n_ended + 2]:
        trial.status = Trial.RUNNING
    assert scheduler.choose_trial_to_run(controller) is controller.trials[-1]  # the ended ones leave on the first call
    CountingTrial.reads = 0
    for _ in range(10):
        assert scheduler.choose_trial_to_run(controller) is controller.trials[-1]
    return CountingTrial.reads


def test_choosing_the_next_trial_reads_only_trials_not_ended(tmp_path: Path):
    small, large = _reads_to_choose(10, tmp_path / "a"), _reads_to_choose(2000, tmp_path / "b")
    assert large == small  # the same work with 2,000 ended trials as with 10
    assert small <= 10 * 3 * 3  # each call: the 3 live trials, a few reads each


def test_choosing_keeps_a_retried_trial_and_fifo_order(tmp_path: Path):
    scheduler, controller = PruningScheduler(_runtime(tmp_path)), Controller()
    first, second = CountingTrial("a", Trial.RUNNING), CountingTrial("b", Trial.PENDING)
    for trial in (first, second):
        controller.trials.append(trial)
        scheduler.on_trial_add(controller, trial)
    assert scheduler.choose_trial_to_run(controller) is second
    first.status = Trial.PENDING  # Tune retries a trial whose worker was lost: PENDING again
    assert scheduler.choose_trial_to_run(controller) is first
    first.status = second.status = Trial.TERMINATED
    assert scheduler.choose_trial_to_run(controller) is None
    paused = CountingTrial("c", Trial.PAUSED)
    controller.trials.append(paused)
    scheduler.on_trial_add(controller, paused)
    assert scheduler.choose_trial_to_run(controller) is paused


class CountingProgress:
    def __init__(self) -> None:
        self.seen = 0

    def tick(self, trials) -> None:
        self.seen += sum(1 for t in trials if t.status == Trial.RUNNING)


def test_the_progress_line_counts_only_live_trials_on_every_step(tmp_path: Path):
    progress = CountingProgress()
    runtime = _runtime(tmp_path, progress=progress)
    callback = SweepCallback(runtime)
    trials = [CountingTrial(f"t{i}", Trial.RUNNING) for i in range(2002)]
    for trial in trials:
        runtime.on_start(trial)
    for trial in trials[:2000]:  # ended without a final report (nothing to write): only the bookkeeping counts here
        trial.status = Trial.TERMINATED
        runtime.on_complete(trial)
    CountingTrial.reads = 0
    for step in range(10):
        callback.on_step_end(step, trials)
    assert progress.seen == 10 * 2  # the 2 running trials, each step
    assert CountingTrial.reads == 10 * 2  # and no read of the 2,000 ended ones


@pytest.mark.slow
def test_a_sweep_of_near_free_trials_ends_with_every_trial_final_and_readable(tmp_path: Path):
    """CI's scale run (benchmarks/bench_scale.py's trials, fewer of them): every trial final
    in the store and `hidden results show` reads them all."""
    from benchmarks.bench_scale import SWEEP, spec
    from hidden_core.cli import main as cli_main
    from hidden_core.records import FINAL_STATUSES
    from hidden_core.tune.runner import run_sweep

    trials = 300  # the CI size: about 45 s here (2 shared cores, load average 6-8)
    results = tmp_path / "results"
    report = run_sweep(parse_spec(spec(trials)), results, progress=False, num_cpus=2)
    assert len(report.trials) == trials and report.unfinished == 0
    frame = ResultStore(results).load_trials(SWEEP)
    assert len(frame) == trials and frame["trial_id"].is_unique
    assert set(frame["status"]) <= set(FINAL_STATUSES)
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert cli_main(["results", "show", SWEEP, "--results", str(results), "--format", "csv"]) in (0, None)
    assert len(out.getvalue().strip().splitlines()) == trials + 1  # the header and one row per trial


def _snapshots_over(period: str, steps: int, monkeypatch) -> int:
    """Experiment-state snapshots Tune's checkpoint manager takes over `steps` steps of its
    loop, one simulated second apart, with TUNE_GLOBAL_CHECKPOINT_S = period."""
    import types
    from unittest import mock

    from ray.tune.execution import experiment_state

    now = [0.0]
    monkeypatch.setattr(experiment_state, "time", types.SimpleNamespace(monotonic=lambda: now[0], time=lambda: now[0]))
    manager = experiment_state._ExperimentCheckpointManager(storage=mock.MagicMock(), checkpoint_period=period)
    saves = []
    for _ in range(steps):
        manager.sync_up_experiment_state(save_fn=lambda: saves.append(now[0]))
        now[0] += 1.0
    return len(saves)


def test_tune_experiment_state_is_not_snapshotted_during_the_run(monkeypatch):
    """The sweep never restores Tune's experiment state (runner.py), so its snapshot (every
    trial's state as JSON: work that grows with the trials in the run) is taken once, at
    the end, not every 10 s or more as Tune's default does."""
    from hidden_core.tune.tune_callbacks import TUNE_ENV

    hour = 3600
    assert _snapshots_over("auto", hour, monkeypatch) >= hour // 20  # Tune's default: the test can tell
    assert _snapshots_over(TUNE_ENV["TUNE_GLOBAL_CHECKPOINT_S"], hour, monkeypatch) == 1  # the first step only


def test_planning_hashes_each_trial_config_twice(monkeypatch):
    """`sweep status` and every run plan the whole sweep: a trial's identity (canonical: a
    dump of the config, normalized) is computed once for its trial_id and once for its cell,
    not again for each use of the trial_id."""
    from benchmarks.bench_scale import spec
    from hidden_core.config import TrialConfig

    calls = [0]
    canonical = TrialConfig.canonical

    def counted(self):
        calls[0] += 1
        return canonical(self)

    monkeypatch.setattr(TrialConfig, "canonical", counted)
    plan = parse_spec(spec(300)).plan()
    assert len(plan.trials) == 300
    assert calls[0] == 2 * 300


@pytest.mark.slow
def test_a_trial_worker_imports_no_tracker_integration():
    """What a trial's worker runs (the trainable module, then one tiny trial's training)
    imports no experiment-tracker integration: those are the driver's, and only when the
    spec names a tracker (Tune's own telemetry imports them in the driver on every fit).
    torch._dynamo is not asserted: torch.optim's first optimizer imports it (torch's
    _disable_dynamo wrappers), with no setting to skip it; a worker pays it once, for
    every trial it runs."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import hidden_core.tune.trainable\n"
        "from hidden_core.config import RunOptions, TrialConfig\n"
        "from hidden_core.trial import train\n"
        "config = TrialConfig(dataset='digits', model='mlp', depth=1, width=0.01, epochs=1, method='dense', optimizer='sgd', lr=0.1)\n"
        "assert train(config, RunOptions()).status == 'completed'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('wandb', 'mlflow', 'comet_ml', 'aim')"
        " or m.startswith(('ray.air.integrations', 'ray.tune.logger.aim'))))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                         check=True, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[]"
