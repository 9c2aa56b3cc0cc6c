"""Per-cell Optuna pruning.

Fast: the Tune scheduler driven directly with constructed learning curves (no Ray), where
one trial per cell is clearly best and one cell is far below the other. Slow: a real small
sweep on local Ray where sampled learning rates make some trials hopeless."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest

from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune import report_codec
from hidden_core.tune.driver_state import SweepRuntime
from hidden_core.tune.planning import plan_todo
from hidden_core.tune.pruning import CellStudies, PruningScheduler

EPOCHS = 8
# seed -> quality; seed 4 is clearly the best of its cell, seeds 2, 3, 5 clearly the worst
QUALITY = {0: 0.20, 1: 0.18, 2: 0.05, 3: 0.04, 4: 0.30, 5: 0.03, 6: 0.01}
BASE = {1.0: 0.10, 4.0: 0.60}  # the narrow cell is far below the wide one at every epoch


def curve(width: float, seed: int, epoch: int) -> float:
    return BASE[width] + QUALITY[seed] * (1 - 0.7**epoch)


@dataclass
class FakeTrial:
    """What the scheduler reads of a Tune trial."""

    trial_id: str
    config: dict
    status: str = "RUNNING"
    last_result: dict = field(default_factory=dict)


def _spec(tmp_path: Path, **extra):
    return parse_spec({
        "name": "prune",
        "base": {"epochs": EPOCHS},
        "grid": {"width": [1, 4], "seed": [0, 1, 2, 3, 4, 5]},
        "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        "report_every_s": 0,
        **extra,
    })


def _runtime(spec, tmp_path: Path, storage: str) -> SweepRuntime:
    store = ResultStore(tmp_path / "results")
    studies = CellStudies(spec, storage)
    runtime = SweepRuntime(spec, store, str(tmp_path / "results"), studies=studies, run_values={}, provenance={"hidden_version": "test"})
    runtime.load(plan_todo(spec, store))
    return runtime


def _run_trial(scheduler: PruningScheduler, runtime: SweepRuntime, planned, ray_id: str, seed_quality: int | None = None) -> tuple[str, int]:
    """Feed one trial's epochs to the scheduler as Tune would; returns (decision, epochs run)."""
    width, seed = planned.config.width, planned.config.seed if seed_quality is None else seed_quality
    rows = [{"epoch": epoch, "train_loss": 1.0, "train_acc": 0.5, "val_acc": curve(width, seed, epoch), "test_acc": curve(width, seed, epoch) - 0.01,
             "lr": 0.1, "seconds": 0.1} for epoch in range(1, EPOCHS + 1)]
    return _feed(scheduler, runtime, planned, ray_id, rows)


@pytest.mark.slow  # seconds to a minute (a subprocess, a real training or a heavy import): not the unit loop
def test_pruning_within_cells(tmp_path: Path):
    spec = _spec(tmp_path)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    runtime = _runtime(spec, tmp_path, storage)
    scheduler = PruningScheduler(runtime)
    outcome: dict[tuple[float, int], tuple[str, int]] = {}
    # the cells interleave trial by trial, as a sweep would run them
    by_cell = {}
    for t in spec.plan().trials:
        by_cell.setdefault(t.config.width, []).append(t)
    for i in range(6):
        for width in (1.0, 4.0):
            planned = by_cell[width][i]
            outcome[(width, planned.config.seed)] = _run_trial(scheduler, runtime, planned, f"ray_{width}_{i}")

    for width in (1.0, 4.0):
        # the startup trials and the clearly best trial complete; the clearly worst stop early
        assert outcome[(width, 0)] == ("completed", EPOCHS)
        assert outcome[(width, 1)] == ("completed", EPOCHS)
        assert outcome[(width, 4)] == ("completed", EPOCHS), "the best trial of its cell was pruned"
        for seed in (2, 3, 5):
            status, epochs = outcome[(width, seed)]
            assert status == "pruned" and epochs < EPOCHS
    # compared across cells, every narrow trial would lose to the wide ones: they did not
    assert all(outcome[(1.0, s)][0] == "completed" for s in (0, 1, 4))

    # the store: one row per trial, pruned rows stopped early with their epochs
    store = runtime.store
    frame = store.load_trials("prune").set_index("trial_id")
    assert len(frame) == 12
    epochs = store.load_epochs("prune")
    for trial_id, row in frame.iterrows():
        status, ran = outcome[(row["width"], row["seed"])]
        assert row["status"] == status and row["epochs_run"] == ran
        assert list(epochs[epochs.trial_id == trial_id].epoch) == list(range(1, ran + 1))

    # Optuna: one study per cell; pruned trials reached it as PRUNED, finished ones COMPLETE
    names = sorted(optuna.get_all_study_names(storage))
    assert len(names) == 2 and all(n.startswith("prune/") for n in names)
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        states = sorted(t.state.name for t in study.trials)
        assert states == ["COMPLETE"] * 3 + ["PRUNED"] * 3
        for t in study.trials:
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert math.isclose(t.value, max(t.intermediate_values.values()))


