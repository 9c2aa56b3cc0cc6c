"""What the seeds of one grid cell found, compared: per-layer density and flip fraction,
overlap between seeds' masks against the overlap expected by chance, and whether the kept
(or flipped) weights lean toward large |w|.

- `selected` is the set a method chose in a layer: the kept weights (edge_popup,
  free_prune; supermask: sigmoid(logit) >= 0.5) or the flipped ones (sign_flip).
- Jaccard(A, B) = |A & B| / |A | B| over each pair of seeds of a cell. Chance: two
  independent uniform sets of the observed sizes a and b out of n overlap by ab/n in
  expectation, so chance Jaccard = (ab/n) / (a + b - ab/n) (the ratio of expectations; for
  layers of thousands of weights it is the expectation to within 1/n).
- abs_w_auc: the probability that a selected weight has a larger |w| at initialization than
  an unselected one (Mann-Whitney AUC; 0.5 = no preference, 1 = strictly the largest).
Seeds differ in their random weights too: an overlap above chance means the method prefers
positions (inputs, units) whatever the weights, not that it found the same weights.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from hidden_core.subnet.fileformat import SubnetFile, read_subnet_file

SELECTING_METHODS = ("edge_popup", "free_prune", "supermask", "sign_flip", "lottery_ticket")


def cell_key(f: SubnetFile) -> str:
    """The grid cell: the trial's canonical config without the seed."""
    config = f.config.canonical()
    config.pop("seed", None)
    return json.dumps(config, sort_keys=True)


def initial_weights(f: SubnetFile) -> dict[str, np.ndarray]:
    from hidden_core.methods import build_model
    from hidden_core.methods.base import original_weight
    from hidden_core.subnet.state import require_model_fits

    require_model_fits(f)  # a forged config stops before the network is built
    modules = dict(build_model(f.config).net.named_modules())
    return {name: original_weight(modules[name]).numpy() for name in f.shapes}


def selected(f: SubnetFile, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    method = f.config.method
    if method in ("edge_popup", "free_prune", "supermask", "lottery_ticket"):  # supermask: the mask it evaluates; lottery: the final ticket
        return f.layers("mask")
    if method == "sign_flip":
        return {name: signs != (weights[name] >= 0) for name, signs in f.layers("sign").items()}
    raise ValueError(f"{method} selects no weights")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def chance_jaccard(a: int, b: int, n: int) -> float:
    both = a * b / n
    union = a + b - both
    return both / union if union else float("nan")


def abs_w_auc(chosen: np.ndarray, weights: np.ndarray) -> float:
    from scipy.stats import rankdata

    magnitude = np.abs(weights).reshape(-1)
    chosen = chosen.reshape(-1)
    n1 = int(chosen.sum())
    n0 = chosen.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(magnitude)  # ties share their mean rank: AUC counts them as half
    return float((ranks[chosen].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def analyze_files(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per trial and layer, per cell and layer) tables for the selecting methods' files;
    other methods' files are skipped."""
    files = [read_subnet_file(p) for p in paths]
    files = [f for f in files if f.config.method in SELECTING_METHODS]
    per_trial = []
    chosen_by_cell: dict[str, list[tuple[SubnetFile, dict[str, np.ndarray]]]] = {}
    for f in files:
        weights = initial_weights(f)
        chosen = selected(f, weights)
        chosen_by_cell.setdefault(cell_key(f), []).append((f, chosen))
        for layer, mask in chosen.items():
            row = {"cell": cell_key(f), "trial_id": f.config.trial_id, "method": f.config.method, "seed": f.config.seed, "layer": layer,
                   "weights": mask.size, "selected": "flipped" if f.config.method == "sign_flip" else "kept",
                   "fraction": float(mask.mean()), "abs_w_auc": abs_w_auc(mask, weights[layer])}
            per_trial.append(row)
    trials = pd.DataFrame(per_trial)
    cells = []
    for key, members in chosen_by_cell.items():
        f0 = members[0][0]
        for layer in members[0][1]:
            pairs = list(itertools.combinations([m[1][layer] for m in members], 2))
            observed = [jaccard(a, b) for a, b in pairs]
            chance = [chance_jaccard(int(a.sum()), int(b.sum()), a.size) for a, b in pairs]
            rows = trials[(trials["cell"] == key) & (trials["layer"] == layer)]
            cells.append({"cell": key, "method": f0.config.method, "width": f0.config.width, "layer": layer, "seeds": len(members),
                          "selected": rows["selected"].iloc[0], "fraction_mean": rows["fraction"].mean(), "fraction_std": rows["fraction"].std(ddof=1),
                          "jaccard": float(np.mean(observed)) if observed else float("nan"),
                          "jaccard_chance": float(np.mean(chance)) if chance else float("nan"),
                          "abs_w_auc_mean": rows["abs_w_auc"].mean(), "abs_w_auc_std": rows["abs_w_auc"].std(ddof=1)})
    table = pd.DataFrame(cells)
    if not table.empty:
        table["jaccard_over_chance"] = table["jaccard"] / table["jaccard_chance"]
    return trials, table


def plot(table: pd.DataFrame, path: str | Path) -> Path:
    """Three panels per layer: fraction selected, Jaccard vs chance, |w| AUC; one line per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, (_, rows) in enumerate(table.groupby("cell", sort=False)):
        label = f"{rows['method'].iloc[0]} w={rows['width'].iloc[0]:g} ({rows['seeds'].iloc[0]} seeds)"
        x = np.arange(len(rows))
        color = f"C{i % 10}"
        axes[0].errorbar(x, rows["fraction_mean"], yerr=rows["fraction_std"], marker="o", color=color, label=label)
        axes[1].plot(x, rows["jaccard"], marker="o", color=color, label=label)
        axes[1].plot(x, rows["jaccard_chance"], linestyle="--", color=color)
        axes[2].errorbar(x, rows["abs_w_auc_mean"], yerr=rows["abs_w_auc_std"], marker="o", color=color, label=label)
    layers = list(dict.fromkeys(table["layer"]))
    if all(len(rows) == len(layers) and list(rows["layer"]) == layers for _, rows in table.groupby("cell", sort=False)):
        for ax in axes:
            ax.set_xticks(np.arange(len(layers)), layers, rotation=30, ha="right", fontsize=8)
    axes[0].set(title="fraction kept (masks) / flipped (signs)", xlabel="layer", ylabel="fraction")
    axes[1].set(title="Jaccard between seeds (dashed: chance)", xlabel="layer", ylabel="Jaccard")
    axes[2].axhline(0.5, color="gray", linewidth=0.8)
    axes[2].set(title="P(|w| selected > |w| not selected)", xlabel="layer", ylabel="AUC")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
