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
from hidden_core.analysis.plots import (
    _axis_label,
    _log_x,
    _ticks_at,
    figure_legend,
    method_color,
    panels,
    set_caption,
)
from hidden_core.analysis.scaling import _auto_split, _labels, chance_level
from hidden_core.errors import ConfigError
from hidden_core.records import CONTROLS, FOUND, control_column

SERIES: tuple[str, ...] = (FOUND, *CONTROLS)
# found is drawn in its method's colour (the colour that method has in every figure); the
# controls, which are no method, in grey, told apart by line style and marker
CONTROL_COLOR = "#555555"
# (line style, marker, the words a caption uses for it); plain dotted is chance's
SERIES_STYLES = {FOUND: ("-", "o", "solid"), "random": ("--", "v", "dashed"), "shuffled": ("-.", "s", "dash-dot"),
                 "fresh": ((0, (1, 1)), "D", "densely dotted"), "initial": ((0, (6, 2, 1, 2, 1, 2)), "^", "dash-dot-dot")}
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
    """One panel per group: test accuracy (%) of found (in the method's colour) and of each
    control (grey) against x, mean over trials with its interval band; chance dotted."""
    groups = list(dict.fromkeys(points["group"]))
    fig, axes = panels(len(groups))
    log_x = _log_x(x, points["x"].to_numpy(float))
    for ax, group in zip(axes, groups, strict=True):
        cell = points[points["group"] == group]
        for series in SERIES:
            line = cell[cell["series"] == series].sort_values("x")
            if line.empty:
                continue
            color = method_color(line["method"].iloc[0]) if series == FOUND else CONTROL_COLOR
            linestyle, marker, _ = SERIES_STYLES[series]
            lo, hi = 100 * line["ci_low"].fillna(line["mean"]), 100 * line["ci_high"].fillna(line["mean"])
            ax.fill_between(line["x"], lo, hi, color=color, alpha=0.15, linewidth=0)
            n = f"n={line['n'].min()}" + (f"-{line['n'].max()}" if line["n"].nunique() > 1 else "")
            name = f"{group}: found" if series == FOUND else series  # found differs in colour per panel: one entry each
            ax.plot(line["x"], 100 * line["mean"], color=color, marker=marker, markersize=3.5, linewidth=2 if series == FOUND else 1.3,
                    linestyle=linestyle, label=f"{name} ({n})")
        if chance is not None and np.isfinite(chance):
            ax.axhline(100 * chance, color="#888888", linestyle=":", linewidth=1, label="chance")
        if log_x:
            ax.set_xscale("log")
        _ticks_at(ax, cell["x"].to_numpy(float))
        ax.set_title(group, fontsize=9)
        ax.set_xlabel(_axis_label(x, log_x))
        ax.grid(True, alpha=0.25)
    for ax in (a for a in axes if a.get_subplotspec().is_first_col()):
        ax.set_ylabel("test accuracy (%)")
    figure_legend(fig, axes)  # every panel's lines (sign_flip's initial, too), each label once
    fig.suptitle(f"found subnetwork vs controls: mean over seeds, band: {ci:.0%} Student-t interval", fontsize=10, x=0.01, ha="left")  # left: the legend may fill the right
    drawn = [s for s in SERIES if s in set(points["series"])]
    set_caption(fig, caption(points, "", x, ci, short=True) + (" dotted: chance (1 / classes), grey." if chance is not None and np.isfinite(chance) else "")
                + f" Drawn: {', '.join(drawn)}.")
    return fig


def chance_of(trials: pd.DataFrame) -> float | None:
    levels = chance_level(with_controls(trials)).dropna().unique()
    return float(levels[0]) if len(levels) == 1 else None


# what each series is, for the captions: only the series drawn are described
SERIES_TEXT = {
    FOUND: "found = the trial's stored subnetwork re-evaluated as the controls are, in its method's colour",
    "random": "random = a random mask (flips) at each layer's found density (flip fraction)",
    "shuffled": "shuffled = the found mask (flips) permuted within each output unit",
    "fresh": "fresh = the found mask (signs) on freshly drawn weights",
    "initial": "initial = sign_flip's network before any flip",
}


def caption(points: pd.DataFrame, sweep: str, x: str, ci: float = 0.95, *, short: bool = False) -> str:
    """Describes the series in `points` (what the figure draws) and nothing else."""
    drawn = [s for s in SERIES if s in set(points["series"])]
    controls = [s for s in drawn if s != FOUND]
    what = "; ".join(f"{SERIES_TEXT[s]} ({SERIES_STYLES[s][2]}{'' if s == FOUND else ', grey'})" for s in drawn)
    text = (f"Test accuracy of each trial's found subnetwork and of its controls (each the mean over the trial's draws; docs/subnetworks.md): {what}. "
            f"Per group and {x}: the mean over the cell's trials (seeds, n) with a {ci:.0%} Student-t interval (n - 1 df).")
    if short:
        return text
    gaps = (f" `found - control` ({', '.join(controls)}) is the paired difference per trial with its {ci:.0%} paired Student-t interval: exact for "
            f"normally distributed seed-to-seed variation; {COVERAGE_NOTE}." if controls else "")
    return f"Sweep `{sweep}`: " + text + gaps + " One seed gives no interval."