def test_a_rerun_sweep_keeps_its_pruning_history(tmp_path: Path):
    spec = _spec(tmp_path)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    runtime = _runtime(spec, tmp_path, storage)
    scheduler = PruningScheduler(runtime)
    narrow = [t for t in spec.plan().trials if t.config.width == 1.0]
    for i in (0, 1):  # two startup trials complete, then the driver "dies"
        assert _run_trial(scheduler, runtime, narrow[i], f"a{i}")[0] == "completed"
    # a new driver: new runtime and studies objects, the same storage
    runtime = _runtime(spec, tmp_path / "second", storage)
    scheduler = PruningScheduler(runtime)
    status, epochs = _run_trial(scheduler, runtime, narrow[5], "b5", seed_quality=6)
    assert status == "pruned" and epochs == 2  # compared with the first driver's trials at once


def test_search_samples_rotate_over_points_and_come_from_the_cell_study(tmp_path: Path):
    spec = parse_spec({
        "name": "srch", "grid": {"width": [1, 2], "seed": [0, 1]},
        "search": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}, "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}},
        "samples_per_cell": 2, "sampler": "random", "seed": 3,
    })
    runtime = _runtime(spec, tmp_path, f"sqlite:///{tmp_path / 'studies.db'}")
    suggestions = []
    while (s := runtime.next_suggestion()) is not None:
        suggestions.append(s)
    assert len(suggestions) == 8
    points = [(s["trial"]["width"], s["trial"]["seed"]) for s in suggestions]
    assert points[:4] == [(1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)]  # round robin over grid points
    assert len({s["trial_id"] for s in suggestions}) == 8
    for s in suggestions:
        assert 1e-4 <= s["trial"]["lr"] <= 1e-1 and s["trial"]["optimizer"] in ("sgd", "adam")
        assert s["searched"] == {"lr": s["trial"]["lr"], "optimizer": s["trial"]["optimizer"]}
        assert s["optuna_number"] is not None
    # both seeds of a cell share its study: numbers 0..3 in each of the two cells
    by_cell = {}
    for s in suggestions:
        by_cell.setdefault(s["cell_id"], []).append(s["optuna_number"])
    assert sorted(map(sorted, by_cell.values())) == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_stale_running_optuna_trials_fail_on_a_fresh_run(tmp_path: Path):
    spec = _spec(tmp_path)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    studies = CellStudies(spec, storage)
    planned = spec.plan().trials[0]
    number = studies.register(planned.cell_id, planned.trial_id)
    assert studies.register(planned.cell_id, planned.trial_id) == number  # found again (restore)
    assert CellStudies(spec, storage).fail_stale({planned.cell_id}) == 1
    assert [t.state.name for t in studies.trials(planned.cell_id)] == ["FAIL"]


# ---- a real sweep --------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_sweep_prunes_hopeless_trials(tmp_path: Path):
    from hidden_core.tune.runner import run_sweep

    spec = parse_spec({
        "name": "realprune",
        "base": {"dataset": "mnist1d", "model": "mlp", "width": 0.5, "epochs": 12, "optimizer": "adam"},
        "grid": {"seed": [0]},
        # half the range is far too small to learn anything in 12 epochs
        "search": {"lr": {"type": "float", "low": 1e-7, "high": 3e-2, "log": True}},
        "samples_per_cell": 8, "sampler": "random", "seed": 1,
        "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
        # one at a time: which trials have completed when another is judged is then the same
        # in every run (two at once, the two first trials could both be hopeless ones that
        # complete together, and a median of hopeless trials prunes nothing)
        "report_every_s": 0, "max_concurrent": 1,
    })
    results = tmp_path / "results"
    report = run_sweep(spec, results, progress=False, num_cpus=2)
    store = ResultStore(results)
    frame = store.load_trials("realprune")
    assert len(frame) == 8 and set(frame["status"]) <= {"completed", "pruned"}
    pruned = frame[frame["status"] == "pruned"]
    assert len(pruned) >= 1, frame[["lr", "status", "epochs_run", "best_val_acc"]]
    assert (pruned["epochs_run"] < 12).all()
    epochs = store.load_epochs("realprune")
    for _, row in frame.iterrows():
        assert list(epochs[epochs.trial_id == row["trial_id"]].epoch) == list(range(1, row["epochs_run"] + 1))
    best = frame.loc[frame["best_val_acc"].idxmax()]
    assert best["status"] == "completed"
    # Optuna saw the pruned trials as PRUNED
    storage = f"sqlite:///{results.resolve() / 'realprune' / '_studies.db'}"
    (name,) = optuna.get_all_study_names(storage)
    states = [t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials]
    assert states.count("PRUNED") == len(pruned) and states.count("COMPLETE") == 8 - len(pruned)
    assert report.counts["pruned"] == len(pruned)
    assert not (results / "realprune" / "checkpoints").exists()  # final trials keep no checkpoint
    # ... but every one kept what it learned; a pruned one from its last checkpoint (which may
    # be an epoch past its last report: training goes on while the driver decides)
    from hidden_core.subnet.fileformat import read_subnet_file

    for _, row in frame.iterrows():
        f = read_subnet_file(results / "realprune" / "subnets" / f"{row['trial_id']}.safetensors")
        assert f.status == row["status"] and f.config.trial_id == row["trial_id"]
        assert row["subnet_file"] == f"realprune/subnets/{row['trial_id']}.safetensors"  # the row names it
        if row["status"] == "completed":
            assert f.metrics["test_acc"] == row["test_acc"]
        else:
            assert row["epochs_run"] <= f.metrics["epochs_run"] < 12
    assert not (results / "realprune" / "lease.json").exists()


