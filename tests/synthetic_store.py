"""Generates result stores that look like real sweeps, for tests and benchmarks.

Accuracies follow a known saturating power law in width per method,
err(w) = e_inf + a * w**(-b), plus Gaussian seed noise, so fits can be checked against
the truth. Rows carry every column a real trial has (config fields from a real,
normalized TrialConfig, metrics, statistics, provenance).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from hidden_core.config import make_config
from hidden_core.store import ResultStore

# (e_inf, a, b) of test error vs width; dense saturates lowest, random features highest
TRUE_LAWS: dict[str, tuple[float, float, float]] = {
    "dense": (0.05, 0.10, 0.80),
    "edge_popup": (0.06, 0.20, 0.60),
    "sign_flip": (0.09, 0.18, 0.50),
    "free_prune": (0.10, 0.18, 0.50),
    "learn_fraction": (0.12, 0.16, 0.50),
    "random_features": (0.30, 0.15, 0.40),
    "supermask": (0.15, 0.18, 0.50),
    "bn_only": (0.25, 0.15, 0.40),
    "lottery_ticket": (0.06, 0.12, 0.70),
}
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def true_error(
    method: str, width: float | np.ndarray, depth: int = 2, keep_fraction: float = 0.5
) -> float | np.ndarray:
    e_inf, a, b = TRUE_LAWS[method]
    depth_bonus = 0.01 * (depth - 2)
    # masked methods do best near k = 0.5, as in the edge-popup paper
    k_penalty = (
        0.4 * (keep_fraction - 0.5) ** 2 if method in ("edge_popup", "learn_fraction") else 0.0
    )
    return np.clip(e_inf + a * np.power(width, -b) - depth_bonus + k_penalty, 0.0, 0.95)


def make_trial(
    config_fields: dict[str, Any],
    *,
    noise: float,
    rng: np.random.Generator,
    index: int,
    epochs: int = 3,
    status: str = "completed",
    cell_id: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One trial row + its epoch rows, as the sweep runner would write them."""
    config = make_config({"epochs": epochs, **config_fields}).normalized()
    fields = config.model_dump()
    err = true_error(config.method, config.width, config.depth or 2, config.keep_fraction)
    test_acc = float(np.clip(1 - err + rng.normal(0, noise), 0, 1))
    val_acc = float(np.clip(test_acc + rng.normal(0, noise / 2), 0, 1))
    started = START + timedelta(seconds=10 * index)
    history = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_acc": min(1.0, test_acc * (0.8 + 0.2 * e / epochs) + 0.02),
            "val_acc": val_acc * (0.85 + 0.15 * e / epochs),
            "test_acc": test_acc * (0.85 + 0.15 * e / epochs),
            "lr": 0.1 * (1 - (e - 1) / epochs),
            "seconds": 1.5,
        }
        for e in range(1, epochs + 1)
    ]
    params = int(1000 * config.width * (config.depth or 2))
    row = {
        **fields,
        "step_milestones": list(fields["step_milestones"]),
        "trial_id": config.trial_id,
        "cell_id": cell_id or _cell_id(fields),
        "status": status,
        "val_acc": val_acc,
        "test_acc": test_acc,
        "best_val_acc": val_acc,
        "best_epoch": epochs,
        "test_acc_at_best_val": test_acc,
        "train_loss": history[-1]["train_loss"],
        "train_acc": history[-1]["train_acc"],
        "epochs_run": epochs,
        "diverged_epoch": None,
        "params_total": params,
        "params_active": params // 2,
        "params_learned": params,
        "changed_fraction": 0.3,
        # bn_only switches features off; wider networks can afford to switch off more
        "disabled_features": float(np.clip(0.1 * np.log2(2 * config.width), 0, 0.9)) if config.method == "bn_only" else None,
        "density": 0.5,
        "train_seconds": 1.5 * epochs,
        "samples_per_second": 4000.0,
        "device": "cpu",
        "node": "node-0",
        "started_at": started,
        "finished_at": started + timedelta(seconds=1.5 * epochs),
        "hidden_version": "0.1.0",
        "git_commit": "0" * 40,
        "torch_version": "2.15.0",
        "ray_version": "2.60.0",
        "error": None,
    }
    return row, history


def _cell_id(fields: dict[str, Any]) -> str:
    cell = {k: v for k, v in fields.items() if k != "seed"}
    return hashlib.sha256(repr(sorted(cell.items())).encode()).hexdigest()[:16]


def grid(
    methods: Sequence[str] = ("dense", "edge_popup"),
    widths: Sequence[float] = (0.25, 0.5, 1, 2, 4, 8),
    depths: Sequence[int] = (2,),
    keep_fractions: Sequence[float] = (0.5,),
    seeds: Sequence[int] = (0, 1, 2),
    **base: Any,
) -> list[dict[str, Any]]:
    """The crossed grid as config dicts; k is only crossed for methods that read it."""
    out, seen = [], set()
    for method in methods:
        for width in widths:
            for depth in depths:
                for k in keep_fractions:
                    for seed in seeds:
                        fields = {
                            **base,
                            "method": method,
                            "width": float(width),
                            "depth": depth,
                            "keep_fraction": k,
                            "seed": seed,
                        }
                        trial_id = make_config(fields).normalized().trial_id
                        if trial_id not in seen:
                            seen.add(trial_id)
                            out.append(fields)
    return out


