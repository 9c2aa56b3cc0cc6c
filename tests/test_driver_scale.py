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
from hidden_core.tune.tune_callbacks import ConfigCopiesCleanup, SweepCallback


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
    from hidden_core.tune.ray_setup import TUNE_ENV

    hour = 3600
    assert _snapshots_over("auto", hour, monkeypatch) >= hour // 20  # Tune's default: the test can tell
    assert _snapshots_over(TUNE_ENV["TUNE_GLOBAL_CHECKPOINT_S"], hour, monkeypatch) == 1  # the first step only


def test_planning_computes_each_trial_configs_identity_once(monkeypatch):
    """`sweep status` and every run plan the whole sweep: a trial's identity (canonical: a
    dump of the config, normalized) is computed at most once, for both its trial_id and its
    cell (twice before: once for each hash; now once per cell and per seed of the first
    cell: a cell's other seeds change only the seed of its canonical form)."""
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
    assert calls[0] <= 300
    monkeypatch.setattr(TrialConfig, "canonical", canonical)
    assert [t.trial_id for t in plan.trials] == [t.config.trial_id for t in plan.trials]


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


# ---- what the driver keeps per trial: bounded whatever the trial reports ----------------------
def _epoch_row(epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5, "val_acc": 0.5, "test_acc": 0.49, "lr": 0.1,
            "seconds": 0.01, "level": None, "branch": None, "level_epoch": None, "density": None}


_RUN = {"node": "n1", "device": "cpu", "torch_version": "2.x", "threads": 1, "resumed_from": 0, "started_at": 1.5}


def _summary(epochs: int) -> dict:
    """A final report's TrialResult fields, numbers as a real one has them."""
    from hidden_core.records import COMPLETED, METRIC_FIELDS, METRIC_TYPES

    out = {k: (METRIC_TYPES[k](1) if METRIC_TYPES[k] is not str else "") for k in METRIC_FIELDS}
    return {**out, "status": COMPLETED, "epochs_run": epochs, "val_acc": 0.5, "best_val_acc": 0.5, "diverged_epoch": None}


def _reports(epochs: int) -> list[dict]:
    """What one trial of `epochs` epochs hands tune.report: an epoch report each epoch, then its final report."""
    from hidden_core.tune.report_codec import epoch_report, final_report

    rows = [_epoch_row(e) for e in range(1, epochs + 1)]
    return [*(epoch_report(row, [row], _RUN) for row in rows), final_report(_summary(epochs), rows, _RUN)]


def _tune_trial(trial_id: str, config: dict | None = None) -> Trial:
    return Trial("sweep_trainable", stub=True, trial_id=trial_id, config=config or {})


def test_tune_analyses_only_the_selection_metric_of_a_report():
    """Tune keeps, for every trial of the run, a running analysis (max, min, mean, last-5 and
    last-10 means and their windows) of every numeric field of every result it is handed,
    read only to save its experiment state: ~2 KB a field. A report hands it one number (the
    metric it is told to watch); the rest travels in the report's JSON payload (its fields
    all reach the driver: tests/test_report_codec.py). Before: 25 to 30 fields a trial."""
    from hidden_core.records import COMPLETED, REPORT_EPOCH, REPORT_FINAL, SELECTION_METRIC
    from hidden_core.tune.report_codec import cell_report, failed_report, seed_entry

    row = _epoch_row(1)
    seeds = {"t-a": seed_entry([row], started_at=1.0, resumed_from=0, kind=REPORT_FINAL, **_summary(1))}
    for reports in (_reports(3), [failed_report("ValueError: boom", [row], _RUN)],
                    [cell_report(REPORT_EPOCH, seeds, 0.5, _RUN, epoch=1), cell_report(REPORT_FINAL, seeds, 0.5, _RUN, status=COMPLETED)]):
        trial = _tune_trial("t0")
        for report in reports:
            trial.update_last_result(dict(report))
        assert set(trial.metric_analysis) == {SELECTION_METRIC}


