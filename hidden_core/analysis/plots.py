"""Figures of a scaling analysis. Built on matplotlib.figure.Figure directly (never pyplot),
so drawing neither needs a display nor changes the backend of a notebook that imports us.
Every function returns the Figure; `save_figure` writes PNG and SVG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from hidden_core.analysis.metrics import TEST_METRIC, metric_label
from hidden_core.analysis.scaling import (
    DENSE,
    ScalingAnalysis,
    natural_key,
    select_points,
    usable_rows,
)
from hidden_core.config import METHOD_FIELDS, METHODS

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
NEUTRAL = "#999999"
METHOD_COLORS: dict[str, str] = {DENSE: "#000000", "random_features": NEUTRAL}
METHOD_COLORS.update(zip([m for m in METHODS if m not in METHOD_COLORS], OKABE_ITO, strict=False))
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
AXIS_LABELS = {
    "width": "width multiplier (x base units per hidden layer)",
    "depth": "depth (hidden / conv layers)",
    "keep_fraction": "keep fraction k (fraction of weights kept or learned)",
    "params_active": "active parameters (weights in the forward pass)",
    "params_learned": "learned parameters",
    "params_total": "parameters",
    "changed_fraction": "fraction of connections changed from initialization",
    "disabled_features": "fraction of BN features disabled (|gamma| < 0.01)",
}
LEGEND_BESIDE = 6  # more groups than this: the legend goes beside the axes, in columns if needed


def _axis_label(x: str) -> str:
    return AXIS_LABELS.get(x, x.replace("_", " "))


def _metric_label(metric: str) -> str:
    return metric_label(metric) + " (%)"


def _legend(ax, handles=None, labels=None) -> None:
    """Always off the data: beside the axes (one column per 18 entries)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    columns = max(1, math.ceil(len(handles) / 18))
    ax.legend(handles, labels, fontsize=7 if len(handles) > LEGEND_BESIDE else 8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, ncols=columns, frameon=False)


def _group_sizes(points: pd.DataFrame, x: str) -> dict[str, str]:
    """'n=3' or 'n=2-3' seeds per x, per group."""
    out = {}
    for label, group in points.groupby("label", sort=False):
        counts = group.groupby(x)["seed"].nunique()
        low, high = int(counts.min()), int(counts.max())
        out[label] = f"n={low}" if low == high else f"n={low}-{high}"
    return out


def _styles(labels: Sequence[str], methods: Sequence[str]) -> dict[str, dict]:
    """Colour by method; groups of the same method differ in line style and marker."""
    seen: dict[str, int] = {}
    out = {}
    for label, method in zip(labels, methods, strict=True):
        i = seen.get(method, 0)
        seen[method] = i + 1
        color = METHOD_COLORS.get(method, OKABE_ITO[len(seen) % len(OKABE_ITO)])
        out[label] = {"color": color, "linestyle": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)]}
    return out


def _ticks_at(ax, values: np.ndarray) -> None:
    """Ticks at the measured sizes, written plainly (0.25, 1, 4, not 2.5 x 10^-1)."""
    measured = np.unique(values[np.isfinite(values)])
    if 0 < len(measured) <= 12:
        ax.set_xticks(measured, [f"{v:g}" for v in measured])
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _log_x(x: str, values: np.ndarray) -> bool:
    values = values[values > 0]
    return x == "width" or (len(values) > 0 and values.max() / values.min() >= 8)


def _group_methods(analysis: ScalingAnalysis) -> list[str]:
    fits = analysis.fits
    return list(fits["method"]) if "method" in fits.columns else ["?"] * len(fits)


