"""REPRODUCTIONS.md is written from the store: each claim's cells, seeds, intervals and
verdict come from the trials of the spec as it is now."""

import math

import pytest

from hidden_core import reproduce
from hidden_core.spec import load_spec
from hidden_core.store import ResultStore


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = reproduce.wilson(50, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)
    lo, hi = reproduce.wilson(0, 10)  # never below 0, unlike the normal approximation
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.27 < hi < 0.28


def _write(store, sweep, accuracy, extra=None):
    plan = load_spec(reproduce.REPRO_DIR / f"{sweep.removeprefix('repro_')}.yaml").plan()
    rows = []
    for t in plan.trials:
        row = {**t.config.model_dump(), "trial_id": t.trial_id, "cell_id": t.cell_id, "status": "completed",
               "test_acc_at_best_val": accuracy(t.config), "train_seconds": 1.0, "density": 0.5}
        row.update((extra or {}).get("row", {}))
        rows.append(row)
    # a trial of an older version of the spec: stored, never reported
    old = {**plan.trials[0].config.model_dump(), "epochs": 1}
    rows.append({**old, "trial_id": "0123456789abcdef", "cell_id": "x", "status": "completed", "test_acc_at_best_val": 0.99})
    store.write_trials(sweep, rows)
    store.flush()


def test_report_reads_the_store_and_names_what_did_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")
    _write(store, "repro_supermask", lambda c: 0.40 + 0.01 * c.seed)
    _write(store, "repro_edge_popup_k", lambda c: 0.7 - abs(c.keep_fraction - 0.5) * (1 + c.seed))
    text = reproduce.write_report(str(tmp_path / "store"), None)
    f = text.split("## (f)")[1].split("## ")[0]
    assert "Reproduced: deterministic 40.5%, sampled 40.5%" in f
    assert "s0: 40.0, s1: 41.0" in f
    lo, hi = reproduce.wilson(810, 2000)
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in f
    b = text.split("## (b)")[1].split("## ")[0]
    assert "Reproduced: best mean at k = 0.5" in b
    assert "Not run yet" in text.split("## (a)")[1].split("## ")[0]
    assert (tmp_path / "figures" / "claim_f.png").stat().st_size > 0
    assert "99.0" not in text  # the old spec's trial is not reported
    assert not math.isnan(reproduce.wilson(1, 2)[0])


def test_run_sweeps_starts_nothing_when_every_planned_trial_is_final(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "store")
    for claim in reproduce.CLAIMS:
        for sweep in claim.sweeps:
            _write(store, sweep, lambda c: 0.5)

    def no_run(*args, **kwargs):
        raise AssertionError("a finished sweep was started")

    monkeypatch.setattr(reproduce.subprocess, "run", no_run)
    reproduce.run_sweeps(str(tmp_path / "store"), tmp_path / "timings.json")
    assert not (tmp_path / "timings.json").exists()  # nothing ran, nothing timed
