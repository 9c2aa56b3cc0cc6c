"""`hidden analyze lottery`: the lottery curve from a synthetic store written through the
store's own writers, checked against points computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from synthetic_store import make_trial, write_synthetic_sweep

from hidden_core.analysis.lottery import lottery_points, lottery_seed_scores
from hidden_core.cli import main as cli_main
from hidden_core.store import ResultStore

LEVEL_DENSITY = {0: 1.0, 1: 0.8, 2: 0.64}  # prune_rate 0.2 down to k = 0.64: two pruned levels
SEEDS = (0, 1, 2)
EPOCHS = 3


def lottery_trial(seed: int, rng: np.random.Generator, index: int, *, k: float = 0.64, lr: float = 0.1, cell_id: str | None = None, vals: tuple[float, ...] = (0.6, 0.7, 0.8)) -> tuple[dict, list[dict]]:
    """A lottery_ticket trial row and its per-level epoch rows, with random accuracies
    (validation accuracies drawn from `vals`)."""
    row, _ = make_trial({"method": "lottery_ticket", "keep_fraction": k, "prune_rate": 0.2, "lottery_controls": True, "lr": lr, "seed": seed}, noise=0.01, rng=rng, index=index, epochs=EPOCHS, cell_id=cell_id)
    history, epoch = [], 0
    levels = [level for level, density in LEVEL_DENSITY.items() if 0 < level and density >= k]
    segments = [(0, "ticket", EPOCHS)] + [(level, branch, 1 if branch == "supermask" else EPOCHS) for level in levels for branch in ("ticket", "supermask", "reinit", "random_prune")]
    for level, branch, rows in segments:
        for level_epoch in range(1 if branch != "supermask" else 0, rows + (branch != "supermask")):
            epoch += 1
            # coarse values, so ties in val_acc happen: the earliest best epoch must win
            history.append({"epoch": epoch, "train_loss": 0.5, "train_acc": 0.9, "val_acc": float(rng.choice(vals)), "test_acc": float(rng.uniform(0.5, 0.9)), "lr": lr, "seconds": 1.0, "level": level, "branch": branch, "level_epoch": level_epoch, "density": LEVEL_DENSITY[level]})
    return row, history


def level_best(history: list[dict]) -> dict[tuple[int, str], dict]:
    """(level, branch) -> the epoch row of best validation accuracy (the earliest of ties)."""
    best: dict[tuple[int, str], dict] = {}
    for r in history:  # epoch order; strict > keeps the earliest of tied epochs
        key = (r["level"], r["branch"])
        if key not in best or r["val_acc"] > best[key]["val_acc"]:
            best[key] = r
    return best


def by_hand(histories: dict[str, list[dict]]) -> dict[tuple[str, float], list[float]]:
    """(branch, density) -> test accuracies at each level's best-validation epoch, one per seed."""
    out: dict[tuple[str, float], list[float]] = {}
    for history in histories.values():
        for (level, branch), r in level_best(history).items():
            out.setdefault((branch, LEVEL_DENSITY[level]), []).append(r["test_acc"])
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("lottery_store")
    store = ResultStore(root, compact_every=None)
    rng = np.random.default_rng(5)
    trials = [lottery_trial(seed, rng, i) for i, seed in enumerate(SEEDS)]
    store.write_trials("lt", [r for r, _ in trials], [{"trial_id": r["trial_id"], **e} for r, h in trials for e in h])
    configs = [{"method": m, "keep_fraction": k, "seed": s} for m, ks in (("edge_popup", (0.3, 0.5, 0.7)), ("dense", (0.5,))) for k in ks for s in SEEDS]
    write_synthetic_sweep(store, "ep", configs)
    return store, {r["trial_id"]: h for r, h in trials}


def run(store: ResultStore, *argv: str) -> int:
    return cli_main(["analyze", "lottery", *argv, "--results", str(store.root)])


