"""Learning curves from the epochs table: a metric against epoch, mean and spread over
seeds, one line per group."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from hidden_core.analysis.plots import (
    OKABE_ITO,
    finish_panels,
    integer_ticks,
    label_method,
    method_color,
    series_panels,
    series_style,
    set_caption,
)
from hidden_core.analysis.scaling import _auto_split, _labels, natural_key
from hidden_core.analysis.tables import require_columns
from hidden_core.records import TEST_ACC, TRAIN_ACC, TRAIN_LOSS, VAL_ACC

EPOCH_METRICS = (TEST_ACC, VAL_ACC, TRAIN_ACC, TRAIN_LOSS, "lr")
# in the epochs table every column is read at that epoch (not the trial table's meaning)
CURVE_LABELS = {TEST_ACC: "test accuracy", VAL_ACC: "validation accuracy", TRAIN_ACC: "training accuracy", TRAIN_LOSS: "training loss", "lr": "learning rate"}


def learning_curves(trials: pd.DataFrame, epochs: pd.DataFrame, by: Sequence[str], metric: str = TEST_ACC) -> pd.DataFrame:
    """Per group and epoch: mean, std and count over trials (seeds). Config fields that vary
    across the selected trials besides `by` split the groups, as in the scaling analysis.

    A lottery ticket trial trains one network per level and branch (records.LEVEL_FIELDS);
    each is its own curve ('..., level 2 reinit'), over the epochs of its own training
    (level_epoch), never one line through all of them. Columns: label, level, branch (None
    for other methods), epoch, mean, std, count."""
    by = list(by)
    require_columns(trials, [*by, "trial_id", "seed"], "curves")
    require_columns(epochs, ["trial_id", "epoch", metric], "curves")
    split = _auto_split(trials, "seed", by)  # epoch is no config field: split on every varying one
    trials = trials.assign(label=_labels(trials, by, split).to_numpy() if len(trials) else [])
    rows = epochs.assign(**{c: epochs[c] if c in epochs.columns else None for c in ("level", "branch", "level_epoch")})
    leveled = rows["level"].notna() & rows["branch"].notna()
    rows = rows.assign(epoch=rows["level_epoch"].where(leveled, rows["epoch"]), leveled=leveled)
    merged = rows[["trial_id", "epoch", "level", "branch", "leveled", metric]].merge(trials[["trial_id", "label"]], on="trial_id")
    merged["label"] = [f"{label}, level {int(level)} {branch}" if leveled else label
                       for label, level, branch, leveled in zip(merged["label"], merged["level"], merged["branch"], merged["leveled"], strict=True)]
    stats = merged.groupby(["label", "epoch"])[metric].agg(["mean", "std", "count"]).reset_index()
    parts = merged.drop_duplicates("label").set_index("label")
    stats.insert(1, "level", stats["label"].map(parts["level"]).astype("Int64"))
    stats.insert(2, "branch", stats["label"].map(parts["branch"]))
    stats["epoch"] = stats["epoch"].astype(int)
    order = {label: i for i, label in enumerate(sorted(stats["label"].unique(), key=natural_key))}
    return stats.sort_values(["label", "epoch"], key=lambda s: s.map(order) if s.name == "label" else s).reset_index(drop=True)


def plot_learning_curves(curves: pd.DataFrame, metric: str) -> Figure:
    """One line per group in its method's colour (groups of one method differ by marker and
    line style; groups without a method cycle Okabe-Ito); one panel per method when there
    are more groups than plots.MAX_SERIES."""
    labels = list(dict.fromkeys(curves["label"]))
    methods = [label_method(label) for label in labels]
    fig, axes, layout = series_panels(labels, methods)
    percent = metric.endswith("_acc")
    scale = 100.0 if percent else 1.0
    seen: dict[object, int] = {}
    for ax, (title, members) in zip(axes, layout, strict=True):
        for label in members:
            group = curves[curves["label"] == label]
            method = label_method(label)
            i = seen.get(method, 0)
            seen[method] = i + 1
            color = method_color(method) if method else OKABE_ITO[i % len(OKABE_ITO)]
            style = series_style(i) if method else series_style(i // len(OKABE_ITO))
            std = group["std"].fillna(0.0)
            n = int(group["count"].min())
            ax.fill_between(group["epoch"], scale * (group["mean"] - std), scale * (group["mean"] + std), color=color, alpha=0.12, linewidth=0)
            ax.plot(group["epoch"], scale * group["mean"], color=color, markersize=3, linewidth=1.5, label=f"{label} (n={n})", **style)
        ax.set_xlabel("epoch of each level's training" if "level" in curves and curves["level"].notna().any() else "epoch")
        integer_ticks(ax.xaxis)
        ax.grid(True, alpha=0.25)
        if title:
            ax.set_title(title, fontsize=9)
    finish_panels(fig, axes, layout, CURVE_LABELS.get(metric, metric) + (" (%)" if percent else ""),
                  f"{CURVE_LABELS.get(metric, metric)} per epoch\nmean over seeds (band: +-1 std, n: seeds)")
    set_caption(fig, f"{CURVE_LABELS.get(metric, metric).capitalize()} per epoch: the mean over seeds of each group (n in the legend), band +-1 std"
                     f"{'; one panel per method' if len(axes) > 1 else ''}.")
    return fig