def write_synthetic_sweep(
    store: ResultStore,
    sweep: str,
    configs: Sequence[dict[str, Any]] | None = None,
    *,
    noise: float = 0.01,
    seed: int = 0,
    epochs: int = 3,
    one_by_one: bool = False,
) -> list[str]:
    """Write one trial per config (default: `grid()`); returns the trial_ids."""
    rng = np.random.default_rng(seed)
    trials = [
        make_trial(c, noise=noise, rng=rng, index=i, epochs=epochs)
        for i, c in enumerate(configs if configs is not None else grid())
    ]
    if one_by_one:
        for row, history in trials:
            store.write_trial(sweep, row, history)
    else:
        store.write_trials(
            sweep,
            [r for r, _ in trials],
            [{"trial_id": r["trial_id"], **e} for r, h in trials for e in h],
        )
    return [r["trial_id"] for r, _ in trials]


def bulk_trial_frame(n_rows: int, *, seed: int = 0) -> pd.DataFrame:
    """n_rows realistic trial rows built column-wise (fast enough for 100,000 rows).

    Config columns come from real normalized configs of a method x width x depth x k grid;
    seeds fill the rest. trial_ids are unique hashes of (cell, seed), not content hashes,
    because hashing 100,000 configs one by one would dominate the test's time.
    """
    rng = np.random.default_rng(seed)
    cells = [
        make_config(c).normalized()
        for c in grid(
            methods=tuple(TRUE_LAWS),
            widths=(0.25, 0.5, 1, 2, 4, 8, 16),
            depths=(1, 2, 3, 4),
            keep_fractions=(0.3, 0.5, 0.7),
            seeds=(0,),
        )
    ]
    cell_frame = pd.DataFrame([c.model_dump() for c in cells])
    cell_frame["step_milestones"] = [list(v) for v in cell_frame["step_milestones"]]
    cell_frame["cell_id"] = [c.trial_id for c in cells]
    pick = np.arange(n_rows) % len(cells)
    frame = cell_frame.iloc[pick].reset_index(drop=True)
    frame["seed"] = np.arange(n_rows) // len(cells)
    frame["trial_id"] = [
        hashlib.blake2b(f"{c}-{s}".encode(), digest_size=8).hexdigest()
        for c, s in zip(frame["cell_id"], frame["seed"], strict=True)
    ]
    err = np.array(
        [
            true_error(m, w, d, k)
            for m, w, d, k in zip(
                cell_frame["method"],
                cell_frame["width"],
                cell_frame["depth"],
                cell_frame["keep_fraction"],
                strict=True,
            )
        ]
    )[pick]
    frame["test_acc"] = np.clip(1 - err + rng.normal(0, 0.01, n_rows), 0, 1)
    frame["val_acc"] = np.clip(frame["test_acc"] + rng.normal(0, 0.005, n_rows), 0, 1)
    frame["best_val_acc"] = frame["val_acc"]
    frame["test_acc_at_best_val"] = frame["test_acc"]
    frame["epochs_run"] = 10
    frame["train_seconds"] = rng.uniform(5, 50, n_rows)
    frame["status"] = rng.choice(
        ["completed", "completed", "completed", "pruned", "failed", "diverged"], n_rows
    )
    frame["finished_at"] = START + pd.to_timedelta(np.arange(n_rows), unit="s")
    frame["device"] = "cuda:0"
    frame["node"] = [f"node-{i % 8}" for i in range(n_rows)]
    return frame


# control accuracies of the synthetic controls: found keeps the trial's test accuracy, the
# controls sit near chance (as measured on MNIST-1D, docs/subnetworks.md)
SYNTHETIC_CONTROLS: dict[str, float] = {"random": 0.10, "shuffled": 0.11, "fresh": 0.16, "initial": 0.09}


def write_synthetic_controls(store: ResultStore, sweep: str, *, draws: int = 2, noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """Control rows (what the controls pass writes) for every final trial of `sweep` whose
    method has controls: found = the trial's test_acc, each control its SYNTHETIC_CONTROLS
    level plus Gaussian noise per draw. Returns the rows written."""
    from hidden_core.records import CONTROLLED_METHODS, DRAWN_CONTROLS, FINAL_STATUSES

    rng = np.random.default_rng(seed)
    trials = store.load_trials(sweep, columns=["trial_id", "method", "status", "test_acc", "write_id"])
    rows = []
    for t in trials.itertuples():
        if t.method not in CONTROLLED_METHODS or t.status not in FINAL_STATUSES:
            continue
        names = [*DRAWN_CONTROLS, *(["initial"] if CONTROLLED_METHODS[t.method] == "sign" else [])]
        trial_rows = [{"control": "found", "draw": 0, "test_acc": float(t.test_acc)}]
        trial_rows += [{"control": c, "draw": d, "test_acc": float(SYNTHETIC_CONTROLS[c] + rng.normal(0, noise))}
                       for c in names for d in (range(draws) if c in DRAWN_CONTROLS else (0,))]
        trial_rows = [{**r, "trial_id": t.trial_id, "trial_write_id": t.write_id, "val_acc": r["test_acc"], "device": "cpu"} for r in trial_rows]
        store.write_controls(sweep, trial_rows)
        rows += trial_rows
    return pd.DataFrame(rows)