def plot_accuracy_vs_x(analysis: ScalingAnalysis) -> Figure:
    """Seeds as dots, their mean and +-1 std band, and the fitted law drawn on top."""
    x, metric = analysis.x, analysis.metric
    fig = Figure(figsize=(8.5, 5), layout="constrained")
    ax = fig.add_subplot()
    styles = _styles(analysis.labels, _group_methods(analysis))
    sizes = _group_sizes(analysis.points, x)
    log_x = _log_x(x, analysis.points[x].to_numpy(float))
    any_fit = False
    for label, group in analysis.points.groupby("label", sort=False):
        style = styles[label]
        stats = group.groupby(x)[metric].agg(["mean", "std"]).fillna({"std": 0.0})
        xs = stats.index.to_numpy(float)
        ax.scatter(group[x], 100 * group[metric], s=12, alpha=0.35, color=style["color"], marker=style["marker"], linewidths=0, label=f"_seeds {label}", zorder=2)
        ax.fill_between(xs, 100 * (stats["mean"] - stats["std"]), 100 * (stats["mean"] + stats["std"]), color=style["color"], alpha=0.12, linewidth=0, label=f"_spread {label}", zorder=1)
        # means solid (groups of one method differ by marker), so only fits are dashed
        ax.plot(xs, 100 * stats["mean"], color=style["color"], linestyle="-", marker=style["marker"], markersize=4, linewidth=1.0, alpha=0.8, label=f"{label} ({sizes[label]})", zorder=3)
        fit = analysis.fit_results[label]
        if fit.ok:
            any_fit = True
            grid = np.geomspace(fit.x_min, fit.x_max, 100) if log_x else np.linspace(fit.x_min, fit.x_max, 100)
            # on top of the means, in the group's colour with a white edge so it stays visible
            ax.plot(grid, 100 * (1 - fit.predict(grid)), color="white", linewidth=3.0, alpha=0.8, label=f"_halo {label}", zorder=4)
            ax.plot(grid, 100 * (1 - fit.predict(grid)), color=style["color"], linestyle=(0, (4, 2)), linewidth=1.6, label=f"_fit {label}", zorder=5)
    _reference_line(ax, analysis)
    if log_x:
        ax.set_xscale("log")
    _ticks_at(ax, analysis.points[x].to_numpy(float))
    ax.set_xlabel(_axis_label(x) + (", log scale" if log_x else ""))
    ax.set_ylabel(_metric_label(metric))
    what = "dashed: fitted err = e_inf + a * x^-b" if any_fit else "no law fitted"
    ax.set_title(fontsize=10, label=f"{metric_label(metric)} vs {x}\nmean over seeds (band: +-1 std, n: seeds per point); {what}")
    handles, labels = ax.get_legend_handles_labels()
    if any_fit:
        handles.append(Line2D([], [], color="0.3", linestyle=(0, (4, 2)), linewidth=1.6))
        labels.append("fitted law")
    _legend(ax, handles, labels)
    ax.grid(True, which="both", alpha=0.25)
    return fig


def _reference_line(ax, analysis: ScalingAnalysis) -> None:
    fits = analysis.fits
    if analysis.reference_x is None or "dense_acc_at_reference" not in fits.columns:
        return
    values = fits["dense_acc_at_reference"].dropna().unique()
    if len(values) == 1:  # one dense reference for all groups: draw it
        ax.axhline(100 * values[0], color="0.4", linestyle=":", linewidth=1.0, label=f"dense at {analysis.x} {analysis.reference_x:g}")


