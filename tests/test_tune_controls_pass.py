"""hidden_core/tune/controls_pass.py, beside tests/test_subnet_controls_sweep.py (which runs
the pass over a store: rows, resume, kill, stale rows, a damaged file): what `pending`
leaves out (no subnet_controls in the spec, a sweep not in the store yet, a trial whose
method trained its kept weights: Gem-Miner fine-tuned), a file that holds another trial
(skipped and retried, never scored under the wrong name), a store that is not a local
folder (its files are read through a temporary local copy, removed afterwards), and the
in-process pass's torch threads (a trial's, put back afterwards)."""

from __future__ import annotations

import io
import os

import pyarrow.fs as pafs

from hidden_core.config import make_config
from hidden_core.methods import build_model
from hidden_core.paths import trial_subnet_path
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.subnet.state import save_subnet
from hidden_core.tune import controls_pass

BASE = {"name": "s", "base": {"dataset": "digits", "epochs": 4, "width": 0.3}, "grid": {"method": ["edge_popup", "gem_miner"]}}
SPEC = parse_spec({**BASE, "subnet_controls": {"draws": 1, "device": "cpu"}})


def _write(store: ResultStore, local_root=None, **fields) -> str:
    """A final trial row of sweep 's' with its subnet file (an untrained network: the pass
    only needs a readable file of the right trial); local_root: the local folder under which
    a non-local store's root lies."""
    config = make_config(dataset="digits", width=0.3, epochs=4, **fields)
    store.write_trial("s", {"trial_id": config.trial_id, "cell_id": config.method, "status": "completed", "val_acc": 0.5, "test_acc": 0.4,
                            **config.model_dump()})
    root = store.root if local_root is None else f"{local_root}/{store.root}"
    save_subnet(trial_subnet_path(root, "s", config.trial_id), build_model(config), config)
    return config.trial_id


def test_nothing_is_pending_without_controls_or_without_the_sweep(tmp_path):
    store = ResultStore(tmp_path / "r", compact_every=None)
    assert controls_pass.pending(SPEC, store) == []  # no sweep 's' in the store yet
    _write(store, method="edge_popup")
    assert [w.method for w in controls_pass.pending(SPEC, store)] == ["edge_popup"]
    assert controls_pass.pending(parse_spec(BASE), store) == []  # the spec asks for none
    report = controls_pass.run(parse_spec(BASE), store)
    assert (report.trials, report.rows) == (0, 0) and not store.load_controls("s").shape[0]


def test_a_gem_miner_trial_that_fine_tuned_its_weights_has_no_controls(tmp_path):
    """Its state is no untrained subnetwork once its kept weights were trained
    (gem_miner_finetune_epochs > 0): only the trial without fine-tuning is pending, with the
    mask controls (found + random, shuffled, fresh at one draw)."""
    store = ResultStore(tmp_path / "r", compact_every=None)
    searched = _write(store, method="gem_miner")
    _write(store, method="gem_miner", gem_miner_finetune_epochs=2)
    work = controls_pass.pending(SPEC, store)
    assert [w.trial_id for w in work] == [searched]
    assert sorted(work[0].missing) == [("found", 0), ("fresh", 0), ("random", 0), ("shuffled", 0)]


def test_a_file_of_another_trial_is_skipped_and_retried(tmp_path):
    store = ResultStore(tmp_path / "r", compact_every=None)
    mine = _write(store, method="edge_popup", seed=0)
    other = make_config(method="edge_popup", dataset="digits", width=0.3, epochs=4, seed=1)
    save_subnet(trial_subnet_path(store.root, "s", mine), build_model(other), other)  # a misplaced file under mine's name
    out = io.StringIO()
    report = controls_pass.run(SPEC, store, out=out)
    assert report.skipped == [mine] and (report.trials, report.rows) == (0, 0)
    assert f"holds trial {other.trial_id}, not {mine}" in out.getvalue()
    assert store.load_controls("s").empty and [w.trial_id for w in controls_pass.pending(SPEC, store)] == [mine]


