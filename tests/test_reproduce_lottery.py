"""Claim (g) of REPRODUCTIONS.md: the lottery table and verdict are computed from the store
(per level and branch, the test accuracy at the level's best-validation epoch; paired
Student-t intervals over seeds, decided three-way by the claim's checks), checked against
values computed by hand. 10 pruned levels at rate 0.2 (density 0.107)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hidden_core import reproduce
from hidden_core.spec import load_spec, parse_spec
from hidden_core.store import ResultStore

SEEDS = (0, 1, 2, 3, 4)
LEVELS = reproduce.LOTTERY_LEVELS
DENSITIES = [0.8**level for level in range(LEVELS + 1)]  # prune rate 0.2 down to 0.107
SEED_NOISE = np.array([0.004, -0.003, 0.001, -0.006, 0.005])


def designed(level: int, branch: str, seed: int, *, rp_gap_at_9: float = 0.12, ticket_at_4: float = 0.52) -> float:
    """Test accuracy of (level, branch, seed): dense 0.50; the ticket 0.52 down to density
    0.4 and 0.50 below (matching dense); reinit 0.10 and random_prune 0.12 below the ticket."""
    noise = SEED_NOISE[seed]
    if level == 0:
        return 0.50 + noise
    ticket = (ticket_at_4 if level == 4 else 0.52) if DENSITIES[level] >= 0.4 else 0.50 + noise / 4
    ticket += noise
    if branch == "ticket":
        return ticket
    if branch == "reinit":
        return ticket - 0.10 + noise / 2
    if branch == "random_prune":
        return ticket - (rp_gap_at_9 if level == 9 else 0.12) + noise / 3
    return 0.25 + noise  # supermask


def scores(**kwargs) -> pd.DataFrame:
    """lottery_seed_scores' shape: one row per (branch, level, seed)."""
    rows = [
        {"line": b, "branch": b, "level": level, "density": DENSITIES[level], "seed": s, "test_acc_at_best_val": designed(level, b, s, **kwargs)}
        for level in range(LEVELS + 1) for b in (("ticket",) if level == 0 else ("ticket", "supermask", "reinit", "random_prune")) for s in SEEDS
    ]
    return pd.DataFrame(rows)


def t_text(values: np.ndarray, signed: bool = False) -> str:
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return f"{100 * np.mean(values):{'+' if signed else ''}.1f} ± {100 * half:.1f}"


def decide(frame: pd.DataFrame, lenet: pd.DataFrame | None = None) -> reproduce.Decision:
    """Claim (g) on the MLP arm's `frame` and the LeNet arm's (the designed pattern by default)."""
    claim = next(c for c in reproduce.CLAIMS if c.key == "g")
    return reproduce.decide_claim(claim, {reproduce.LEVELS: frame, reproduce.levels_key("repro_lottery_lenet"): scores() if lenet is None else lenet})


def test_the_designed_pattern_is_reproduced_and_the_table_is_the_hand_computation():
    decision = decide(scores())
    assert decision.verdict == "reproduced"
    text = "\n".join(decision.lines)
    ticket = np.array([designed(10, "ticket", s) for s in SEEDS])
    reinit = np.array([designed(10, "reinit", s) for s in SEEDS])
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(ticket - reinit), scale=stats.sem(ticket - reinit))
    assert f"MLP 40-100-100: ticket - reinit at level 10 (density 0.107): reproduced; `t - c` mean {100 * np.mean(ticket - reinit):+.1f}, 95% t-interval over 5 seeds [{100 * lo:+.1f}, {100 * hi:+.1f}]" in text
    table = reproduce.lottery_table(reproduce.lottery_levels(scores()))
    row10 = next(line for line in table.splitlines() if line.startswith("| 10 |"))
    dense = np.array([designed(0, "ticket", s) for s in SEEDS])
    assert t_text(ticket) in row10 and t_text(ticket - reinit, signed=True) in row10 and t_text(ticket - dense, signed=True) in row10
    assert "n = 5" in table


def test_a_control_as_good_as_the_ticket_at_a_sparse_level_is_not_reproduced():
    decision = decide(scores(rp_gap_at_9=-0.05))
    assert decision.verdict == "not reproduced"
    assert "MLP 40-100-100: ticket - random_prune at level 9 (density 0.134): not reproduced" in "\n".join(decision.lines)


def test_the_lenet_arm_decides_too():
    decision = decide(scores(), lenet=scores(ticket_at_4=0.47))
    assert decision.verdict == "not reproduced" and "**LeNet 300-100: the ticket matches" in "\n".join(decision.lines)
    assert decide(scores(), lenet=scores().iloc[:0]).verdict == "inconclusive"  # an arm not run decides nothing


def test_a_ticket_below_dense_at_density_041_is_not_reproduced():
    decision = decide(scores(ticket_at_4=0.47))
    assert decision.verdict == "not reproduced" and "MLP 40-100-100: ticket - dense at level 4 (density 0.410): not reproduced" in "\n".join(decision.lines)


def test_an_unconverged_dense_network_makes_the_match_inconclusive():
    frame = scores()
    frame["health_flags"] = np.where((frame["level"] == 0) & (frame["seed"] == 2), "not_converged", "")
    decision = decide(frame)
    assert decision.verdict == "inconclusive"
    assert "inconclusive (baseline failed: branch ticket, level 0 (not_converged in 1 of 5 seeds))" in "\n".join(decision.lines)


def test_a_split_line_is_refused():
    frame = scores()
    frame.loc[0, "line"] = "ticket, width=2"
    with pytest.raises(ValueError, match="one line per branch"):
        reproduce.lottery_levels(frame)


