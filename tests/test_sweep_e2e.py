"""End to end on a local Ray: a small real sweep checked row by row in the store, re-runs
that run nothing, a grown grid that runs only its new trials, a trial that raises, and a
driver killed mid-sweep whose re-run restores it (every trial exactly once)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hidden_core.spec import load_spec, parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.runner import EXPERIMENT_DIR, run_sweep

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray for the module (each run_sweep would otherwise start its own)."""
    import ray

    from hidden_core.tune.runner import _start_ray

    started = _start_ray(None, 2)
    yield
    if started:
        ray.shutdown()


def _spec(widths: list[float]) -> dict:
    return {
        "name": "e2e",
        "base": {"dataset": "mnist1d", "model": "mlp", "epochs": 3, "optimizer": "adam", "lr": 0.01},
        "grid": {"method": ["dense", "edge_popup"], "keep_fraction": [0.3, 0.5], "width": widths, "seed": [0, 1]},
        "report_every_s": 0,
    }


def test_sweep_rows_rerun_growth_and_failure(tmp_path: Path, local_ray):
    import sweep_fakes
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sweep_fakes)  # workers cannot import the tests folder
    failing_train = sweep_fakes.failing_train

    results = tmp_path / "results"
    spec = parse_spec(_spec([0.5]))
    planned = {t.trial_id: t for t in spec.plan().trials}
    assert len(planned) == 6  # dense ignores k: 2 dense + 4 edge_popup

    report = run_sweep(spec, results, progress=False)
    assert report.counts == {"completed": 6, "pruned": 0, "diverged": 0, "failed": 0}
    store = ResultStore(results)
    frame = store.load_trials("e2e")
    assert sorted(frame["trial_id"]) == sorted(planned)
    epochs = store.load_epochs("e2e")
    for _, row in frame.iterrows():
        trial = planned[row["trial_id"]]
        config = trial.config.model_dump()
        for name in ("method", "keep_fraction", "width", "seed", "epochs", "optimizer", "lr", "dataset", "model", "norm", "depth", "weight_dist"):
            assert row[name] == config[name], name
        assert row["cell_id"] == trial.cell_id
        assert row["status"] == "completed" and row["epochs_run"] == 3 and pd.isna(row["error"])
        assert 0.0 <= row["best_val_acc"] <= 1.0 and 0.0 <= row["test_acc_at_best_val"] <= 1.0
        assert row["params_total"] > 0 and row["train_seconds"] > 0 and row["device"] == "cpu"
        assert row["node"] and row["torch_version"] and row["ray_version"] and row["hidden_version"]
        assert row["started_at"] < row["finished_at"]
        rows = epochs[epochs.trial_id == row["trial_id"]]
        assert list(rows.epoch) == [1, 2, 3]
        assert rows["val_acc"].between(0, 1).all() and (rows["seconds"] > 0).all()
        assert rows["val_acc"].max() == pytest.approx(row["best_val_acc"])
    assert not (results / "e2e" / EXPERIMENT_DIR / "experiment").exists()  # cleaned up after a complete run
    write_ids = dict(zip(frame.trial_id, store.load_trials("e2e", columns=["trial_id", "write_id"]).write_id, strict=True))

    # the same spec again: nothing runs, nothing is written
    again = run_sweep(spec, results, progress=False)
    assert again.to_run == 0 and again.trials == [] and again.skipped == 6

    # a new width: only its 6 trials run; one of them raises, the sweep goes on
    grown = parse_spec(_spec([0.5, 1.0]))
    report = run_sweep(grown, results, progress=False, train_fn=failing_train)
    assert report.skipped == 6 and report.to_run == 6
    assert report.counts == {"completed": 5, "pruned": 0, "diverged": 0, "failed": 1}
    frame = store.load_trials("e2e", columns=["trial_id", "width", "method", "seed", "status", "error", "epochs_run", "write_id"])
    assert len(frame) == 12 and frame.trial_id.is_unique
    old = frame[frame.trial_id.isin(write_ids)]
    assert dict(zip(old.trial_id, old.write_id, strict=True)) == write_ids  # untouched
    failed = frame[frame.status == "failed"].iloc[0]
    assert (failed.method, failed.width, failed.seed) == ("dense", 1.0, 1)
    assert "RuntimeError: injected failure in trial" in failed.error and "Traceback" in failed.error
    assert failed.epochs_run == 1
    assert list(store.load_epochs("e2e", [failed.trial_id]).epoch) == [1]
    assert (frame[frame.status != "failed"].status == "completed").all()
    # the failed trial is not final: the next run re-runs it (and only it)
    todo_again = run_sweep(grown, results, progress=False)
    assert todo_again.to_run == 1 and todo_again.counts["completed"] == 1
    final = store.load_trials("e2e", columns=["trial_id", "status"])
    assert len(final) == 12 and (final.status == "completed").all()


def _ray_pids(temp_root: str) -> list[int]:
    """Processes of the Ray that a driver started under `temp_root`: by their arguments, or
    by the RAY_TMPDIR they inherited (Ray's agents rename their command lines)."""
    pids = []
    marker = f"RAY_TMPDIR={temp_root}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if temp_root in cmdline or marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def test_killed_driver_restores_and_every_trial_ends_once(tmp_path: Path, local_ray):
    spec_path = tmp_path / "restore.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "restore",
        "base": {"dataset": "mnist1d", "model": "mlp", "width": 4, "epochs": 8, "optimizer": "adam", "lr": 0.003},
        "grid": {"method": ["dense", "sign_flip"], "seed": [0, 1, 2, 3, 4]},
        "report_every_s": 0,
    }))
    spec = load_spec(spec_path)
    results = tmp_path / "results"
    temp_root = tempfile.mkdtemp(prefix="hr-", dir="/tmp")  # short: Ray's socket paths live here
    env = {**os.environ, "RAY_TMPDIR": temp_root, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen(
        [sys.executable, "-m", "hidden_core.cli", "sweep", "run", str(spec_path), "--results", str(results), "--quiet", "--num-cpus", "2"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    store = ResultStore(results)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if driver.poll() is not None:
                pytest.fail(f"the driver ended before it was killed:\n{driver.stdout.read().decode()[-3000:]}")
            if "restore" in store.sweeps() and len(store.final_trial_ids("restore")) >= 2:
                break
            time.sleep(0.3)
        else:
            pytest.fail("no trial finished in time")
        time.sleep(1.0)  # let the next trials get going: they die in flight
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.stdout.close()
        for pid in _ray_pids(temp_root):  # the killed driver's Ray: end it by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_root, ignore_errors=True)
    before = store.final_trial_ids("restore")
    assert 2 <= len(before) < 10
    assert (results / "restore" / EXPERIMENT_DIR / "experiment").exists()

    report = run_sweep(spec, results, progress=False)
    print("re-run after the kill:", report.to_dict())
    assert report.unfinished == 0
    frame = store.load_trials("restore", columns=["trial_id", "status", "epochs_run"])
    planned = {t.trial_id for t in spec.plan().trials}
    assert sorted(frame.trial_id) == sorted(planned) and frame.trial_id.is_unique
    assert (frame.status == "completed").all() and (frame.epochs_run == 8).all()
    # the re-run did not redo what the killed run had finished
    assert not ({s.trial_id for s in report.trials} & before)
    assert len(report.trials) == 10 - len(before)
    epochs = store.load_epochs("restore")
    for trial_id, rows in epochs.groupby("trial_id"):
        assert list(rows.epoch) == list(range(1, 9)), trial_id  # no gap, no duplicate
    assert not (results / "restore" / EXPERIMENT_DIR / "experiment").exists()
