"""One real sweep with subnet_controls on a local Ray (MNIST-1D MLP, 2 trials, 2 epochs): one
trial's controls are scored in its own worker as it ends (controls_pass.worker_plan), the
other's (its plan withheld, as for a device its worker may not hold) by the runner's pass
after the trials, as a Ray task (controls_tasks.DRIVER_SCORES off); a re-run computes
nothing, and a re-run after the controls were lost (nothing to train: no Ray, the pass in
this process, one trial at a time) computes exactly the same rows again."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hidden_core.records import control_column
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.runner import run_sweep

pytestmark = pytest.mark.slow


def test_sweep_with_subnet_controls(tmp_path: Path, monkeypatch):
    from hidden_core.tune import controls_pass, controls_tasks

    monkeypatch.setattr(controls_tasks, "DRIVER_SCORES", False)  # the pass's trials as Ray tasks (the driver would score them)
    in_worker = controls_pass.worker_plan
    monkeypatch.setattr(controls_pass, "worker_plan", lambda spec, config: None if config["method"] == "sign_flip" else in_worker(spec, config))
    spec = parse_spec({
        "name": "ctl",
        "base": {"dataset": "mnist1d", "model": "mlp", "epochs": 2, "width": 0.5, "optimizer": "adam", "lr": 0.01},
        "grid": {"method": ["edge_popup", "sign_flip"]},
        "report_every_s": 0,
        "subnet_controls": {"draws": 2, "device": "cpu"},
    })
    results = tmp_path / "results"
    out = io.StringIO()
    report = run_sweep(spec, results, progress=False, num_cpus=2, out=out)
    assert report.counts["completed"] == 2
    in_trials = report.controls_in_trials
    assert (in_trials.trials, in_trials.rows, in_trials.skipped) == (1, 7, [])  # edge_popup: found + 3 controls x 2 draws
    assert "controls: 1 trials scored in their own workers as they ended, 7 rows" in out.getvalue()
    assert report.controls.trials == 1 and report.controls.rows == 8 and report.controls.skipped == []  # sign_flip also initial
    assert report.controls.at_once == 1 and "controls: evaluating 1 trials" in out.getvalue() and "Ray tasks of 1 CPU, up to 2 at once)" in out.getvalue()
    store = ResultStore(results)
    trials = store.load_trials("ctl").set_index("method")
    for method in ("edge_popup", "sign_flip"):
        assert 0 <= trials.loc[method, control_column("random")] <= 1 and trials.loc[method, "control_draws"] == 2
    # found is the stored final network re-evaluated: without BatchNorm, the trial's own final test_acc
    assert (trials[control_column("found")] == trials["test_acc"]).all()
    assert pd.isna(trials.loc["edge_popup", control_column("initial")]) and pd.notna(trials.loc["sign_flip", control_column("initial")])
    rows = store.load_controls("ctl")

    again = run_sweep(spec, results, progress=False, num_cpus=2)
    assert again.to_run == 0 and again.controls is None  # nothing to train, nothing missing
    shutil.rmtree(results / "ctl" / "controls")  # as if the driver died before the pass
    out = io.StringIO()
    resumed = run_sweep(spec, results, progress=False, num_cpus=2, out=out)
    assert resumed.to_run == 0 and resumed.controls.rows == 15
    assert resumed.controls.at_once == 1 and "device cpu, in this process)" in out.getvalue()
    columns = ["trial_id", "control", "draw", "val_acc", "test_acc", "device"]

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[columns].sort_values(columns[:3]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(store.load_controls("ctl")), ordered(rows))  # seeded: the worker's and the task's rows exactly
