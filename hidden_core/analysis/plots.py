"""Figures of a scaling analysis, and the house style every figure of the analysis shares.
Built on matplotlib.figure.Figure directly (never pyplot), so drawing neither needs a display
nor changes the backend of a notebook that imports us. Every function returns the Figure;
`save_figure` writes PNG and SVG.

House style (tests/test_figures.py checks it on every figure the analysis can write):
- one colour per method, the same in every figure: its position in the method catalog
  (config.METHODS, the registry's order), so dense is always black;
- series of one method differ by marker and line style; error bars of different series at
  one x are dodged apart; more series than MAX_SERIES facet into one panel per method;
- captions are generated from what was drawn (`figure_caption`), never written beside it;
- a log axis says so in its label; epoch axes have integer ticks; tick labels are thinned so
  that they never collide; the legend sits outside the data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from hidden_core.analysis.metrics import TEST_METRIC, metric_label
from hidden_core.analysis.scaling import (
    DENSE,
    ScalingAnalysis,
    natural_key,
    select_points,
    usable_rows,
)
from hidden_core.config import METHOD_FIELDS, METHODS
from hidden_core.records import (
    CHANGED_FRACTION,
    DISABLED_FEATURES,
    PARAMS_ACTIVE,
    PARAMS_LEARNED,
    PARAMS_TOTAL,
)

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
NEUTRAL = "#999999"
# The i-th colour is the i-th method of the catalog (dense first: black; new methods are added
# last, so a method keeps its colour). Okabe-Ito without its yellow (unreadable on white),
# grey for random_features (the baseline), then Paul Tol's muted scheme (also readable with
# colour-vision deficiencies); a method beyond these gets an evenly spaced hue (_extra_color).
METHOD_PALETTE = ("#000000", "#E69F00", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#56B4E9", NEUTRAL, "#882255",
                  "#332288", "#117733", "#AA4499", "#999933", "#44AA99", "#CC6677", "#DDCC77")
UNKNOWN_COLOR = "#666666"  # a group that mixes methods
LINESTYLES = ("-", "--", "-.", ":")
DENSE_LINESTYLES = (("--", "dashed"), ("-.", "dash-dot"), (":", "dotted"))  # with the words captions use for them
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
MAX_SERIES = 8  # more series than this in one figure: one panel per method
AXIS_LABELS = {
    "width": "width multiplier (x base units per hidden layer)",
    "depth": "depth (hidden / conv layers)",
    "keep_fraction": "keep fraction k (fraction of weights kept or learned)",
    PARAMS_ACTIVE: "active parameters (weights in the forward pass)",
    PARAMS_LEARNED: "learned parameters",
    PARAMS_TOTAL: "parameters",
    CHANGED_FRACTION: "fraction of connections changed from initialization",
    DISABLED_FEATURES: "fraction of BN features disabled (|gamma| < 0.01)",
}
LEGEND_BESIDE = 6  # more entries than this: a smaller legend font


def method_color(method: object) -> str:
    """The method's colour in every figure: its position in the method catalog."""
    if method not in METHODS:
        return UNKNOWN_COLOR
    i = METHODS.index(method)
    return METHOD_PALETTE[i] if i < len(METHOD_PALETTE) else _extra_color(i - len(METHOD_PALETTE))


def _extra_color(i: int) -> str:
    """A colour for a method beyond the palette: hues 0.38 of a turn apart (the golden
    angle's share), at a saturation and value readable on white."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((0.07 + 0.382 * i) % 1.0, 0.75, 0.7)
    return f"#{round(255 * r):02X}{round(255 * g):02X}{round(255 * b):02X}"


def series_style(i: int) -> dict:
    """The i-th series of one colour: marker first, then line style, so 28 differ."""
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[(i // len(MARKERS)) % len(LINESTYLES)]}


def label_method(label: str) -> str | None:
    """The method a group label starts with ('edge_popup, depth=2' -> edge_popup)."""
    head = str(label).split(",")[0].split(" (")[0].strip()
    return head if head in METHODS else None


def _axis_label(x: str, log: bool = False) -> str:
    return AXIS_LABELS.get(x, x.replace("_", " ")) + (" (log scale)" if log else "")


def _metric_label(metric: str) -> str:
    return metric_label(metric) + " (%)"


def _legend(ax, handles=None, labels=None) -> None:
    """Always off the data: beside the axes (one column per 18 entries), each entry once."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    unique: dict[str, object] = {}
    for handle, label in zip(handles, labels, strict=True):
        unique.setdefault(label, handle)
    if not unique:
        return
    columns = max(1, math.ceil(len(unique) / 18))
    ax.legend(list(unique.values()), list(unique), fontsize=7 if len(unique) > LEGEND_BESIDE else 8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, ncols=columns, frameon=False)


