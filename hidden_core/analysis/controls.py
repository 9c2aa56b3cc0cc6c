"""Found subnetworks against their controls, per cell: is it the mask (or the signs), or just
its density?

Reads the control columns the controls pass joins into the trials table (records.FOUND and
records.CONTROLS: each trial's mean over its draws). `found` is the stored subnetwork
re-evaluated exactly as its controls are, so found and controls are compared like for like;
it is the trial's final-epoch network, not the best-validation epoch of TEST_METRIC.

Per group (method and the other config fields that vary, as the scaling analysis splits) and
x value (width by default): the mean over the cell's trials (seeds) of found and of each
control, with a Student-t interval for the mean (intervals.paired_interval: n - 1 df), and the
gap found - control, paired on the trial (each trial has its own found and controls), with its
paired Student-t interval. Both are exact for normally distributed seed-to-seed variation; the
paired interval's measured coverage on synthetic seeds is in tests/test_analysis_coverage.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hidden_core.analysis.health import unhealthy_cells
from hidden_core.analysis.intervals import paired_interval
from hidden_core.analysis.plots import OKABE_ITO, _legend, _log_x, _ticks_at
from hidden_core.analysis.scaling import _auto_split, _labels, chance_level
from hidden_core.config import ConfigError
from hidden_core.records import CONTROLS, FOUND, control_column

SERIES: tuple[str, ...] = (FOUND, *CONTROLS)
SERIES_COLORS = {FOUND: "#000000", "random": OKABE_ITO[0], "shuffled": OKABE_ITO[1], "fresh": OKABE_ITO[2], "initial": OKABE_ITO[5]}
POINT_COLUMNS = ["group", "method", "x", "series", "n", "mean", "ci_low", "ci_high", "gap", "gap_ci_low", "gap_ci_high", "values"]
# The paired Student-t interval's coverage measured by tests/test_analysis_coverage.py
# (test_gap_intervals_cover_the_true_gap_unpaired_and_paired: 2000 synthetic data sets each).
COVERAGE_NOTE = ("in the coverage study of tests/test_analysis_coverage.py (2000 synthetic data sets) the paired Student-t "
                 "interval held the true gap 95.2% of the time with 3 seeds and 94.8% with 5, for a nominal 95%")


def with_controls(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials the controls pass evaluated (their found column is set)."""
    column = control_column(FOUND)
    return trials[trials[column].notna()] if column in trials.columns else trials.iloc[0:0]


def require_controls(trials: pd.DataFrame, sweep: str) -> pd.DataFrame:
    rows = with_controls(trials)
    if rows.empty:
        raise ConfigError([f"sweep: no trial of {sweep!r} in the selection has controls; run the sweep with "
                           f"`subnet_controls: {{draws: 5}}` in its spec (controls exist for edge_popup, free_prune, supermask, sign_flip)"])
    return rows


def control_points(trials: pd.DataFrame, x: str = "width", by: Sequence[str] = ("method",), ci: float = 0.95) -> pd.DataFrame:
    """One row per (group, x, series): n trials, the mean test accuracy and its interval, and
    for each control the paired gap found - control with its interval (NaN for found)."""
    rows = with_controls(trials)
    if rows.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    by = list(by)
    split = _auto_split(rows, x, by)
    rows = rows.assign(group=_labels(rows, by, split).to_numpy())
    found_column = control_column(FOUND)
    out = []
    for (group, x_value), cell in rows.groupby(["group", x], sort=True):
        method = cell["method"].iloc[0] if cell["method"].nunique() == 1 else "mixed"
        for series in SERIES:
            column = control_column(series)
            values = cell[column].dropna().to_numpy(float)
            if not len(values):
                continue
            lo, hi = paired_interval(values, ci)
            gap = gap_lo = gap_hi = np.nan
            if series != FOUND:
                both = cell[[found_column, column]].dropna()
                differences = (both[found_column] - both[column]).to_numpy(float)
                gap = differences.mean()
                gap_lo, gap_hi = paired_interval(differences, ci)
            out.append({"group": group, "method": method, "x": float(x_value), "series": series, "n": len(values), "mean": float(values.mean()),
                        "ci_low": lo, "ci_high": hi, "gap": gap, "gap_ci_low": gap_lo, "gap_ci_high": gap_hi,
                        "values": " ".join(f"{v:.6g}" for v in values)})
    return pd.DataFrame(out, columns=POINT_COLUMNS)


def control_health(trials: pd.DataFrame, x: str = "width", by: Sequence[str] = ("method",)) -> pd.DataFrame:
    """The unhealthy cells (health.unhealthy_cells) among the cells control_points reports,
    grouped the same way: columns group, x, n_trials, n_flagged, reasons."""
    rows = with_controls(trials)
    if rows.empty:
        return unhealthy_cells(rows.assign(group=pd.Series(dtype=str)), ["group", x])
    rows = rows.assign(group=_labels(rows, list(by), _auto_split(rows, x, list(by))).to_numpy())
    return unhealthy_cells(rows, ["group", x])


