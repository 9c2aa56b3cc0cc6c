"""End to end on a local Ray: a small real sweep checked row by row in the store, re-runs
that run nothing, a grown grid that runs only its new trials, and a trial that raises (its
re-run resumes from its checkpoint). Killed drivers, killed workers and two drivers at once:
tests/test_sweep_state.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hidden_core import paths
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.runner import run_sweep

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray for the module (each run_sweep would otherwise start its own)."""
    from hidden_core.tune.ray_setup import start_ray, stop_ray

    started = start_ray(None, 2)
    yield
    stop_ray(started)


def _spec(widths: list[float]) -> dict:
    return {
        "name": "e2e",
        "base": {"dataset": "mnist1d", "model": "mlp", "epochs": 3, "optimizer": "adam", "lr": 0.01},
        "grid": {"method": ["dense", "edge_popup"], "keep_fraction": [0.3, 0.5], "width": widths, "seed": [0, 1]},
        "report_every_s": 0,
        "run": {"checkpoint_every_s": 0},  # the failing trial keeps its epoch 1
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
    # nothing but the store and what the trials learned is left: no checkpoint of a final
    # trial, no lease, no Tune folder
    assert sorted(p.name for p in (results / "e2e").iterdir()) == ["epochs", paths.SWEEP_MARKER, "subnets", "trials"]
    _check_subnets(results, frame)
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
    # the failed trial is not final: it keeps its checkpoint, and the next run re-runs it
    # (and only it) from there: epoch 1 is not recomputed
    assert (results / "e2e" / "checkpoints" / failed.trial_id / "checkpoint.pt").exists()
    epoch_one = store.load_epochs("e2e", [failed.trial_id]).iloc[0]
    todo_again = run_sweep(grown, results, progress=False)
    assert todo_again.to_run == 1 and todo_again.counts["completed"] == 1
    assert todo_again.resumed == 1 and todo_again.trials[0].resumed_from_epoch == 1
    rerun = store.load_epochs("e2e", [failed.trial_id])
    assert list(rerun.epoch) == [1, 2, 3] and rerun.iloc[0]["seconds"] == epoch_one["seconds"]
    assert not (results / "e2e" / "checkpoints").exists()
    final = store.load_trials("e2e", columns=["trial_id", "status"])
    assert len(final) == 12 and (final.status == "completed").all()


def _check_subnets(results: Path, frame: pd.DataFrame) -> None:
    """Every final trial kept its subnet file; `hidden subnet eval` rebuilds each network from
    it (config + seed + stored state) and reproduces the stored test accuracy exactly."""
    import json
    import subprocess
    import sys

    folder = results / "e2e" / "subnets"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.safetensors" for t in frame.trial_id)
    from hidden_core.subnet.fileformat import read_subnet_file

    for _, row in frame.iterrows():
        stored = read_subnet_file(folder / f"{row.trial_id}.safetensors")
        assert stored.status == "completed" and stored.metrics["test_acc"] == row.test_acc
    for _, row in frame.drop_duplicates("method").iterrows():  # one CLI process per method
        out = subprocess.run([sys.executable, "-m", "hidden_core.cli", "subnet", "eval", str(folder / f"{row.trial_id}.safetensors"),
                              "--device", "cpu", "--json"], capture_output=True, text=True, check=True, cwd=ROOT)
        evaluated = json.loads(out.stdout)
        assert evaluated["trial_id"] == row.trial_id and evaluated["matches_stored"] is True
        assert evaluated["test_acc"] == row.test_acc and evaluated["val_acc"] == row.val_acc  # the store's row, exactly
