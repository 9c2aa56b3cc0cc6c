"""Learning curves from the epochs table: a metric against epoch, mean and spread over
seeds, one line per group."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from hidden_core.analysis.plots import MARKERS, OKABE_ITO, _legend
from hidden_core.analysis.scaling import _auto_split, _labels, natural_key
from hidden_core.analysis.tables import require_columns

EPOCH_METRICS = ("test_acc", "val_acc", "train_acc", "train_loss", "lr")
# in the epochs table every column is read at that epoch (not the trial table's meaning)
CURVE_LABELS = {"test_acc": "test accuracy", "val_acc": "validation accuracy", "train_acc": "training accuracy", "train_loss": "training loss", "lr": "learning rate"}


def learning_curves(trials: pd.DataFrame, epochs: pd.DataFrame, by: Sequence[str], metric: str = "test_acc") -> pd.DataFrame:
    """Per group and epoch: mean, std and count over trials (seeds). Config fields that vary
    across the selected trials besides `by` split the groups, as in the scaling analysis."""
    by = list(by)
    require_columns(trials, [*by, "trial_id", "seed"], "curves")
    require_columns(epochs, ["trial_id", "epoch", metric], "curves")
    split = _auto_split(trials, "seed", by)  # epoch is no config field: split on every varying one
    trials = trials.assign(label=_labels(trials, by, split).to_numpy() if len(trials) else [])
    merged = epochs[["trial_id", "epoch", metric]].merge(trials[["trial_id", "label"]], on="trial_id")
    stats = merged.groupby(["label", "epoch"])[metric].agg(["mean", "std", "count"]).reset_index()
    order = {label: i for i, label in enumerate(sorted(stats["label"].unique(), key=natural_key))}
    return stats.sort_values(["label", "epoch"], key=lambda s: s.map(order) if s.name == "label" else s).reset_index(drop=True)


def plot_learning_curves(curves: pd.DataFrame, metric: str) -> Figure:
    fig = Figure(figsize=(8.5, 5), layout="constrained")
    ax = fig.add_subplot()
    percent = metric.endswith("_acc")
    scale = 100.0 if percent else 1.0
    for i, (label, group) in enumerate(curves.groupby("label", sort=False)):
        color = OKABE_ITO[i % len(OKABE_ITO)]
        std = group["std"].fillna(0.0)
        n = int(group["count"].min())
        ax.fill_between(group["epoch"], scale * (group["mean"] - std), scale * (group["mean"] + std), color=color, alpha=0.15, linewidth=0)
        ax.plot(group["epoch"], scale * group["mean"], color=color, marker=MARKERS[(i // len(OKABE_ITO)) % len(MARKERS)], markersize=3, linewidth=1.5, label=f"{label} (n={n})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(CURVE_LABELS.get(metric, metric) + (" (%)" if percent else ""))
    ax.set_title(fontsize=10, label=f"{CURVE_LABELS.get(metric, metric)} per epoch\nmean over seeds (band: +-1 std, n: seeds)")
    _legend(ax)
    ax.grid(True, alpha=0.25)
    return fig
