"""hidden_core/cli/sweep_cmd.py without Ray: `hidden sweep status` (and --watch) read from the
store alone; planned_counts makes final + still-to-run add up to the plan (grid trials by
trial_id, search samples by (cell_id, seed), extra rows counted apart); `sweep run`'s own
argument checks and --dry-run exit before anything is written. (The run itself starts Ray:
tests/test_sweep_e2e.py, marked slow; the machine checks: tests/test_cli_sweep.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from synthetic_store import make_trial

from hidden_core.cli import main
from hidden_core.cli.sweep_cmd import planned_counts
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore

GRID = "name: g\nbase: {dataset: mnist1d, epochs: 3}\ngrid: {method: [dense, edge_popup], width: [1, 2]}\n"
SEARCH = {"name": "q", "base": {"dataset": "mnist1d", "epochs": 3}, "grid": {"width": [1, 2]},
          "search": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}, "samples_per_cell": 2}


def _hidden(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _rows(configs_and_statuses, rng_seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(rng_seed)
    rows = []
    for i, (config, status, cell_id) in enumerate(configs_and_statuses):
        row, _ = make_trial(config.model_dump(), noise=0.01, rng=rng, index=i, epochs=config.epochs, status=status, cell_id=cell_id)
        assert row["trial_id"] == config.trial_id
        rows.append(row)
    return rows


def _grid_store(tmp_path, statuses):
    spec = parse_spec(yaml.safe_load(GRID))
    trials = spec.plan().trials
    rows = _rows([(t.config, s, t.cell_id) for t, s in zip(trials, statuses, strict=False)])
    store = ResultStore(tmp_path / "r", compact_every=None)
    for row in rows:
        store.write_trial("g", row)
    (tmp_path / "g.yaml").write_text(GRID)
    return spec, store, rows


def test_planned_counts_of_a_grid_count_its_trials_and_the_rest_apart():
    spec = parse_spec(yaml.safe_load(GRID))
    trials = spec.plan().trials
    other = parse_spec(yaml.safe_load(GRID.replace("epochs: 3", "epochs: 4"))).plan().trials[0]  # an older version's trial
    frame = pd.DataFrame(_rows([(trials[0].config, "completed", trials[0].cell_id), (trials[1].config, "pruned", trials[1].cell_id),
                                (trials[2].config, "failed", trials[2].cell_id), (other.config, "completed", other.cell_id)]))
    counts, outside = planned_counts(spec.plan(), frame)
    assert counts == {"completed": 1, "pruned": 1, "failed": 1} and outside == 1


def test_planned_counts_of_a_search_count_each_points_first_samples():
    """2 samples per point: of a point's rows the first 2 final ones (by finish time) count,
    failed ones only up to the samples still missing; the rest are extra samples."""
    spec = parse_spec(SEARCH)
    plan = spec.plan()
    a, b = plan.points
    sample = [a.config_for({"lr": lr}) for lr in (0.01, 0.02, 0.03)] + [b.config_for({"lr": lr}) for lr in (0.01, 0.02)]
    rows = _rows([(sample[0], "completed", a.cell_id), (sample[1], "pruned", a.cell_id), (sample[2], "completed", a.cell_id),
                  (sample[3], "completed", b.cell_id), (sample[4], "failed", b.cell_id)])
    counts, outside = planned_counts(plan, pd.DataFrame(rows))
    assert counts == {"completed": 2, "pruned": 1, "failed": 1}
    assert outside == 1  # a's third final sample
    rows[4]["status"] = "failed"
    rows.append({**rows[4], "trial_id": "f" * 16})  # a second failure of b: b lacks one sample, not two
    counts, outside = planned_counts(plan, pd.DataFrame(rows))
    assert counts["failed"] == 1 and outside == 2


def test_status_before_and_after_results(tmp_path, capsys):
    (tmp_path / "g.yaml").write_text(GRID)
    code, out, err = _hidden(capsys, "sweep", "status", tmp_path / "g.yaml", "--results", tmp_path / "r")
    assert code == 0, err
    assert out.strip() == f"sweep g: no results in {tmp_path / 'r'} yet; 4 trials planned"
    _, _, _ = _grid_store(tmp_path, ["completed", "diverged", "failed"])
    code, out, err = _hidden(capsys, "sweep", "status", tmp_path / "g.yaml", "--results", tmp_path / "r")
    assert code == 0, err
    assert "sweep g: 4 trials planned = 2 final (completed 1, pruned 0, diverged 1) + 2 still to run (1 of them failed before)" in out
    assert "failed " in out  # the failed trial's line under the tables


def test_watch_of_a_finished_sweep_ends_at_once_and_a_bad_interval_exits_2(tmp_path, capsys):
    _grid_store(tmp_path, ["completed", "completed", "pruned", "diverged"])
    code, out, err = _hidden(capsys, "sweep", "status", tmp_path / "g.yaml", "--results", tmp_path / "r", "--watch", "--interval", "30")
    assert code == 0, err
    assert " g 4/4 100%" in out.splitlines()[0] and out.strip().endswith("sweep g: every trial is final (4 of 4)")
    code, _, err = _hidden(capsys, "sweep", "status", tmp_path / "g.yaml", "--results", tmp_path / "r", "--watch", "--interval", "0")
    assert code == 2 and "--interval: 0.0 must be > 0 seconds" in err


def test_status_pauses_the_garbage_collector_only_while_it_plans(tmp_path, capsys, monkeypatch):
    """`sweep status` plans with Python's cyclic collector paused (full collections walked
    every object the imports and the plan made: 120-170 ms of a 5,000-trial status); the
    collector runs again after it, a bad spec or a --watch included."""
    import gc

    from hidden_core.tune import planning

    _grid_store(tmp_path, ["completed", "completed", "pruned", "diverged"])
    seen = []
    require_spec = planning.require_spec

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        return require_spec(*args, **kwargs)

    monkeypatch.setattr(planning, "require_spec", watched)
    assert gc.isenabled()
    code, out, err = _hidden(capsys, "sweep", "status", tmp_path / "g.yaml", "--results", tmp_path / "r")
    assert code == 0 and "4 trials planned = 4 final" in out, err
    assert seen == [False] and gc.isenabled()
    code, _, err = _hidden(capsys, "sweep", "status", tmp_path / "g.yaml", "--results", tmp_path / "r", "--watch", "--interval", "30")
    assert code == 0 and gc.isenabled()
    (tmp_path / "bad.yaml").write_text("name: bad\ngrid: {width: [0.5, -1]}\n")
    code, _, err = _hidden(capsys, "sweep", "status", tmp_path / "bad.yaml", "--results", tmp_path / "r")
    assert code == 2 and "grid.width[1]" in err and gc.isenabled()
    assert seen == [False, False, False]


@pytest.mark.parametrize(("flags", "message"), [
    (["--max-concurrent", "0"], "--max-concurrent: 0 must be >= 1"),
    (["--num-cpus", "0"], "--num-cpus: 0 is not in [1, 1024]"),
    (["--num-cpus", "2000"], "--num-cpus: 2000 is not in [1, 1024]"),
    (["--study-storage", "mysql//nohost"], "--study-storage"),
])
def test_run_refuses_bad_options_before_writing_anything(tmp_path, capsys, flags, message):
    (tmp_path / "g.yaml").write_text(GRID)
    code, out, err = _hidden(capsys, "sweep", "run", tmp_path / "g.yaml", "--results", tmp_path / "r", *flags)
    assert code == 2 and f"error: {message}" in err, err
    assert not (tmp_path / "r").exists()


def test_dry_run_shows_what_would_run_and_writes_nothing(tmp_path, capsys):
    _grid_store(tmp_path, ["completed", "failed"])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "r").rglob("*"))
    code, out, err = _hidden(capsys, "sweep", "run", tmp_path / "g.yaml", "--results", tmp_path / "r", "--dry-run", "--skip-resource-check")
    assert code == 0, err
    assert "sweep g: 4 trials planned (4 grid combinations)" in out
    assert "  skipped (already final in the store): 1" in out and "  would run: 3" in out
    assert "  largest trial: " in out and "width 2 on mnist1d" in out
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "r").rglob("*")) == before