def figure_legend(fig: Figure, axes: Sequence) -> None:
    """One legend for every panel, right of them all, each entry once (panels share styles)."""
    unique: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            unique.setdefault(label, handle)
    if unique:
        columns = max(1, math.ceil(len(unique) / 24))
        fig.legend(list(unique.values()), list(unique), loc="outside right upper", fontsize=7 if len(unique) > LEGEND_BESIDE else 8, ncols=columns, frameon=False)


def facet_legends(axes: Sequence, titles: Sequence[str | None], extra: Sequence[tuple[object, str]] = ()) -> None:
    """A legend beside each panel of a faceted figure, naming its series without the panel's
    method (its title) in front: 'width=2, depth=1 (n=3)' under 'edge_popup'."""
    for ax, title in zip(axes, titles, strict=True):
        handles, labels = ax.get_legend_handles_labels()
        prefix = f"{title}, "
        labels = [label[len(prefix):] if title and label.startswith(prefix) else label for label in labels]
        _legend(ax, [*handles, *(h for h, _ in extra)], [*labels, *(lab for _, lab in extra)])


def facet_panels(n: int) -> tuple[Figure, list]:
    """Panels for one method each, two per row, each with its legend beside it."""
    return panels(n, columns=2, width=6.6, legend_width=0.0)