def test_a_store_that_is_not_a_local_folder_is_read_through_a_removed_copy(tmp_path, mkstemp_calls):
    """A store on another file system (here a pyarrow sub-tree file system, as an object
    store is): safetensors reads local files, so each trial's file is copied to a temporary
    file for the evaluation, which is gone afterwards; the rows are those of a local store."""
    local = ResultStore(tmp_path / "local", compact_every=None)
    trial = _write(local, method="edge_popup")
    controls_pass.run(SPEC, local, out=io.StringIO())
    (tmp_path / "remote").mkdir()
    remote = ResultStore("r", filesystem=pafs.SubTreeFileSystem(str(tmp_path / "remote"), pafs.LocalFileSystem()), compact_every=None)
    assert _write(remote, tmp_path / "remote", method="edge_popup") == trial
    copies = mkstemp_calls
    report = controls_pass.run(SPEC, remote, out=io.StringIO())
    assert report.trials == 1 and report.skipped == []
    copied = [c for c in copies if c.endswith(".safetensors")]
    assert len(copied) == 1 and not any(os.path.exists(c) for c in copied)
    columns = ["trial_id", "control", "draw", "val_acc", "test_acc"]
    mine = remote.load_controls("s")[columns].sort_values(columns[:3]).reset_index(drop=True)
    assert mine.equals(local.load_controls("s")[columns].sort_values(columns[:3]).reset_index(drop=True))


def test_the_in_process_pass_scores_with_a_trials_threads_and_puts_them_back(tmp_path, monkeypatch):
    """The driver's default intra-op threads made the pass 5x slower on a loaded 2-core
    machine (benchmarks/bench_controls.py): it scores with `resources.threads`, as a Ray
    task does, and this process's setting is back afterwards."""
    import torch

    from hidden_core.subnet import controls

    store = ResultStore(tmp_path / "r", compact_every=None)
    _write(store, method="edge_popup")
    seen, real = [], controls.score_controls
    monkeypatch.setattr(controls, "score_controls", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        two = parse_spec({**BASE, "resources": {"cpu": 2}, "subnet_controls": {"draws": 1, "device": "cpu"}})
        assert controls_pass.run(two, store, out=io.StringIO()).trials == 1
        assert seen == [2] and torch.get_num_threads() == 3
        other = ResultStore(tmp_path / "other", compact_every=None)
        _write(other, method="edge_popup")
        assert controls_pass.run(SPEC, other, out=io.StringIO()).trials == 1  # resources.cpu 1
        assert seen == [2, 1] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(saved)


def test_the_worker_plan_covers_the_controlled_trials_a_worker_can_score():
    """What a trial's worker scores as it ends (worker_plan): a controlled method's trial, on
    cpu or auto, or cuda when the trials hold a GPU share; the pass after the trials takes
    the rest (no controls asked, a method without controls or that trained its kept weights,
    cuda for CPU trials, mps)."""

    def plan(method="edge_popup", controls=("cpu", 1), gpu=0.0, **fields):
        spec = parse_spec({**BASE, "resources": {"cpu": 1, "gpu": gpu}, **({"subnet_controls": {"draws": controls[1], "device": controls[0]}} if controls else {})})
        return controls_pass.worker_plan(spec, make_config(method=method, dataset="digits", **fields).model_dump(mode="json"))

    assert plan() == {"draws": 1, "device": "cpu"} and plan("sign_flip") == {"draws": 1, "device": "cpu"}
    # auto as the pass's tasks resolve it: the GPU share the trial holds, else the CPU (never a GPU it did not reserve)
    assert plan(controls=("auto", 3)) == {"draws": 3, "device": "cpu"} and plan(controls=("auto", 3), gpu=0.5) == {"draws": 3, "device": "cuda"}
    assert plan(controls=None) is None and plan("dense") is None
    assert plan("gem_miner", gem_miner_finetune_epochs=2) is None and plan("gem_miner") is not None
    assert plan(controls=("cuda", 1)) is None and plan(controls=("cuda:1", 1), gpu=0.5) == {"draws": 1, "device": "cuda"}
    assert plan(controls=("cpu", 1), gpu=0.5) == {"draws": 1, "device": "cpu"}
    assert plan(controls=("mps", 1)) is None


def test_a_workers_controls_travel_in_the_final_report_and_are_checked():
    from hidden_core.tune import report_codec

    entry = report_codec.controls_entry([{"control": "found", "draw": 0, "val_acc": 0.5, "test_acc": 0.4}], "cpu", None, 0.25)
    report = report_codec.decode(report_codec.final_report({"val_acc": 0.5, report_codec.CONTROLS: entry}, [], {}))
    assert report_codec.controls_in(report.fields) == entry
    assert report_codec.controls_in({}) is None
    import pytest

    with pytest.raises(report_codec.ReportError, match="controls"):
        report_codec.controls_in({report_codec.CONTROLS: {"rows": "x", "device": "cpu", "problem": None, "seconds": 0}})
