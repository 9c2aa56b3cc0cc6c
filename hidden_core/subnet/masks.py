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

A cell is told apart by every config field that varies between the cells analyzed (each its
own column, e.g. depth) and by `cell_id` (spec.cell_id: the hash of its config without the
seed, the sweep's cell_id when nothing was searched); rows are sorted by method (catalog
order), those fields, then the network's layer order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hidden_core.catalog import CATALOG
from hidden_core.config import METHOD_FIELDS, METHOD_SPECIFIC_FIELDS, METHODS
from hidden_core.spec import cell_id
from hidden_core.subnet.fileformat import SubnetFile, read_subnet_file

# methods whose state selects weights of a layer (their registry lines' `selects`): the kept
# ones of a mask (supermask: the mask it evaluates; lottery: the final ticket) or the flipped signs
SELECTING_METHODS = tuple(m for m in METHODS if CATALOG[m].selects)


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
    selects = CATALOG[f.config.method].selects
    if selects == "kept":
        return f.layers("mask")
    if selects == "flipped":
        return {name: signs != (weights[name] >= 0) for name, signs in f.layers("sign").items()}
    raise ValueError(f"{f.config.method} selects no weights")


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


def varying_fields(files: Sequence[SubnetFile]) -> list[str]:
    """Config fields (not the seed) whose value differs between the files' cells, in
    TrialConfig's field order: the columns that tell the cells apart."""
    configs = [f.config.normalized().model_dump() for f in files]
    if not configs:
        return []
    return [name for name in configs[0] if name != "seed" and len({json.dumps(c[name], sort_keys=True, default=str) for c in configs}) > 1]


def _identity(f: SubnetFile, fields: Sequence[str]) -> dict[str, object]:
    """method, the cell fields (None where the method does not read the field: a default
    it never used is no part of its identity) and cell_id."""
    config = f.config.normalized().model_dump()
    unread = METHOD_SPECIFIC_FIELDS - METHOD_FIELDS[f.config.method]
    return {"method": f.config.method, **{name: None if name in unread else _plain(config[name]) for name in fields}, "cell_id": cell_id(f.config)}


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def cell_label(row: pd.Series | dict, fields: Sequence[str]) -> str:
    """'edge_popup, depth=2, width=0.5': the method and the fields that tell cells apart."""
    parts = [str(row["method"])] + [f"{name}={_fmt(row[name])}" for name in fields if name != "method" and not pd.isna(row[name])]
    return ", ".join(parts)


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def analyze_files(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per trial and layer, per cell and layer) tables for the selecting methods' files;
    other methods' files are skipped. Both carry cell_id and every config field that varies
    between cells; rows are sorted (method in catalog order, those fields, layer order)."""
    files = [read_subnet_file(p) for p in paths]
    files = [f for f in files if f.config.method in SELECTING_METHODS]
    fields = [name for name in varying_fields(files) if name != "method"]
    per_trial = []
    chosen_by_cell: dict[str, list[tuple[SubnetFile, dict[str, np.ndarray]]]] = {}
    for f in files:
        weights = initial_weights(f)
        chosen = selected(f, weights)
        chosen_by_cell.setdefault(cell_key(f), []).append((f, chosen))
        identity = _identity(f, fields)
        for index, (layer, mask) in enumerate(chosen.items()):
            row = {"cell": cell_key(f), **identity, "trial_id": f.config.trial_id, "seed": f.config.seed, "layer_index": index, "layer": layer,
                   "weights": mask.size, "selected": CATALOG[f.config.method].selects,
                   "fraction": float(mask.mean()), "abs_w_auc": abs_w_auc(mask, weights[layer])}
            per_trial.append(row)
    trials = pd.DataFrame(per_trial)
    cells = []
    for key, members in chosen_by_cell.items():
        f0 = members[0][0]
        identity = _identity(f0, fields if "width" in fields else [*fields, "width"])
        for index, layer in enumerate(members[0][1]):
            pairs = list(itertools.combinations([m[1][layer] for m in members], 2))
            observed = [jaccard(a, b) for a, b in pairs]
            chance = [chance_jaccard(int(a.sum()), int(b.sum()), a.size) for a, b in pairs]
            rows = trials[(trials["cell"] == key) & (trials["layer"] == layer)]
            cells.append({"cell": key, **identity, "layer_index": index, "layer": layer, "seeds": len(members),
                          "selected": rows["selected"].iloc[0], "fraction_mean": rows["fraction"].mean(), "fraction_std": rows["fraction"].std(ddof=1),
                          "jaccard": float(np.mean(observed)) if observed else float("nan"),
                          "jaccard_chance": float(np.mean(chance)) if chance else float("nan"),
                          "abs_w_auc_mean": rows["abs_w_auc"].mean(), "abs_w_auc_std": rows["abs_w_auc"].std(ddof=1)})
    table = pd.DataFrame(cells)
    if not table.empty:
        table["jaccard_over_chance"] = table["jaccard"] / table["jaccard_chance"]
        table = _sorted(table, [n for n in fields if n != "width"] + ["width"])
        trials = _sorted(trials, fields, extra=["seed"])
    return trials, table


def _sorted(frame: pd.DataFrame, fields: Sequence[str], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Method in catalog order, then the cell fields, cell_id, (seed), layer order."""
    order = frame.assign(_method=frame["method"].map(lambda m: METHODS.index(m) if m in METHODS else len(METHODS)))
    keys = ["_method", *(f for f in fields if f in frame.columns and f != "method"), "cell_id", *extra, "layer_index"]
    sortable = order.assign(**{f: order[f].astype(str) for f in keys if f in order.columns and order[f].map(type).eq(list).any()})
    return frame.loc[sortable.sort_values(keys, kind="stable").index].reset_index(drop=True)