def plot_gap_vs_x(analysis: ScalingAnalysis) -> Figure:
    """Accuracy minus dense accuracy at the same x, in percentage points, with bootstrap CIs."""
    x = analysis.x
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot()
    styles = _styles(analysis.labels, _group_methods(analysis))
    gaps = analysis.gaps
    for label, group in gaps.groupby("label", sort=False):
        style = styles[label]
        yerr = 100 * np.abs(np.vstack([group["gap"] - group["gap_lo"], group["gap_hi"] - group["gap"]]))
        n = int(group["n"].min())
        ax.errorbar(group[x], 100 * group["gap"], yerr=yerr, color=style["color"], linestyle=style["linestyle"], marker=style["marker"], markersize=4, capsize=3, linewidth=1.4, label=f"{label} (n={n})")
    ax.axhline(0.0, color="0.2", linewidth=0.8, label="_zero")
    if len(gaps) and _log_x(x, gaps[x].to_numpy(float)):
        ax.set_xscale("log")
    _ticks_at(ax, gaps[x].to_numpy(float))
    ax.set_xlabel(_axis_label(x) + (", log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(f"gap to dense ({_metric_label(analysis.metric)[:-4]}, percentage points)")
    ax.set_title(fontsize=10, label=f"gap to dense-trained at the same {x}\n(error bars: {int(100 * analysis.ci)}% Welch t interval over seeds)")
    _legend(ax)
    ax.grid(True, which="both", alpha=0.25)
    return fig


def model_name(model: str, depth: object) -> str:
    if pd.isna(depth):
        return model
    return {"convnet": f"Conv{int(depth)}", "resnet": f"ResNet-{int(depth)}", "mlp": f"MLP-{int(depth)}"}.get(model, f"{model}-{depth}")


def plot_accuracy_vs_keep_fraction(trials: pd.DataFrame, *, metric: str = TEST_METRIC, width: float | None = None) -> Figure | None:
    """Edge-popup's main figure: accuracy vs k, one line per model (depth), weight
    distribution and method that reads k (mean +- std over seeds); dense of the same model
    as a dashed horizontal line. None when k does not vary. With several widths, one width
    is shown (1.0 if measured, else the largest)."""
    k_methods = [m for m, fields in METHOD_FIELDS.items() if "keep_fraction" in fields]
    rows, _ = usable_rows(trials, "keep_fraction", metric)
    masked = rows[rows["method"].isin(k_methods)]
    if masked.empty or masked["keep_fraction"].nunique() < 2:
        return None
    widths = masked["width"].to_numpy(float)
    width = width if width is not None else (1.0 if np.any(np.isclose(widths, 1.0)) else float(widths.max()))
    at_width = rows[np.isclose(rows["width"].to_numpy(float), width)].assign(model_name=lambda f: [model_name(m, d) for m, d in zip(f["model"], f["depth"], strict=True)])
    by = ["model_name"] + [c for c in ("weight_dist", "method") if c in at_width.columns and at_width.loc[at_width["method"].isin(k_methods), c].nunique() > 1]
    points, _ = select_points(at_width[at_width["method"].isin(k_methods)], "keep_fraction", by, metric)
    fig = Figure(figsize=(8.5, 5), layout="constrained")
    ax = fig.add_subplot()
    dense = at_width[at_width["method"] == DENSE]
    models = sorted(points["model_name"].unique(), key=natural_key)
    sizes = _group_sizes(points, "keep_fraction")
    for i, (label, group) in enumerate(points.groupby("label", sort=False)):
        model = group["model_name"].iloc[0]
        color = OKABE_ITO[models.index(model) % len(OKABE_ITO)] if len(models) > 1 else OKABE_ITO[i % len(OKABE_ITO)]
        style = i if len(models) == 1 else sorted(points.loc[points["model_name"] == model, "label"].unique(), key=natural_key).index(label)
        stats = group.groupby("keep_fraction")[metric].agg(["mean", "std"]).fillna({"std": 0.0})
        ax.errorbar(stats.index, 100 * stats["mean"], yerr=100 * stats["std"], color=color, linestyle=LINESTYLES[style % len(LINESTYLES)], marker=MARKERS[style % len(MARKERS)], markersize=4, capsize=3, linewidth=1.6, label=f"{label} ({sizes[label]})")
    for i, model in enumerate(models):
        own_dense = dense[dense["model_name"] == model][metric]
        if len(own_dense):
            color = OKABE_ITO[i % len(OKABE_ITO)] if len(models) > 1 else "#000000"
            ax.axhline(100 * own_dense.mean(), color=color, linestyle="--", linewidth=1.0, label=f"{model} dense (n={len(own_dense)})")
    ax.set_xlabel(_axis_label("keep_fraction"))
    ax.set_ylabel(_metric_label(metric))
    ax.set_title(fontsize=10, label=f"{metric_label(metric)} vs keep fraction at width {width:g}\nbars: +-1 std over seeds; dashed: dense-trained")
    _legend(ax)
    ax.grid(True, alpha=0.25)
    return fig


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