def summary_table(points: pd.DataFrame, x: str) -> pd.DataFrame:
    """One row per (group, x): n and 'mean [low, high]' (%) of found and each control, and
    each gap found - control with its interval, in points (pp)."""
    def interval(mean: float, lo: float, hi: float, scale: float = 100) -> str:
        if np.isnan(lo):
            return f"{scale * mean:.1f}"
        return f"{scale * mean:.1f} [{scale * lo:.1f}, {scale * hi:.1f}]"

    rows = []
    for (group, x_value), cell in points.groupby(["group", "x"], sort=False):
        row = {"group": group, x: x_value, "n": int(cell["n"].max())}
        for _, p in cell.iterrows():
            row[p["series"]] = interval(p["mean"], p["ci_low"], p["ci_high"])
        for _, p in cell[cell["series"] != FOUND].iterrows():
            row[f"found - {p['series']}"] = interval(p["gap"], p["gap_ci_low"], p["gap_ci_high"])
        rows.append(row)
    table = pd.DataFrame(rows)
    order = ["group", x, "n", *(s for s in SERIES if s in table.columns), *(f"found - {s}" for s in SERIES if f"found - {s}" in table.columns)]
    return table[order].fillna("-")


def plot_controls(points: pd.DataFrame, x: str, ci: float = 0.95, chance: float | None = None) -> Figure:
    """One panel per group: test accuracy (%) of found and of each control against x, mean
    over trials with its interval band; chance as a dotted line."""
    groups = list(dict.fromkeys(points["group"]))
    columns = min(3, len(groups))
    rows = -(-len(groups) // columns)
    fig = Figure(figsize=(4.2 * columns + 1.6, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True)
    for ax, group in zip(axes.flat, groups, strict=False):
        cell = points[points["group"] == group]
        for series in SERIES:
            line = cell[cell["series"] == series].sort_values("x")
            if line.empty:
                continue
            color = SERIES_COLORS[series]
            lo, hi = 100 * line["ci_low"].fillna(line["mean"]), 100 * line["ci_high"].fillna(line["mean"])
            ax.fill_between(line["x"], lo, hi, color=color, alpha=0.15, linewidth=0)
            n = f"n={line['n'].min()}" + (f"-{line['n'].max()}" if line["n"].nunique() > 1 else "")
            ax.plot(line["x"], 100 * line["mean"], color=color, marker="o", markersize=3.5, linewidth=2 if series == FOUND else 1.3,
                    linestyle="-" if series == FOUND else "--", label=f"{series} ({n})")
        if chance is not None and np.isfinite(chance):
            ax.axhline(100 * chance, color="#888888", linestyle=":", linewidth=1, label="chance")
        xs = cell["x"].to_numpy(float)
        if _log_x(x, xs):
            ax.set_xscale("log")
        _ticks_at(ax, xs)
        ax.set_title(group, fontsize=9)
        ax.set_xlabel(x.replace("_", " "))
        ax.grid(True, alpha=0.25)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    legend: dict[str, object] = {}  # every panel's lines (sign_flip's initial, too), each label once
    for ax in axes.flat[:len(groups)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    _legend(axes.flat[len(groups) - 1], list(legend.values()), list(legend))
    fig.suptitle(f"found subnetwork vs controls: mean over seeds, band: {ci:.0%} Student-t interval", fontsize=10)
    return fig


def chance_of(trials: pd.DataFrame) -> float | None:
    levels = chance_level(with_controls(trials)).dropna().unique()
    return float(levels[0]) if len(levels) == 1 else None


def caption(points: pd.DataFrame, sweep: str, x: str, ci: float = 0.95) -> str:
    return (
        f"Sweep `{sweep}`: test accuracy of each trial's found subnetwork (its stored final state, re-evaluated as the controls are) "
        f"and of its controls (each the mean over the trial's draws): random = a random mask (flips) at each layer's found density "
        f"(flip fraction), shuffled = the found mask (flips) permuted within each output unit, fresh = the found mask (signs) on freshly "
        f"drawn weights, initial = sign_flip's network before any flip (docs/subnetworks.md). Per group and {x}: the mean over the "
        f"cell's trials (seeds, n) with a {ci:.0%} Student-t interval (n - 1 df); `found - control` is the paired difference per trial "
        f"with its {ci:.0%} paired Student-t interval: exact for normally distributed seed-to-seed variation; {COVERAGE_NOTE}. "
        f"One seed gives no interval."
    )
