"""Trackers for real: one 2-trial sweep with `loggers: [mlflow, tensorboard, wandb]`, read
back with MLflow's API, TensorBoard's event reader and W&B's offline files; its per-cell
Optuna studies opened with Optuna's API (what optuna-dashboard reads). Bad `loggers:`
values and a missing extra fail with exit 2 before anything starts."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hidden_core.config import ConfigError
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.trackers import normalize_loggers, tracker_results

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "tracked",
    "base": {"dataset": "mnist1d", "model": "mlp", "width": 0.5, "epochs": 3, "optimizer": "adam", "lr": 0.01},
    "grid": {"method": ["dense", "edge_popup"]},
    "pruner": {"type": "median"},
    "report_every_s": 0,
}


# ---- validation (no Ray) ----------------------------------------------------------------------
def test_loggers_key_takes_a_list_or_a_mapping():
    assert normalize_loggers(["mlflow", "tensorboard"]) == {"mlflow": {}, "tensorboard": {}}
    assert normalize_loggers({"wandb": {"mode": "offline", "project": "p"}}) == {"wandb": {"mode": "offline", "project": "p"}}
    assert parse_spec({**SPEC, "loggers": ["wandb"]}).loggers == {"wandb": {}}
    assert parse_spec(SPEC).loggers == {}


@pytest.mark.parametrize("value, message", [
    (["comet"], "loggers: 'comet' is not a tracker; allowed: mlflow, tensorboard, wandb"),
    ({"wandb": {"mode": "sometimes"}}, "loggers: wandb.mode: 'sometimes' is not one of online, offline, disabled"),
    ({"mlflow": {"uri": "x"}}, "loggers: mlflow: unknown option(s) uri; allowed: experiment, tracking_uri"),
    ({"tensorboard": {"dir": 3}}, "loggers: tensorboard.dir: must be a non-empty string; got 3"),
    (5, "loggers: a list of tracker names"),
])
def test_bad_loggers_name_the_field(value, message):
    with pytest.raises(ConfigError) as err:
        parse_spec({**SPEC, "loggers": value})
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_reports_unpack_into_one_result_per_epoch():
    import json

    from hidden_core.records import REPORT_EPOCH, REPORT_FAILED, REPORT_FINAL

    report = {"kind": REPORT_EPOCH, "epoch": 3, "val_acc": 0.3, "epochs": json.dumps([
        {"epoch": 2, "val_acc": 0.2, "train_loss": 1.0}, {"epoch": 3, "val_acc": 0.3, "train_loss": float("nan")}])}
    assert tracker_results(report, after_epoch=1) == [
        {"training_iteration": 2, "val_acc": 0.2, "train_loss": 1.0}, {"training_iteration": 3, "val_acc": 0.3}]
    assert tracker_results(report, after_epoch=2) == [{"training_iteration": 3, "val_acc": 0.3}]  # a resumed trial re-sends
    final = {"kind": REPORT_FINAL, "epochs_run": 3, "best_val_acc": 0.4, "history": "[]", "node": "n", "test_acc_at_best_val": 0.38}
    assert tracker_results(final, 3) == [{"training_iteration": 3, "best_val_acc": 0.4, "test_acc_at_best_val": 0.38, "epochs_run": 3}]
    assert tracker_results({"kind": REPORT_FAILED, "error": "x"}, 1) == []


@pytest.mark.slow  # seconds to a minute (a subprocess, a real training or a heavy import): not the unit loop
def test_a_missing_extra_is_an_exit_2_error_before_anything_starts(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: tracked\nbase: {epochs: 1}\nloggers: [tensorboard, mlflow]\n")
    results = tmp_path / "results"
    code = ("import sys; sys.modules['mlflow'] = None; from hidden_core.cli import main; "
            f"sys.exit(main(['sweep', 'run', {str(spec)!r}, '--results', {str(results)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "error: loggers: mlflow needs the Python package mlflow, which is not installed; " \
           "install it with: pip install 'hidden-core[mlflow]'" in done.stderr
    assert "Ray" not in done.stderr and not (results / "tracked").exists()


# ---- one real sweep, read back by each tracker's own reader ------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    pytest.importorskip("mlflow", reason="the tracker tests need the trackers extra: pip install -e '.[dev,trackers]'")
    pytest.importorskip("wandb", reason="the tracker tests need the trackers extra: pip install -e '.[dev,trackers]'")
    pytest.importorskip("tensorboard", reason="the tracker tests need the trackers extra: pip install -e '.[dev,trackers]'")
    from hidden_core.tune.runner import run_sweep

    results = tmp_path_factory.mktemp("trackers") / "results"
    spec = parse_spec({**SPEC, "loggers": {"mlflow": {}, "tensorboard": {}, "wandb": {"mode": "offline", "project": "hidden-test"}}})
    old = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        report = run_sweep(spec, results, progress=False, num_cpus=2)
    finally:
        if old is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old
    assert report.counts["completed"] == 2, report
    store = ResultStore(results)
    return results, store.load_trials("tracked"), store.load_epochs("tracked")


def _epoch_values(epochs, trial_id, metric="val_acc"):
    rows = epochs[epochs.trial_id == trial_id].sort_values("epoch")
    return [(int(e), float(v)) for e, v in zip(rows["epoch"], rows[metric], strict=True)]


def _same(logged, expected):
    """(step, value) pairs: the same steps, values equal to float32 precision."""
    assert [step for step, _ in logged] == [step for step, _ in expected]
    assert [value for _, value in logged] == pytest.approx([value for _, value in expected], abs=1e-6)


@pytest.mark.slow  # seconds to a minute (a subprocess, a real training or a heavy import): not the unit loop
def test_mlflow_runs_named_by_trial_id_with_config_and_epochs(sweep):
    from mlflow.tracking import MlflowClient

    results, trials, epochs = sweep
    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'tracked' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(trials["trial_id"])
    for run in runs:
        trial_id = run.info.run_name
        row = trials[trials.trial_id == trial_id].iloc[0]
        assert run.info.status == "FINISHED"
        assert run.data.params["trial_id"] == trial_id and run.data.params["method"] == row["method"]
        assert run.data.params["epochs"] == "3"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        logged = sorted((m.step, m.value) for m in history)
        _same(logged, _epoch_values(epochs, trial_id))
        assert run.data.metrics["test_acc_at_best_val"] == pytest.approx(row["test_acc_at_best_val"])


@pytest.mark.slow  # reads the module's sweep (Ray): not the unit loop
def test_tensorboard_events_per_trial_and_epoch(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results, trials, epochs = sweep
    folders = sorted(os.listdir(results / "tracked" / "tensorboard"))
    assert folders == sorted(trials["trial_id"])
    for trial_id in folders:
        events = EventAccumulator(str(results / "tracked" / "tensorboard" / trial_id))
        events.Reload()
        scalars = events.Scalars("ray/tune/val_acc")
        _same([(s.step, s.value) for s in scalars], _epoch_values(epochs, trial_id))
        assert "ray/tune/train_loss" in events.Tags()["scalars"]


def _wandb_records(path):
    """The records of an offline W&B run file (run-*.wandb): a 7-byte header, then LevelDB
    log records (crc32, length, type; 32 KiB blocks) holding wandb_internal_pb2.Record
    messages. W&B's Python package no longer ships a reader (its Go core does)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: zero padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        parts = chunk if kind in (1, 2) else parts + chunk  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL/LAST end it
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def _wandb_diagnosis(run: str, kinds: list[str]) -> str:
    """What a W&B run folder holds, for a failed assertion: the record kinds of its run file
    and the end of W&B's own logs (seen once in CI: a run file without its `run` record)."""
    logs = []
    for log in sorted(glob.glob(os.path.join(run, "logs", "*.log"))):
        with open(log, errors="replace") as f:
            logs.append(f"--- {os.path.basename(log)}:\n" + "".join(f.readlines()[-15:]))
    return f"{run}: records {kinds[:12]}{' ...' if len(kinds) > 12 else ''}\n" + "\n".join(logs)