def test_an_ended_trial_keeps_the_same_small_state_however_long_it_ran(tmp_path: Path):
    """Once the driver has written an ended trial's row, neither Tune's Trial (its metric
    analysis, its last report's payload: the whole history) nor the driver's record of it
    (its epoch rows, its final fields) keeps what grows with the trial: a 2-epoch and a
    60-epoch trial leave the same. Before: Tune's state of the 60-epoch trial was ~15 KB
    larger, the driver's record held its 60 epoch rows."""
    from hidden_core.records import SELECTION_METRIC
    from hidden_core.tune.report_codec import PAYLOAD

    runtime = _runtime(tmp_path)
    callback = SweepCallback(runtime)
    config = {"trial": {"dataset": "digits", "model": "mlp", "epochs": 60, "method": "dense"}, "cell_id": "c"}
    kept = {}
    for epochs in (2, 60):
        trial = _tune_trial(f"ray{epochs:02d}", {**config, "trial_id": f"t{epochs:02d}"})
        callback.on_trial_start(0, [], trial)
        # what Tune's searcher and function trainable add: the flattened config, a tag made of it, the config in every result
        trial.evaluated_params, trial.experiment_tag = {f"trial/{k}": v for k, v in config["trial"].items()}, "1_epochs=60,method=dense"
        for report in _reports(epochs):
            report = {**report, "config": trial.config}
            callback.on_trial_result(0, [], trial, report)
            trial.update_last_result(report)
        callback.on_trial_complete(0, [], trial)
        record = runtime.records[trial.trial_id]
        assert record.written and record.epochs == {} and record.final is None
        assert trial.metric_analysis == {} and PAYLOAD not in trial.last_result and SELECTION_METRIC in trial.last_result
        assert trial.evaluated_params  # still there for the trackers' callbacks (Ray's TensorBoard logger writes them as hparams)
        ConfigCopiesCleanup().on_trial_complete(0, [], trial)  # the run's last callback (runner.py)
        # the copies of its config that only a running trial's console output reads (tracemalloc: 11.8 of 21.2 KiB a trial)
        assert "config" not in trial.last_result and trial.evaluated_params == {} and trial.experiment_tag == ""
        assert trial.config["trial_id"] == f"t{epochs:02d}"  # the trial's own config stays
        kept[epochs] = len(trial.run_metadata.get_json_state())
    assert abs(kept[60] - kept[2]) <= 16  # the same fields (a time stamp's digits may differ)
    frame = ResultStore(tmp_path / "results").load_trials("scale")
    assert sorted(frame["epochs_run"]) == [2, 60]  # the rows were written from what was dropped after


def test_cell_axes_tells_configs_apart_without_writing_them_as_text(monkeypatch):
    """`hidden sweep status` finds the grid's axes three times over every config column of
    every trial; it compared the values written as text (a list column's arrays printed
    one by one: about 0.4 s on 5,000 trials). Same answer, no text: on a frame with a list
    column, missing values and a searched field."""
    import numpy as np
    import pandas as pd

    from hidden_core.analysis import tables

    frame = pd.DataFrame({
        "cell_id": ["a", "a", "b", "b", "c", "c"],
        "method": ["dense"] * 6,
        "width": [1.0, 1.0, 2.0, 2.0, 2.0, 2.0],
        "step_milestones": [np.array([1, 2]), np.array([1, 2]), np.array([1, 2]), np.array([1, 2]), np.array([3]), np.array([3])],
        "lr": [0.1, 0.2, 0.1, 0.1, 0.1, 0.1],  # differs inside cell a: searched
        "weight_decay": [None, None, 1e-4, 1e-4, None, None],
        "seed": [0, 1, 0, 1, 0, 1],
    })
    texts = [0]
    astype = pd.Series.astype

    def counted(self, dtype, *args, **kwargs):
        texts[0] += dtype is str
        return astype(self, dtype, *args, **kwargs)

    monkeypatch.setattr(pd.Series, "astype", counted)
    axes = tables.cell_axes(frame)
    assert texts[0] == 0
    # a field missing in some trials and set in others varies (pandas 3 keeps a missing value
    # missing through astype(str), so the text comparison did not count it)
    assert axes == (["width", "weight_decay", "step_milestones"], ["lr"])
    assert tables.cell_axes(frame.drop(columns="cell_id")) == (["width", "lr", "weight_decay", "step_milestones"], [])


