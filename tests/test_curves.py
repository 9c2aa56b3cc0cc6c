"""`hidden analyze curves` data (analysis/curves.py): one curve per group, and on a lottery
sweep one per level and branch over the epochs of that training (issue 22, point 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from synthetic_store import grid, make_trial

from hidden_core.analysis.curves import learning_curves

SEEDS = (0, 1, 2)
EPOCHS = 3
SEGMENTS = [(0, "ticket")] + [(level, b) for level in (1, 2) for b in ("ticket", "reinit")]


def _lottery(seed: int, index: int) -> tuple[dict, list[dict]]:
    """A lottery trial whose epochs table numbers every training on (epoch 1..15), as
    lottery.train_lottery writes it: each (level, branch) trains EPOCHS epochs."""
    rng = np.random.default_rng(seed)
    row, _ = make_trial({"method": "lottery_ticket", "keep_fraction": 0.64, "prune_rate": 0.2, "lottery_controls": True, "seed": seed},
                        noise=0.01, rng=rng, index=index, epochs=EPOCHS)
    history, epoch = [], 0
    for level, branch in SEGMENTS:
        for level_epoch in range(1, EPOCHS + 1):
            epoch += 1
            history.append({"trial_id": row["trial_id"], "epoch": epoch, "level": level, "branch": branch, "level_epoch": level_epoch,
                            "density": 0.8**level, "test_acc": 0.5 + 0.1 * level_epoch + 0.01 * level, "val_acc": 0.5})
    return row, history


def test_a_lottery_sweep_draws_one_curve_per_level_and_branch():
    made = [_lottery(seed, i) for i, seed in enumerate(SEEDS)]
    trials = pd.DataFrame([r for r, _ in made])
    epochs = pd.DataFrame([e for _, h in made for e in h])
    curves = learning_curves(trials, epochs, ["method"])
    assert set(curves["label"]) == {f"lottery_ticket, level {level} {branch}" for level, branch in SEGMENTS}
    assert curves["epoch"].max() == EPOCHS  # the epoch of each training, not the trial's running count
    assert (curves["count"] == len(SEEDS)).all()
    level2 = curves[(curves["level"] == 2) & (curves["branch"] == "reinit")]
    assert list(level2["epoch"]) == [1, 2, 3] and np.allclose(level2["mean"], [0.62, 0.72, 0.82])


def test_other_methods_keep_one_curve_per_group_over_epochs():
    rng = np.random.default_rng(0)
    made = [make_trial(c, noise=0.01, rng=rng, index=i) for i, c in enumerate(grid(methods=("dense", "edge_popup"), widths=(1,), seeds=SEEDS))]
    trials = pd.DataFrame([r for r, _ in made])
    epochs = pd.DataFrame([{"trial_id": r["trial_id"], **e} for r, h in made for e in h])
    curves = learning_curves(trials, epochs, ["method"])
    assert set(curves["label"]) == {"dense", "edge_popup"} and curves["level"].isna().all()
    assert list(curves[curves["label"] == "dense"]["epoch"]) == [1, 2, 3] and (curves["count"] == len(SEEDS)).all()