# ---- lottery tickets: levels of one cell compared step by step -----------------------------------
def _lottery_rows(config, ticket, control: float) -> list[dict]:
    """A lottery trial's rows as the level loop reports them: `ticket(level, level_epoch)` on
    the ticket branch, `control` on the supermask/reinit/random_prune rows."""
    from hidden_core.lottery import plan
    from hidden_core.methods.lottery_ticket import level_count

    rows = []
    for seg in plan(config, level_count(config.keep_fraction, config.prune_rate)):
        for i in range(seg.rows):
            value = ticket(seg.level, i + 1) if seg.branch == "ticket" else control
            rows.append({"epoch": seg.offset + i + 1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": value, "test_acc": value - 0.01,
                         "lr": 0.1, "seconds": 0.1, "level": seg.level, "branch": seg.branch,
                         "level_epoch": 0 if seg.branch == "supermask" else i + 1, "density": 0.8**seg.level})
    return rows


def _feed(scheduler: PruningScheduler, runtime: SweepRuntime, planned, ray_id: str, rows: list[dict]) -> tuple[str, int]:
    config = {"trial": planned.config.model_dump(mode="json"), "trial_id": planned.trial_id, "cell_id": planned.cell_id, "optuna_number": None}
    trial = FakeTrial(ray_id, config)
    runtime.on_start(trial)
    for row in rows:
        result = report_codec.epoch_report(row, [row], {})
        decision = scheduler.on_trial_result(None, trial, result)
        runtime.on_result(trial, result)
        if decision == "STOP":
            scheduler.on_trial_complete(None, trial, result)
            runtime.on_complete(trial)
            return "pruned", row["epoch"]
    final = report_codec.final_report({"status": "completed", "epochs_run": len(rows), "best_val_acc": max(r["val_acc"] for r in rows),
                                       "val_acc": rows[-1]["val_acc"], "train_seconds": 0.1 * len(rows)}, rows, {})
    scheduler.on_trial_result(None, trial, final)
    runtime.on_result(trial, final)
    scheduler.on_trial_complete(None, trial, final)
    runtime.on_complete(trial)
    return "completed", len(rows)


def test_lottery_levels_are_pruned_and_control_branches_never_compared(tmp_path: Path):
    from hidden_core.tune.planning import planned_epochs

    spec = parse_spec({
        "name": "lotprune",
        "base": {"method": "lottery_ticket", "epochs": 3, "keep_fraction": 0.64, "prune_rate": 0.2, "lottery_controls": True},
        "grid": {"seed": [0, 1, 2, 3]},
        "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        "report_every_s": 0,
    })
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    runtime = _runtime(spec, tmp_path, storage)
    scheduler = PruningScheduler(runtime)
    trials = spec.plan().trials
    assert len({t.cell_id for t in trials}) == 1
    config = trials[0].config
    total = planned_epochs(config)
    assert total == 3 + 2 * (3 + 1 + 3 + 3) > config.epochs  # two levels, each with its controls

    def rising(level: int, level_epoch: int) -> float:  # each level better than the last
        return 0.3 + 0.2 * level + 0.01 * level_epoch

    # two startup trials: tickets that improve with the level, controls that beat them
    for i in (0, 1):
        assert _feed(scheduler, runtime, trials[i], f"s{i}", _lottery_rows(config, rising, control=0.99)) == ("completed", total)
    # level 0 as good as the others, then level 1 falls behind: pruned inside level 1
    # (the pruner used to decide only while epoch < epochs, i.e. inside level 0)
    stalled = _lottery_rows(config, lambda level, e: rising(0, e), control=0.99)
    status, stopped = _feed(scheduler, runtime, trials[2], "s2", stalled)
    assert status == "pruned" and stopped == config.epochs + 1
    assert stalled[stopped - 1]["level"] == 1 and stalled[stopped - 1]["branch"] == "ticket"
    # the same tickets as the startup trials with hopeless controls: the controls are other
    # networks and are never compared, so it completes
    assert _feed(scheduler, runtime, trials[3], "s3", _lottery_rows(config, rising, control=0.0)) == ("completed", total)

    study = optuna.load_study(study_name=scheduler.runtime.studies.study_name(trials[0].cell_id), storage=storage)
    ticket_steps = {r["epoch"] - 1 for r in _lottery_rows(config, rising, 0.0) if r["branch"] == "ticket"}
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert set(t.intermediate_values) == ticket_steps
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3 + ["PRUNED"]
    frame = runtime.store.load_trials("lotprune").set_index("trial_id")
    assert frame.loc[trials[2].trial_id, "status"] == "pruned" and frame.loc[trials[2].trial_id, "epochs_run"] == stopped