def test_the_scale_bench_prints_each_target_with_met_or_missed():
    """benchmarks/bench_scale.py's rows from its figures (made up here; nothing runs): the
    issue's targets each with met/missed, the driver's memory at every size."""
    from benchmarks.bench_scale import rows_for

    def size(trials, cpu, rss):
        return {"trials": trials, "written": trials, "wall_s": 1.0, "fit_s": 1.0, "cpu_total_s": 1.0, "maxrss_mib": 900.0,
                "load": "1 1 1 -> 1 1 1", "cpu_per_trial_s": cpu, "cpu_first_tenth_s": cpu, "cpu_last_tenth_s": cpu,
                "rss_per_trial_kib": rss}

    cli = {"cli_start_s": 0.5, "rows_shown": 5000, "show_s": 0.7, "status_s": 1.2, "show_own_s": 0.1, "status_own_s": 0.5}
    large = {**size(5000, 0.02, 8.0), "files": {"trials": 1, "epochs": 1, "subnets": 5000}, **cli}
    rows = {r["name"]: r for r in rows_for([size(100, 0.01, 30.0), size(1000, 0.012, 9.0), large], {"trials": 10000, "load": "1", **cli})}
    met = {name.split(": ", 1)[-1]: r["met"] for name, r in rows.items() if r["target"]}
    assert met == {
        "driver CPU per trial at 5000 / at 100 trials": False,  # 2.0x
        "driver RSS growth per trial at 5000 trials (second half of the trials)": True,
        "`hidden results show` wall (fresh CLI process, median of 3)": True,
        "`hidden sweep status` wall (fresh CLI process, median of 3)": False,
    }
    assert sum("driver peak RSS" in name for name in rows) == 3
    assert sum(1 for name in rows if "synthetic store of 10000" in name and rows[name]["target"]) == 2


def test_a_workers_controls_that_cannot_be_written_never_stop_the_trials_ending(tmp_path: Path, monkeypatch):
    """A trial's controls scored in its worker are written after its row and its ending
    (subnet file kept, checkpoint gone, summary, progress); a store error writing them (an
    S3 503, say) is logged and left to the pass after the trials, never raised out of Tune's
    callback (which would retry a trial whose row is final)."""
    import json

    from hidden_core.tune import checkpoints, report_codec

    runtime = _runtime(tmp_path)
    monkeypatch.setattr(checkpoints, "keep_subnet", lambda *a, **k: "kept")  # the trial's subnet file is there
    ended = []
    monkeypatch.setattr(checkpoints, "trial_final", lambda *a, **k: ended.append(a[2]))

    def unavailable(*a, **k):
        raise OSError(5, "S3: 503 Slow Down")

    monkeypatch.setattr(runtime.store, "write_controls", unavailable)
    trial = _tune_trial("ray02", {"trial": {"dataset": "digits", "model": "mlp", "epochs": 2, "method": "edge_popup"}, "cell_id": "c",
                                  "trial_id": "t02"})
    callback = SweepCallback(runtime)
    callback.on_trial_start(0, [], trial)
    reports = _reports(2)
    payload = json.loads(reports[-1][report_codec.PAYLOAD])
    payload[report_codec.CONTROLS] = report_codec.controls_entry([{"control": "found", "draw": 0, "val_acc": 0.5, "test_acc": 0.5}], "cpu", None, 0.1)
    for report in [*reports[:-1], {**reports[-1], report_codec.PAYLOAD: json.dumps(payload)}]:
        callback.on_trial_result(0, [], trial, report)
    callback.on_trial_complete(0, [], trial)
    assert runtime.records["ray02"].written and ended == ["t02"] and runtime.final_ids == {"t02"} and len(runtime.summaries) == 1
    assert runtime.controls.trials == 0  # not written: the pass after the trials finds it pending