def panels(n: int, *, width: float = 4.2, height: float = 3.4, sharey: bool = True, legend_width: float = 2.6, columns: int = 3) -> tuple[Figure, list]:
    """A figure of n panels, at most `columns` per row, room on the right for one legend."""
    columns = min(columns, max(1, n))
    rows = -(-max(n, 1) // columns)
    fig = Figure(figsize=(width * columns + legend_width, height * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=sharey)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def facets(labels: Sequence[str], methods: Sequence[object]) -> list[tuple[str | None, list[str]]]:
    """[(panel title, its labels)]: one panel when few series, else one per method."""
    if len(labels) <= MAX_SERIES or len(set(methods)) < 2:
        return [(None, list(labels))]
    out: dict[object, list[str]] = {}
    for label, method in zip(labels, methods, strict=True):
        out.setdefault(method, []).append(label)
    return [(str(method), members) for method, members in out.items()]


def dodge(xs: np.ndarray, i: int, n: int, *, log: bool, spacing: float | None) -> np.ndarray:
    """x of series i of n, moved off the others' so their error bars never overlap: at most
    a third of the smallest gap between measured x (in log10 on a log axis)."""
    xs = np.asarray(xs, float)
    if n < 2:
        return xs
    step = (spacing if spacing and spacing > 0 else (0.1 if log else 0.1 * max(1e-12, float(np.nanmax(np.abs(xs)) or 1.0)))) / (3 * (n - 1))
    offset = (i - (n - 1) / 2) * step
    return xs * 10**offset if log else xs + offset


def min_spacing(values: np.ndarray, *, log: bool) -> float | None:
    values = np.unique(np.asarray(values, float)[np.isfinite(values)])
    if log:
        values = np.log10(values[values > 0])
    return float(np.diff(values).min()) if len(values) > 1 else None




def series_panels(labels: Sequence[str], methods: Sequence[object]) -> tuple[Figure, list, list]:
    """(figure, axes, layout) for series `labels` of `methods`: one panel, or one per method
    when there are more series than MAX_SERIES (facets)."""
    layout = facets(labels, methods)
    if len(layout) == 1:
        fig = Figure(figsize=(8.5, 5), layout="constrained")
        return fig, [fig.add_subplot()], layout
    fig, axes = facet_panels(len(layout))
    return fig, list(axes), layout

def finish_panels(fig: Figure, axes: Sequence, layout: Sequence, ylabel: str, heading: str,
                  extra: Sequence[tuple[object, str]] = ()) -> None:
    """The y-label on the first column, the heading and the legends (one panel: its title and
    legend; facets: the figure's title and a legend per panel), `extra` (handle, label) pairs
    added to each legend: one finish for every faceted figure."""
    for ax in (a for a in axes if a.get_subplotspec().is_first_col()):
        ax.set_ylabel(ylabel)
    if len(axes) == 1:
        axes[0].set_title(fontsize=10, label=heading)
        handles, labels = axes[0].get_legend_handles_labels()
        _legend(axes[0], [*handles, *(h for h, _ in extra)], [*labels, *(lab for _, lab in extra)])
    else:
        fig.suptitle(heading, fontsize=10, x=0.01, ha="left")
        facet_legends(axes, [title for title, _ in layout], extra)


def set_caption(fig: Figure, text: str) -> Figure:
    """Attach the caption written from what the drawing code drew (see figure_caption)."""
    fig.hidden_caption = text
    return fig


def figure_caption(fig: Figure) -> str:
    return getattr(fig, "hidden_caption", "")


def integer_ticks(axis) -> None:
    """Epochs, levels and layers are whole numbers: no tick at 1.5."""
    axis.set_major_locator(MaxNLocator(integer=True))


def _group_sizes(points: pd.DataFrame, x: str) -> dict[str, str]:
    """'n=3' or 'n=2-3' seeds per x, per group."""
    out = {}
    for label, group in points.groupby("label", sort=False):
        counts = group.groupby(x)["seed"].nunique()
        low, high = int(counts.min()), int(counts.max())
        out[label] = f"n={low}" if low == high else f"n={low}-{high}"
    return out


def _styles(labels: Sequence[str], methods: Sequence[str]) -> dict[str, dict]:
    """Colour by method; groups of the same method differ in marker (then line style)."""
    seen: dict[str, int] = {}
    out = {}
    for label, method in zip(labels, methods, strict=True):
        i = seen.get(method, 0)
        seen[method] = i + 1
        out[label] = {"color": method_color(method), **series_style(i)}
    return out


def _ticks_at(ax, values: np.ndarray, axis: str = "x") -> None:
    """Ticks at the measured sizes, written plainly (0.25, 1, 4, not 2.5 x 10^-1), labelled
    only as densely as their text fits: a measured value too close to a labelled one keeps an
    unlabelled tick (no '750010000 12500')."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    log = (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
    measured = np.unique(values[np.isfinite(values)])
    if log:
        measured = measured[measured > 0]
    if not 0 < len(measured) <= 12:
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # matplotlib's own locator: decades on a log axis
        return
    where = np.log10(measured) if log else measured
    span = float(where.max() - where.min())
    texts = [f"{v:g}" for v in measured]
    # a character of a tick label is about 0.6 em = 0.083 in at 10 pt; the panel is at most as
    # wide as its place before the layout (which makes room for labels and legends: 0.75)
    inches = max(0.5, 0.75 * ax.get_position().width * ax.figure.get_figwidth())
    per_char = 0.083 / inches if axis == "x" else 0.0
    labelled = [0]
    for j in range(1, len(measured)):
        need = span * (per_char * (len(texts[j]) + len(texts[labelled[-1]])) / 2 + 0.03)
        if where[j] - where[labelled[-1]] >= need:
            labelled.append(j)
    if len(labelled) > 1 and labelled[-1] != len(measured) - 1:  # keep the largest labelled: it ends the range
        last = len(measured) - 1
        need = span * (per_char * (len(texts[last]) + len(texts[labelled[-1]])) / 2 + 0.03)
        if where[last] - where[labelled[-1]] < need:
            labelled[-1] = last
    target.set_major_locator(FixedLocator(measured[labelled]))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_locator(FixedLocator(measured))
    target.set_minor_formatter(NullFormatter())


def _log_x(x: str, values: np.ndarray) -> bool:
    values = values[values > 0]
    return x == "width" or (len(values) > 0 and values.max() / values.min() >= 8)


def _group_methods(analysis: ScalingAnalysis) -> list[str]:
    fits = analysis.fits
    return list(fits["method"]) if "method" in fits.columns else ["?"] * len(fits)


def plot_accuracy_vs_x(analysis: ScalingAnalysis) -> Figure:
    """Seeds as dots, their mean and +-1 std band, and the fitted law drawn on top; one panel
    per method when there are more groups than MAX_SERIES."""
    x, metric = analysis.x, analysis.metric
    methods = _group_methods(analysis)
    fig, axes, layout = series_panels(analysis.labels, methods)
    styles = _styles(analysis.labels, methods)
    sizes = _group_sizes(analysis.points, x)
    log_x = _log_x(x, analysis.points[x].to_numpy(float))
    any_fit = reference = False
    for ax, (title, members) in zip(axes, layout, strict=True):
        for label in members:
            group = analysis.points[analysis.points["label"] == label]
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
        reference = _reference_line(ax, analysis) or reference
        if log_x:
            ax.set_xscale("log")
        _ticks_at(ax, analysis.points[x].to_numpy(float))
        ax.set_xlabel(_axis_label(x, log_x))
        ax.grid(True, which="both", alpha=0.25)
        if title:
            ax.set_title(title, fontsize=9)
    what = "dashed: fitted err = e_inf + a * x^-b" if any_fit else "no law fitted"
    fitted = [(Line2D([], [], color="0.3", linestyle=(0, (4, 2)), linewidth=1.6), "fitted law")] if any_fit else []
    finish_panels(fig, axes, layout, _metric_label(metric),
                  f"{metric_label(metric)} vs {x}\nmean over seeds (band: +-1 std, n: seeds per point); {what}", fitted)
    law = ("dashed: fitted law err = e_inf + a * x^-b, in the group's colour, over the measured range only" if any_fit
           else ("no law could be fitted (see the table)" if analysis.law_fitted else "no law is fitted on this axis"))
    dense_ref = f"; dotted: dense at {x} {analysis.reference_x:g}" if reference else ""
    facet_note = "; one panel per method" if len(axes) > 1 else ""
    set_caption(fig, f"{metric_label(metric).capitalize()} against {x}{' (log scale)' if log_x else ''}. Dots: seeds; solid line: their mean; "
                     f"band: +-1 standard deviation; n in the legend: seeds per point; {law}{dense_ref}{facet_note}.")
    return fig


def _reference_line(ax, analysis: ScalingAnalysis) -> bool:
    fits = analysis.fits
    if analysis.reference_x is None or "dense_acc_at_reference" not in fits.columns:
        return False
    values = fits["dense_acc_at_reference"].dropna().unique()
    if len(values) == 1:  # one dense reference for all groups: draw it
        ax.axhline(100 * values[0], color=method_color(DENSE), linestyle=":", linewidth=1.0, label=f"dense at {analysis.x} {analysis.reference_x:g}")
        return True
    return False


def plot_gap_vs_x(analysis: ScalingAnalysis) -> Figure:
    """Accuracy minus dense accuracy at the same x, in percentage points, with Welch CIs;
    series dodged on x so their bars never overlap; one panel per method when many."""
    x = analysis.x
    gaps = analysis.gaps
    labels = [lab for lab in analysis.labels if lab in set(gaps["label"])]
    by_label = dict(zip(analysis.labels, _group_methods(analysis), strict=True))
    methods = [by_label[lab] for lab in labels]
    fig, axes, layout = series_panels(labels, methods)
    styles = _styles(analysis.labels, _group_methods(analysis))
    log_x = bool(len(gaps)) and _log_x(x, gaps[x].to_numpy(float))
    spacing = min_spacing(gaps[x].to_numpy(float), log=log_x) if len(gaps) else None
    for ax, (title, members) in zip(axes, layout, strict=True):
        for i, label in enumerate(members):
            group = gaps[gaps["label"] == label]
            style = styles[label]
            yerr = 100 * np.abs(np.vstack([group["gap"] - group["gap_lo"], group["gap_hi"] - group["gap"]]))
            n = int(group["n"].min())
            ax.errorbar(dodge(group[x].to_numpy(float), i, len(members), log=log_x, spacing=spacing), 100 * group["gap"], yerr=yerr, color=style["color"],
                        linestyle=style["linestyle"], marker=style["marker"], markersize=4, capsize=3, linewidth=1.4, label=f"{label} (n={n})")
        ax.axhline(0.0, color="0.2", linewidth=0.8, label="_zero")
        if log_x:
            ax.set_xscale("log")
        _ticks_at(ax, gaps[x].to_numpy(float))
        ax.set_xlabel(_axis_label(x, log_x))
        ax.grid(True, which="both", alpha=0.25)
        if title:
            ax.set_title(title, fontsize=9)
    finish_panels(fig, axes, layout, f"gap to dense, percentage points\n({metric_label(analysis.metric)})",
                  f"gap to dense-trained at the same {x}\n(error bars: {int(100 * analysis.ci)}% Welch t interval over seeds)")
    level = int(round(100 * analysis.ci))
    set_caption(fig, f"{metric_label(analysis.metric).capitalize()} minus dense-trained at the same {x}, percentage points (pp); "
                     f"bars: {level}% Welch t intervals over seeds (paired intervals in the table below); series are shifted slightly along {x} "
                     f"so that their bars do not overlap{'; one panel per method' if len(axes) > 1 else ''}.")
    return fig


def model_name(model: str, depth: object) -> str:
    if pd.isna(depth):
        return model
    return {"convnet": f"Conv{int(depth)}", "resnet": f"ResNet-{int(depth)}", "mlp": f"MLP-{int(depth)}"}.get(model, f"{model}-{depth}")


def plot_accuracy_vs_keep_fraction(trials: pd.DataFrame, *, metric: str = TEST_METRIC, width: float | None = None) -> Figure | None:
    """Edge-popup's main figure: accuracy vs k, one line per model (depth), weight
    distribution and method that reads k (mean +- std over seeds), in the method's colour;
    dense of the same model as a dotted horizontal line. None when k does not vary. With
    several widths, one width is shown (1.0 if measured, else the largest)."""
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
    labels = list(dict.fromkeys(points["label"]))
    # "method" is a key only where it varies; else every line is the one k method's
    only = at_width.loc[at_width["method"].isin(k_methods), "method"].iloc[0]
    methods = [points.loc[points["label"] == lab, "method"].iloc[0] if "method" in points.columns else only for lab in labels]
    spacing = min_spacing(points["keep_fraction"].to_numpy(float), log=False)
    seen: dict[str, int] = {}
    for i, (label, method) in enumerate(zip(labels, methods, strict=True)):
        group = points[points["label"] == label]
        style = series_style(seen.get(method, 0))
        seen[method] = seen.get(method, 0) + 1
        style["linestyle"] = "-"  # the other line styles are dense's (one per model); series differ by marker
        stats = group.groupby("keep_fraction")[metric].agg(["mean", "std"]).fillna({"std": 0.0})
        xs = dodge(stats.index.to_numpy(float), i, len(labels), log=False, spacing=spacing)
        ax.errorbar(xs, 100 * stats["mean"], yerr=100 * stats["std"], color=method_color(method), markersize=4, capsize=3, linewidth=1.6, label=f"{label} ({sizes[label]})", **style)
    drawn_dense = []
    for i, model in enumerate(models):
        own_dense = dense[dense["model_name"] == model][metric]
        if len(own_dense):
            style = DENSE_LINESTYLES[i % len(DENSE_LINESTYLES)]
            drawn_dense.append(f"{style[1]}: dense-trained {model}")
            ax.axhline(100 * own_dense.mean(), color=method_color(DENSE), linestyle=style[0], linewidth=1.0, label=f"{model} dense (n={len(own_dense)})")
    ax.set_xlabel(_axis_label("keep_fraction"))
    ax.set_ylabel(_metric_label(metric))
    ax.set_title(fontsize=10, label=f"{metric_label(metric)} vs keep fraction at width {width:g}\nbars: +-1 std over seeds" + ("; black horizontal: dense-trained" if drawn_dense else ""))
    _legend(ax)
    ax.grid(True, alpha=0.25)
    varying = " and, where they vary, weight distribution and method" if len(by) > 1 else ""
    dense_text = f"; horizontal black lines at the same width, {'; '.join(drawn_dense)}" if drawn_dense else ""
    set_caption(fig, f"{metric_label(metric).capitalize()} against the keep fraction k at width {width:g} (edge-popup's figure): one solid line per model{varying}, "
                     f"in the method's colour (series shifted slightly along k so their bars do not overlap); bars: +-1 std over seeds{dense_text}.")
    return fig


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
