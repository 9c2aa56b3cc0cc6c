"""A full disk at the store write (issue 24, point 8): the store names ENOSPC and the
path and leaves no half file; the driver stops the sweep at the first such write; the CLI
prints one line naming ENOSPC and the path, and how to resume (exit 2), no traceback."""

from __future__ import annotations

import errno

import pyarrow.parquet as pq
import pytest
import yaml

from hidden_core.cli import main as cli_main
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.driver_state import SweepRuntime, TrialRecord
from hidden_core.tune.planning import plan_todo
from hidden_core.tune.report import StoreFull, SweepReport

SPEC = {"name": "full", "base": {"dataset": "mnist1d", "model": "mlp", "epochs": 1}, "grid": {"method": ["dense"], "seed": [0, 1]}}


def _no_space(*args, **kwargs):
    raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")  # as pyarrow says it


def test_the_store_names_enospc_and_the_path_and_leaves_no_half_file(tmp_path, monkeypatch):
    store = ResultStore(tmp_path, compact_every=None)
    monkeypatch.setattr(pq, "write_table", lambda data, where, **kw: (open(where, "wb").write(b"PAR1 half"), _no_space()))
    with pytest.raises(OSError) as caught:
        store.write_trial("s", {"trial_id": "t", "status": "failed"})
    assert caught.value.errno == errno.ENOSPC and "ENOSPC" in caught.value.strerror
    assert caught.value.filename.startswith(str(tmp_path / "s" / "trials" / "part-")) and caught.value.filename.endswith(".parquet")
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "hidden-sweep.json"]  # no .tmp left


def test_the_driver_stops_at_the_first_full_write(tmp_path, monkeypatch):
    spec = parse_spec(SPEC)
    store = ResultStore(tmp_path / "results", compact_every=None)
    runtime = SweepRuntime(spec, store, str(tmp_path / "results"), studies=None, run_values={}, provenance={"hidden_version": "test"})
    runtime.load(plan_todo(spec, store))
    planned = spec.plan().trials[0]
    rec = TrialRecord(ray_id="r1", trial_id=planned.trial_id, cell_id=planned.cell_id, config=planned.config.model_dump())
    monkeypatch.setattr(pq, "write_table", _no_space)
    with pytest.raises(StoreFull) as stop:
        runtime.write(rec, "failed", error="boom")
    assert stop.value.exit_code == 2 and "ENOSPC" in stop.value.what() and "/full/" in stop.value.what()


def test_the_cli_prints_one_line_naming_enospc_and_the_path(tmp_path, monkeypatch, capsys):
    spec_file = tmp_path / "full.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    results = tmp_path / "results"

    def full(*args, **kwargs):
        stop = StoreFull(OSError(errno.ENOSPC, "No space left on device (ENOSPC)", f"{results}/full/trials/part-1.parquet"))
        stop.report = SweepReport(sweep="full", planned=2)
        raise stop

    monkeypatch.setattr("hidden_core.tune.runner.run_sweep", full)
    assert cli_main(["sweep", "run", str(spec_file), "--results", str(results), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"no space left on device (ENOSPC) writing {results}/full/trials/part-1.parquet" in err
    assert "0 of 2 trials are final" in err and f"run the same command again to resume: hidden sweep run {spec_file} --results {results}" in err
