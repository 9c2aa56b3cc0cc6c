"""hidden_core/tune/search.py: SweepSearcher, the Tune Searcher of a sweep. It hands Tune the
driver runtime's suggestions in order (the planned grid trials, then samples of each search
point from its cell's Optuna study, asked lazily) and FINISHED when the runtime has nothing
left; it optimizes the selection metric (validation, max); pickled into Tune's experiment
state it leaves the live runtime behind; its own save/restore/state hooks keep nothing."""

from __future__ import annotations

import pickle

from ray.tune.search import Searcher

from hidden_core.records import SELECTION_METRIC, SELECTION_MODE
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.driver_state import SweepRuntime
from hidden_core.tune.planning import plan_todo
from hidden_core.tune.search import SweepSearcher

RUN_VALUES = {"device": "cpu"}


def _searcher(spec, tmp_path, studies=None) -> tuple[SweepSearcher, SweepRuntime]:
    store = ResultStore(tmp_path / "results")
    runtime = SweepRuntime(spec, store, str(tmp_path / "results"), studies=studies, run_values=RUN_VALUES, provenance={"hidden_version": "test"})
    runtime.load(plan_todo(spec, store))
    return SweepSearcher(runtime), runtime


def _drain(searcher: SweepSearcher, limit: int = 50) -> list:
    out = []
    for i in range(limit):
        suggestion = searcher.suggest(f"tune-{i}")
        out.append(suggestion)
        if suggestion == Searcher.FINISHED:
            break
    return out


def test_it_selects_on_validation_and_accepts_tunes_search_properties(tmp_path):
    searcher, _ = _searcher(parse_spec({"name": "g", "grid": {"width": [1]}}), tmp_path)
    assert (searcher.metric, searcher.mode) == (SELECTION_METRIC, SELECTION_MODE) == ("val_acc", "max")
    assert searcher.set_search_properties(None, None, {}) is True  # Tune must not override the metric


def test_grid_trials_come_once_each_in_plan_order_then_finished(tmp_path):
    spec = parse_spec({"name": "g", "base": {"dataset": "digits", "epochs": 1}, "grid": {"method": ["dense", "edge_popup"], "width": [0.5, 1]}})
    searcher, _ = _searcher(spec, tmp_path)
    out = _drain(searcher)
    assert out[-1] == Searcher.FINISHED and Searcher.FINISHED not in out[:-1]
    assert [s["trial_id"] for s in out[:-1]] == [t.trial_id for t in spec.plan().trials]
    first = out[0]
    assert first["trial"] == spec.plan().trials[0].config.model_dump(mode="json") and first["run"] == RUN_VALUES
    assert searcher.suggest("late") == Searcher.FINISHED  # and it stays finished


def test_search_points_are_asked_from_their_cells_study_sample_by_sample(tmp_path):
    """Two cells x 3 samples: 6 suggestions, rotating over the cells (each cell's earlier
    sample has time to finish before its next is asked), every one with its own lr in bounds
    and its study trial number."""
    from hidden_core.tune.pruning import CellStudies

    spec = parse_spec({"name": "srch", "base": {"dataset": "digits", "epochs": 1}, "grid": {"width": [1, 2]},
                       "search": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}, "samples_per_cell": 3})
    studies = CellStudies(spec, f"sqlite:///{tmp_path / 'studies.db'}")
    searcher, _ = _searcher(spec, tmp_path, studies)
    out = _drain(searcher)
    assert out[-1] == Searcher.FINISHED and len(out) == 7
    samples = out[:-1]
    cells = [s["cell_id"] for s in samples]
    assert len(set(cells)) == 2 and cells[:2] != [cells[0]] * 2 and sorted(cells.count(c) for c in set(cells)) == [3, 3]
    assert all(0.001 <= s["searched"]["lr"] <= 0.1 and s["trial"]["lr"] == s["searched"]["lr"] for s in samples)
    assert all(isinstance(s["optuna_number"], int) for s in samples)
    assert len({s["trial_id"] for s in samples}) == 6


def test_pickling_leaves_the_runtime_behind(tmp_path):
    """Tune pickles the searcher into its experiment state: the runtime (store, studies,
    locks) must not go with it, and the copy keeps metric and mode."""
    searcher, _ = _searcher(parse_spec({"name": "g", "grid": {"width": [1]}}), tmp_path)
    copy = pickle.loads(pickle.dumps(searcher))
    assert not hasattr(copy, "runtime")
    assert (copy.metric, copy.mode) == (SELECTION_METRIC, SELECTION_MODE)


def test_its_own_state_is_empty_and_restoring_changes_nothing(tmp_path):
    searcher, runtime = _searcher(parse_spec({"name": "g", "base": {"dataset": "digits"}, "grid": {"width": [1, 2]}}), tmp_path)
    first = searcher.suggest("a")
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    assert not path.exists() and searcher.get_state() == {}
    searcher.restore(str(path))
    searcher.set_state({"anything": 1})
    searcher.on_trial_complete("a", {"val_acc": 0.9})
    second = searcher.suggest("b")
    assert second["trial_id"] != first["trial_id"] and searcher.suggest("c") == Searcher.FINISHED