def test_points_are_the_best_validation_test_accuracies_per_level_and_branch(store, tmp_path, capsys):
    store, histories = store
    assert run(store, "lt", "--with", "ep", "--out", str(tmp_path)) == 0
    points = pd.read_csv(tmp_path / "lottery_points.csv")
    expected = by_hand(histories)
    lottery = points[points["source"] == "lottery_ticket"]
    assert sorted(zip(lottery["line"], lottery["density"], strict=True)) == sorted(expected)
    assert set(lottery["line"]) == {"ticket", "supermask", "reinit", "random_prune"}
    for _, p in lottery.iterrows():
        values = np.array(expected[(p["line"], p["density"])])
        assert p["n"] == len(values) == len(SEEDS)
        assert p["mean"] == pytest.approx(values.mean())
        half = 4.302652729911275 * values.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
        assert (p["ci_low"], p["ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    # edge_popup at its keep fractions, dense as one point at density 1, from the other sweep
    ep_trials = store.load_trials("ep")
    edge = points[points["source"] == "edge_popup"]
    assert list(edge["density"]) == [0.3, 0.5, 0.7]
    for _, p in edge.iterrows():
        at_k = ep_trials[(ep_trials["method"] == "edge_popup") & (ep_trials["keep_fraction"] == p["density"])]
        assert p["n"] == 3 and p["mean"] == pytest.approx(at_k["test_acc_at_best_val"].mean())
    dense = points[points["source"] == "dense"]
    assert len(dense) == 1 and dense["density"].iloc[0] == 1.0
    assert dense["mean"].iloc[0] == pytest.approx(ep_trials.loc[ep_trials["method"] == "dense", "test_acc_at_best_val"].mean())
    assert (tmp_path / "lottery.png").stat().st_size > 0
    text = (tmp_path / "lottery.md").read_text()
    assert "lottery.png" in text and "ticket: n=3" in text and "edge_popup: n=3" in text


def test_without_with_the_curve_has_only_the_lottery_lines(store, tmp_path):
    store, _ = store
    assert run(store, "lt", "--out", str(tmp_path)) == 0
    assert set(pd.read_csv(tmp_path / "lottery_points.csv")["source"]) == {"lottery_ticket"}


@pytest.mark.parametrize(("sweep", "message"), [("ep", "has no lottery_ticket trials"), ("nothing_here", "nothing_here")])
def test_a_lottery_free_or_missing_sweep_is_a_clear_exit_2(store, tmp_path, capsys, sweep, message):
    store, _ = store
    assert run(store, sweep, "--out", str(tmp_path)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lottery_points.csv").exists()


def test_a_selection_without_trials_is_exit_2(store, tmp_path, capsys):
    store, _ = store
    assert run(store, "lt", "--where", "seed == 99", "--out", str(tmp_path)) == 2
    assert "no trials match" in capsys.readouterr().err


def test_a_searched_hyperparameter_keeps_per_seed_and_level_the_trial_of_best_validation(tmp_path):
    """Two trials per (cell, seed), lr searched: each point takes, seed by seed, the trial
    whose level has the higher best validation accuracy (never both, never their mean)."""
    store = ResultStore(tmp_path / "store", compact_every=None)
    rng = np.random.default_rng(11)
    # disjoint validation values, so the two trials of a seed never tie at a level
    searched = {(seed, lr): lottery_trial(seed, rng, 2 * seed + (lr == 0.01), lr=lr, cell_id=f"cell-{seed}", vals=vals)
                for seed in SEEDS for lr, vals in ((0.1, (0.6, 0.7, 0.8)), (0.01, (0.65, 0.75, 0.85)))}
    store.write_trials("search", [r for r, _ in searched.values()], [{"trial_id": r["trial_id"], **e} for r, h in searched.values() for e in h])
    assert run(store, "search", "--out", str(tmp_path / "out")) == 0
    points = pd.read_csv(tmp_path / "out" / "lottery_points.csv")
    expected: dict[tuple[str, float], list[float]] = {}
    for seed in SEEDS:
        best = {lr: level_best(searched[(seed, lr)][1]) for lr in (0.1, 0.01)}
        for level, branch in best[0.1]:
            chosen = max((best[lr][(level, branch)] for lr in (0.1, 0.01)), key=lambda r: r["val_acc"])
            expected.setdefault((branch, LEVEL_DENSITY[level]), []).append(chosen["test_acc"])
    assert set(points["line"]) == {"ticket", "supermask", "reinit", "random_prune"}  # lr is searched: no line per lr
    assert sorted(zip(points["line"], points["density"], strict=True)) == sorted(expected)
    for _, p in points.iterrows():
        values = expected[(p["line"], p["density"])]
        assert p["n"] == len(SEEDS) and p["seeds"] == "0 1 2"
        assert [float(v) for v in p["values"].split()] == pytest.approx(values, rel=1e-5)
    # both settings won somewhere, so the test tells selection from taking one trial
    chosen_lrs = {lr for seed in SEEDS for lr in (0.1, 0.01) for key, r in level_best(searched[(seed, lr)][1]).items()
                  if r["val_acc"] > level_best(searched[(seed, 0.1 if lr == 0.01 else 0.01)][1])[key]["val_acc"]}
    assert chosen_lrs == {0.1, 0.01}


def test_keep_fractions_are_lines_and_levels_are_grouped_by_index_not_float_density():
    """Trials of k = 0.8 and k = 0.64 prune at their own rates: each k is its own line, and
    within a line a level is one point, its seeds counted once, even where one trial's level 1
    density reads 0.79984 and another's 0.8 (issue 22, point 4: twin points, n=6 from 3 seeds)."""
    rng = np.random.default_rng(3)
    trials = {(seed, k): lottery_trial(seed, rng, i, k=k, vals=vals) for i, (seed, (k, vals)) in enumerate((s, kv) for s in SEEDS for kv in ((0.8, (0.65, 0.75, 0.85)), (0.64, (0.6, 0.7, 0.8))))}
    for (seed, k), (_, history) in trials.items():
        if k == 0.64 and seed == 1:  # one trial's masks round differently
            for e in history:
                if e["level"] == 1:
                    e["density"] = 0.79984
    frame = pd.DataFrame([r for r, _ in trials.values()])
    epochs = pd.DataFrame([{"trial_id": r["trial_id"], **e} for r, h in trials.values() for e in h])
    scores = lottery_seed_scores(frame, epochs)
    assert set(scores["line"]) == {f"{b}, keep_fraction={k}" for b in ("ticket", "supermask", "reinit", "random_prune") for k in (0.8, 0.64)}
    assert not scores.duplicated(["line", "level", "seed"]).any()
    points = lottery_points(frame, epochs)
    assert (points["n"] == len(SEEDS)).all() and (points["seeds"] == "0 1 2").all()
    assert not points.duplicated(["line", "level"]).any()
    one = points[(points["line"] == "ticket, keep_fraction=0.64") & (points["level"] == 1)]
    assert len(one) == 1 and one["density"].iloc[0] == pytest.approx((0.8 + 0.8 + 0.79984) / 3)
    for seed in SEEDS:
        for k in (0.8, 0.64):
            for (level, branch), r in level_best(trials[(seed, k)][1]).items():
                point = scores[(scores["line"] == f"{branch}, keep_fraction={k}") & (scores["level"] == level) & (scores["seed"] == seed)]
                assert point["test_acc_at_best_val"].tolist() == pytest.approx([r["test_acc"]])
