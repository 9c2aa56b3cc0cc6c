"""Writes a scaling analysis to a folder: fits.csv, gaps.csv, the figures and report.md."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from hidden_core import __version__
from hidden_core.analysis.fits import PARAMS
from hidden_core.analysis.plots import (
    plot_accuracy_vs_keep_fraction,
    plot_accuracy_vs_x,
    plot_gap_vs_x,
    save_figure,
)
from hidden_core.analysis.scaling import DENSE, ScalingAnalysis
from hidden_core.analysis.tables import format_table


def _number(value: float, digits: int) -> str:
    return "never" if math.isinf(value) and value > 0 else f"{value:.{digits}g}"


def _with_ci(value: float, lo: float, hi: float, *, scale: float = 1.0, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return ""
    text = _number(value * scale, digits)
    if not (math.isnan(lo) and math.isnan(hi)):
        text += f" [{_number(lo * scale, digits)}, {_number(hi * scale, digits)}]"
    return text


def _percent(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def fits_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    fits = analysis.fits
    table = pd.DataFrame({"group": fits["label"], "points": fits["n_trials"], f"{analysis.x}s": fits["n_x"], "seeds": fits["n_seeds"]})
    for p in PARAMS:
        table[p] = [_with_ci(v, lo, hi) for v, lo, hi in zip(fits[p], fits[f"{p}_lo"], fits[f"{p}_hi"], strict=True)]
    table["R^2"], table["RMSE"] = fits["r2"], fits["rmse"]
    table["note"] = fits["reason"]
    return table


def match_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    if analysis.reference_x is None:
        return pd.DataFrame()
    fits = analysis.fits[analysis.fits["method"] != DENSE]
    return pd.DataFrame({
        "group": fits["label"],
        f"dense at {analysis.x} {analysis.reference_x:g}": [_percent(v) for v in fits["dense_acc_at_reference"]],
        f"{analysis.x} that matches it [CI]": [_with_ci(v, lo, hi) for v, lo, hi in zip(fits["match_x_extrapolated"], fits["match_x_lo"], fits["match_x_hi"], strict=True)],
        "verdict": fits["match_note"],
    })


def gap_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    gaps = analysis.gaps
    return pd.DataFrame({
        "group": gaps["label"], analysis.x: gaps[analysis.x],
        "accuracy": [_percent(v) for v in gaps["acc"]], "dense": [_percent(v) for v in gaps["dense_acc"]],
        "gap (pp) [CI]": [_with_ci(v, lo, hi, scale=100) for v, lo, hi in zip(gaps["gap"], gaps["gap_lo"], gaps["gap_hi"], strict=True)],
        "seeds": gaps["n"], "dense seeds": gaps["n_dense"],
    })


def headline_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    """Per untrained group: where it stands at the largest x shared with dense."""
    if analysis.gaps.empty:
        return pd.DataFrame()
    last = analysis.gaps.sort_values(analysis.x).groupby("label").tail(1).sort_values("label").set_index("label")
    notes = analysis.fits.set_index("label")["match_note"]
    return pd.DataFrame({
        "group": last.index, f"largest {analysis.x}": last[analysis.x].to_numpy(),
        "accuracy": [_percent(v) for v in last["acc"]], f"dense at that {analysis.x}": [_percent(v) for v in last["dense_acc"]],
        "gap (pp)": (100 * last["gap"]).round(2).to_numpy(), f"reaches dense at {analysis.x} {analysis.reference_x:g}?": notes.reindex(last.index).to_numpy(),
    })


def write_scaling_report(analysis: ScalingAnalysis, out_dir: str | Path, *, sweep: str, trials: pd.DataFrame | None = None, selection: str | None = None) -> dict[str, Path]:
    """Write everything; returns {name: path} of what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = analysis.x
    written: dict[str, Path] = {}
    analysis.fits.to_csv(out / "fits.csv", index=False)
    written["fits.csv"] = out / "fits.csv"
    if not analysis.gaps.empty:
        analysis.gaps.to_csv(out / "gaps.csv", index=False)
        written["gaps.csv"] = out / "gaps.csv"
    figures = {f"accuracy_vs_{x}": plot_accuracy_vs_x(analysis)}
    if not analysis.gaps.empty:
        figures[f"gap_vs_{x}"] = plot_gap_vs_x(analysis)
    if trials is not None and {"keep_fraction", "model", "depth", "width", "method"} <= set(trials.columns):
        k_figure = plot_accuracy_vs_keep_fraction(trials, metric=analysis.metric)
        if k_figure is not None:
            figures["accuracy_vs_keep_fraction"] = k_figure
    for stem, fig in figures.items():
        for path in save_figure(fig, out, stem):
            written[path.name] = path
    report = out / "report.md"
    report.write_text(_markdown(analysis, sweep, selection, list(figures)))
    written["report.md"] = report
    return written


def _markdown(analysis: ScalingAnalysis, sweep: str, selection: str | None, figures: list[str]) -> str:
    x, metric = analysis.x, analysis.metric
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Scaling of {metric} with {x}: sweep `{sweep}`",
        "",
        f"Generated {stamp} by hidden {__version__}. Selection: {f'`{selection}`' if selection else 'all trials'}; "
        f"completed and diverged trials only, one point per group, {x} and seed (the best validation accuracy "
        f"where a search tried several settings): {len(analysis.points)} points in {len(analysis.fits)} groups. "
        f"Accuracies are fractions of the test set, shown in %.",
        "",
        *[f"- {note}" for note in analysis.notes],
        "",
    ]
    headline = headline_table(analysis)
    if not headline.empty:
        lines += ["## Headline", "", format_table(headline, markdown=True), ""]
    lines += ["## Figures", ""]
    lines += [f"![{stem.replace('_', ' ')}]({stem}.png)\n" for stem in figures]
    lines += [
        f"## Fitted laws: test error = e_inf + a * {x}^(-b)", "",
        f"Point estimates with {int(100 * _level(analysis))}% bootstrap intervals over seeds; fit on every seed's point. "
        "A group with fewer distinct values than the law's 3 parameters is not fitted (note says why). Full numbers: `fits.csv`.", "",
        format_table(fits_table(analysis), markdown=True), "",
    ]
    matches = match_table(analysis)
    if not matches.empty:
        lines += [f"## {x.capitalize()} at which each method's fit reaches dense-trained accuracy", "", format_table(matches, markdown=True), ""]
    if not analysis.gaps.empty:
        lines += [f"## Gap to dense at each measured {x}", "", "Mean accuracy minus dense's mean at the same " + x + ", percentage points; interval from resampling seeds. Full numbers: `gaps.csv`.", "", format_table(gap_table(analysis), markdown=True), ""]
    return "\n".join(lines)


def _level(analysis: ScalingAnalysis) -> float:
    levels = [f.ci_level for f in analysis.fit_results.values()]
    return levels[0] if levels else 0.95