def write_lottery_store(root, sweep: str = "repro_lottery") -> None:
    """Trials of a repro spec of (g) with per-level epoch rows: a worse-validation epoch per
    level carries another test accuracy (0.99), so selection on validation is what a table shows."""
    store = ResultStore(root, compact_every=None)
    plan = load_spec(reproduce.spec_file(sweep)).plan()
    rows, epochs = [], []
    for t in plan.trials:
        c = t.config
        row = {**c.model_dump(), "trial_id": t.trial_id, "cell_id": t.cell_id, "status": "completed", "train_seconds": 1.0, "density": c.keep_fraction}
        if c.method == "edge_popup":
            rows.append({**row, "test_acc_at_best_val": 0.28 + SEED_NOISE[c.seed], "best_val_acc": 0.3})
            continue
        rows.append({**row, "test_acc_at_best_val": designed(LEVELS, "ticket", c.seed), "best_val_acc": 0.5})
        epoch = 0
        for level in range(LEVELS + 1):
            for branch in ("ticket",) if level == 0 else ("ticket", "supermask", "reinit", "random_prune"):
                # (val, test): the best-validation epoch holds the designed value
                pairs = ((0.4, 0.99), (0.6, designed(level, branch, c.seed))) if branch != "supermask" else ((0.3, designed(level, branch, c.seed)),)
                if level == 0:  # the dense training converged: its best epoch, then PATIENCE worse ones
                    pairs = ((0.6, designed(0, branch, c.seed)), *[(0.4, 0.99)] * reproduce.PATIENCE)
                for level_epoch, (val, test) in enumerate(pairs, 1):
                    epoch += 1
                    epochs.append({"trial_id": t.trial_id, "epoch": epoch, "val_acc": val, "test_acc": test, "level": level, "branch": branch,
                                   "level_epoch": level_epoch, "density": DENSITIES[level]})
    store.write_trials(sweep, rows, epochs)
    store.flush()


def test_report_section_g_reads_the_store(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    write_lottery_store(tmp_path / "store")
    write_lottery_store(tmp_path / "store", "repro_lottery_lenet")
    text = reproduce.write_report(str(tmp_path / "store"), None)
    g = text.split("## (g)")[1].split("\n## ")[0]
    assert "**Verdict: reproduced**" in g and "Frankle & Carbin 2019" in g and "10-20% of the size" in g
    assert g.count(f"trained to convergence by the patience rule (best validation epoch at least {reproduce.PATIENCE} epochs before the last): 5 of 5 seeds") == 2
    assert "**LeNet 300-100.**" in g and (tmp_path / "figures" / "claim_g_lenet.png").stat().st_size > 0
    assert "edge_popup (scores trained on random weights) " + t_text(0.28 + SEED_NOISE) + "% (n = 5)" in g
    assert "99.0" not in g  # the worse-validation epochs are never reported
    assert (tmp_path / "figures" / "claim_g.png").stat().st_size > 0
    per_seed = pd.read_csv(tmp_path / "figures" / "claim_g.csv")
    assert len(per_seed) == len(SEEDS) * (1 + LEVELS * 4)


def test_only_g_rewrites_its_section_and_keeps_the_others_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    old = ResultStore(tmp_path / "old", compact_every=None)  # another store made section (f)
    raw = reproduce.raw_spec("repro_supermask")
    tuning = reproduce.tuning_spec(raw)
    old.write_trials(tuning["name"], [{**t.config.model_dump(), "trial_id": t.trial_id, "cell_id": t.cell_id, "status": "completed",
                                       "best_val_acc": 0.5, "test_acc_at_best_val": 0.5, "train_seconds": 30.0} for t in parse_spec(tuning).plan().trials])
    old.flush()
    claim = next(c for c in reproduce.CLAIMS if c.key == "f")
    spec = reproduce.resolved(claim, "repro_supermask", old, 5)
    old.write_trials("repro_supermask", [{**t.config.model_dump(), "trial_id": t.trial_id, "cell_id": t.cell_id, "status": "completed",
                                          "test_acc_at_best_val": (0.9 if t.config.method == "dense" else 0.6) + SEED_NOISE[t.config.seed], "train_seconds": 30.0, "density": 0.5}
                                         for t in parse_spec(spec).plan().trials])
    old.flush()
    out = tmp_path / "REPRODUCTIONS.md"
    assert reproduce.main(["--results", str(tmp_path / "old"), "--report-only", "--out", str(out)]) == 0
    before = out.read_text()
    section_f = "## (f)" + before.split("## (f)")[1].split("\n## ")[0]
    assert "**Verdict: reproduced**" in section_f and "Not run yet" in before.split("## (g)")[1]
    write_lottery_store(tmp_path / "new")  # holds no supermask trials: (f) must be kept, not rewritten
    write_lottery_store(tmp_path / "new", "repro_lottery_lenet")
    assert reproduce.main(["--results", str(tmp_path / "new"), "--report-only", "--only", "g", "--out", str(out)]) == 0
    after = out.read_text()
    assert "## (f)" + after.split("## (f)")[1].split("\n## ")[0] == section_f
    assert "**Verdict: reproduced**" in after.split("## (g)")[1]
    # totals add every section: 9 tuning + 15 supermask trials x 30 s and 10 + 5 lottery trials x 1 s
    assert f"Training time summed over all trials: {(24 * 30 + 15) / 60:.1f} min" in after
    assert after.count("## (") == len(reproduce.CLAIMS)