@pytest.mark.slow  # reads the module's sweep (Ray): not the unit loop
def test_wandb_offline_runs_on_disk(sweep):
    import json

    results, trials, epochs = sweep
    runs = sorted(glob.glob(str(results / "tracked" / "wandb" / "wandb" / "offline-run-*")))
    assert len(runs) == 2, runs
    seen = set()
    for run in runs:
        (path,) = glob.glob(os.path.join(run, "run-*.wandb"))
        name, config, history, kinds = None, {}, [], []
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")
            kinds.append(kind)
            if kind == "run":
                name = record.run.display_name
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in record.config.update})
            elif kind == "history":
                history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
        assert name in set(trials["trial_id"]) and config["trial_id"] == name, _wandb_diagnosis(run, kinds)
        assert config["method"] == trials[trials.trial_id == name].iloc[0]["method"]
        per_epoch = [(h["training_iteration"], h["val_acc"]) for h in history if "val_acc" in h]
        _same(per_epoch, _epoch_values(epochs, name))
        seen.add(name)
    assert seen == set(trials["trial_id"])


@pytest.mark.slow  # reads the module's sweep (Ray): not the unit loop
def test_optuna_studies_open_with_optunas_api(sweep):
    """What `optuna-dashboard sqlite:///<results>/<sweep>/_studies.db` shows."""
    import optuna

    results, trials, epochs = sweep
    storage = f"sqlite:///{results / 'tracked' / '_studies.db'}"
    names = optuna.get_all_study_names(storage)
    assert sorted(names) == sorted(f"tracked/{c}" for c in trials["cell_id"].unique())
    seen = {}
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        assert study.direction == optuna.study.StudyDirection.MAXIMIZE
        for t in study.trials:
            seen[t.user_attrs["trial_id"]] = t
    assert set(seen) == set(trials["trial_id"])
    for trial_id, t in seen.items():
        assert t.state == optuna.trial.TrialState.COMPLETE
        row = trials[trials.trial_id == trial_id].iloc[0]
        assert t.value == pytest.approx(row["best_val_acc"])
        _same(sorted(t.intermediate_values.items()), [(e - 1, v) for e, v in _epoch_values(epochs, trial_id)])