def cell_columns(table: pd.DataFrame) -> list[str]:
    """The columns of `table` that tell its cells apart (besides method and cell_id)."""
    fixed = {"cell", "cell_id", "method", "layer_index", "layer", "seeds", "selected", "fraction_mean", "fraction_std", "jaccard", "jaccard_chance",
             "abs_w_auc_mean", "abs_w_auc_std", "jaccard_over_chance", "trial_id", "seed", "weights", "fraction", "abs_w_auc"}
    return [c for c in table.columns if c not in fixed]


def plot(table: pd.DataFrame, path: str | Path) -> Path:
    """One row of three panels per method (fraction selected, Jaccard vs chance, |w| AUC),
    one line per cell in the method's colour, cells told apart by marker and line style,
    error bars dodged; beside each row a legend naming each of its cells once."""
    from hidden_core.analysis.plots import dodge, facet_legends, method_color, series_style

    fields = [c for c in cell_columns(table) if table.groupby("method")[c].agg(lambda s: s.astype(str).nunique()).max() > 1]
    methods = list(dict.fromkeys(table["method"]))
    layers: list[str] = []  # every layer once, in network order (a deeper cell adds its own)
    for _, rows in table.groupby("cell", sort=False):
        previous = -1
        for layer in rows["layer"]:
            if layer not in layers:
                layers.insert(previous + 1, layer)
            previous = layers.index(layer)
    position = {layer: i for i, layer in enumerate(layers)}
    fig = Figure(figsize=(14, 3.2 * len(methods) + 0.8), layout="constrained")
    axes = fig.subplots(len(methods), 3, squeeze=False)
    for row_axes, method in zip(axes, methods, strict=True):
        cells = table[table["method"] == method]
        keys = list(dict.fromkeys(cells["cell"]))
        for i, key in enumerate(keys):
            rows = cells[cells["cell"] == key]
            label = f"{cell_label(rows.iloc[0], fields)} ({rows['seeds'].iloc[0]} seeds)"
            style = {"color": method_color(method), **series_style(i), "markersize": 4}
            x = dodge(rows["layer"].map(position).to_numpy(float), i, len(keys), log=False, spacing=1.0)
            row_axes[0].errorbar(x, rows["fraction_mean"], yerr=rows["fraction_std"].fillna(0.0), capsize=2, label=label, **style)
            row_axes[1].plot(x, rows["jaccard"], label=label, **style)
            row_axes[1].plot(x, rows["jaccard_chance"], color=style["color"], linestyle=(0, (1, 2)), linewidth=1.0, label="_chance")
            row_axes[2].errorbar(x, rows["abs_w_auc_mean"], yerr=rows["abs_w_auc_std"].fillna(0.0), capsize=2, label=label, **style)
        row_axes[2].axhline(0.5, color="gray", linewidth=0.8)
        for ax, what in zip(row_axes, ("fraction kept (masks) / flipped (signs)", "Jaccard between seeds (dotted: chance)", "P(|w| selected > |w| not selected)"), strict=True):
            ax.set_title(f"{method}: {what}", fontsize=9)
            ax.set_xticks(np.arange(len(layers)), layers, rotation=30, ha="right", fontsize=8)
            ax.set_xlim(-0.5, len(layers) - 0.5)
            ax.grid(True, alpha=0.25)
        row_axes[0].set_ylabel("fraction")
        row_axes[1].set_ylabel("Jaccard")
        row_axes[2].set_ylabel("AUC")
    for ax in axes[-1]:
        ax.set_xlabel("layer")
    facet_legends(axes[:, 2], methods)  # beside each method's row, its cells without the method in front
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
