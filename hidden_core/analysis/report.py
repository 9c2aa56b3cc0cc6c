"""Writes a scaling analysis to a folder: fits.csv, gaps.csv, the figures and report.md.

The report says what was run (every config field that varies or matters, seeds per group,
store, commit and version), how points were selected, which metric, what was left out and
why, and how much to trust each number (intervals, flags on weak or extrapolated fits), and
which cells rest on an unhealthy training run, with every headline number also computed
without them (analysis/health.py)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from hidden_core import __version__
from hidden_core.analysis.fits import CI_METHOD, MIN_R2, PARAMS
from hidden_core.analysis.health import UNKNOWN, unknown_only
from hidden_core.analysis.metrics import metric_label, selection_column
from hidden_core.analysis.plots import (
    figure_caption,
    plot_accuracy_vs_keep_fraction,
    plot_accuracy_vs_x,
    plot_gap_vs_x,
    save_figure,
)
from hidden_core.analysis.scaling import (
    DENSE,
    ScalingAnalysis,
    analyze_scaling,
    extrapolation_check,
)
from hidden_core.analysis.tables import format_table
from hidden_core.config import TrialConfig
from hidden_core.errors import ConfigError
from hidden_core.records import PARAMS_ACTIVE

# fields a reader needs even when they do not vary (they define the experiment)
ALWAYS_SHOWN = ("dataset", "model", "depth", "width", "method", "epochs", "optimizer", "lr", "batch_size", "weight_dist", "keep_fraction", "val_fraction")


def _decimals(lo: float, hi: float) -> int | None:
    """Decimals that show an interval's width with two significant digits."""
    width = abs(hi - lo)
    if not math.isfinite(width) or width == 0:
        return None
    return max(0, 1 - math.floor(math.log10(width)))


def _number(value: float, decimals: int | None, digits: int = 3) -> str:
    if math.isinf(value):
        return "never" if value > 0 else "-inf"
    if decimals is not None and decimals <= 6 and abs(value) < 1e6:
        return f"{value:.{decimals}f}"
    return f"{value:.{digits}g}"


def with_ci(value: float, lo: float, hi: float, *, scale: float = 1.0) -> str:
    """'0.131 [0.118, 0.145]': as many decimals as the interval's width warrants, so a
    bound at 1e-14 reads 0.000, not 1.22e-14."""
    if value is None or math.isnan(value):
        return ""
    if math.isnan(lo) and math.isnan(hi):
        return _number(value * scale, None)
    decimals = _decimals(lo * scale, hi * scale)
    return f"{_number(value * scale, decimals)} [{_number(lo * scale, decimals)}, {_number(hi * scale, decimals)}]"


def _percent(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def fits_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    fits = analysis.fits
    table = pd.DataFrame({"group": fits["label"], "points": fits["n_trials"], f"{analysis.x}s": fits["n_x"], "seeds": fits["n_seeds"]})
    for p in PARAMS:
        table[p] = [with_ci(v, lo, hi) for v, lo, hi in zip(fits[p], fits[f"{p}_lo"], fits[f"{p}_hi"], strict=True)]
    table["R^2"] = [f"{v:.3f}" if math.isfinite(v) else "" for v in fits["r2"]]
    table["note"] = [r or f for r, f in zip(fits["reason"], fits["flags"], strict=True)]
    flagged_x = _flagged_x(analysis)
    if flagged_x:
        table["health flags"] = [f"flagged cells at {analysis.x} " + ", ".join(flagged_x[label]) if label in flagged_x else "" for label in fits["label"]]
    return table


def _flagged_x(analysis: ScalingAnalysis) -> dict[str, list[str]]:
    """{label: the x values of its flagged cells, as text}."""
    flagged = analysis.flagged
    return {str(label): [f"{v:g}" for v in sorted(rows[analysis.x])] for label, rows in flagged.groupby("label")} if len(flagged) else {}


def match_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    if analysis.reference_x is None:
        return pd.DataFrame()
    fits = analysis.fits[analysis.fits["method"] != DENSE]
    table = pd.DataFrame({
        "group": fits["label"],
        f"dense at {analysis.x} {analysis.reference_x:g}": [_percent(v) for v in fits["dense_acc_at_reference"]],
        f"{analysis.x} that matches it [CI]": [with_ci(v, lo, hi) for v, lo, hi in zip(fits["match_x_extrapolated"], fits["match_x_lo"], fits["match_x_hi"], strict=True)],
        "verdict": fits["match_note"],
    })
    flagged_x = _flagged_x(analysis)
    reference = [f"{label} at {analysis.x} {analysis.reference_x:g}" for label, xs in flagged_x.items() if label.startswith(DENSE) and f"{analysis.reference_x:g}" in xs]
    if flagged_x:
        table["health flags"] = ["; ".join([*reference, *([f"own cells at {analysis.x} " + ", ".join(flagged_x[label])] if label in flagged_x else [])]) for label in fits["label"]]
    return table


def gap_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    gaps = analysis.gaps
    return pd.DataFrame({
        "group": gaps["label"], analysis.x: gaps[analysis.x],
        "accuracy": [_percent(v) for v in gaps["acc"]], DENSE: [_percent(v) for v in gaps["dense_acc"]],
        "gap (pp) [CI]": [with_ci(v, lo, hi, scale=100) for v, lo, hi in zip(gaps["gap"], gaps["gap_lo"], gaps["gap_hi"], strict=True)],
        "paired gap (pp) [CI]": [with_ci(v, lo, hi, scale=100) for v, lo, hi in zip(gaps["paired_gap"], gaps["paired_lo"], gaps["paired_hi"], strict=True)],
        "seeds": gaps["n"], "dense seeds": gaps["n_dense"], "pairs": gaps["n_pairs"],
        **({"health flags": gaps["health"]} if "health" in gaps.columns and gaps["health"].fillna("").ne("").any() else {}),
    })


def headline_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    """Per untrained group: where it stands at the largest x shared with dense."""
    if analysis.gaps.empty:
        return pd.DataFrame()
    last = analysis.gaps.sort_values(analysis.x).groupby("label").tail(1).set_index("label").reindex([g for g in analysis.labels if g in set(analysis.gaps["label"])])
    notes = analysis.fits.set_index("label")["match_note"]
    table = pd.DataFrame({
        "group": last.index, f"largest {analysis.x}": last[analysis.x].to_numpy(),
        "accuracy": [_percent(v) for v in last["acc"]], f"dense at that {analysis.x}": [_percent(v) for v in last["dense_acc"]],
        "gap (pp) [CI]": [with_ci(v, lo, hi, scale=100) for v, lo, hi in zip(last["gap"], last["gap_lo"], last["gap_hi"], strict=True)],
        f"reaches dense at {analysis.x} {analysis.reference_x:g}?": notes.reindex(last.index).to_numpy(),
    })
    if "health" in last.columns and last["health"].fillna("").ne("").any():
        table["health flags"] = last["health"].fillna("").to_numpy()
    return table


def health_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    """The flagged cells (label, x): trials judged, flagged, reasons."""
    flagged = analysis.flagged
    return pd.DataFrame({"group": flagged["label"], analysis.x: flagged[analysis.x], "trials": flagged["n_trials"], "flagged": flagged["n_flagged"], "reasons": flagged["reasons"]})


def worsening_table(analysis: ScalingAnalysis) -> pd.DataFrame:
    w = analysis.worsening
    if w.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "group": w["label"], f"from {analysis.x}": w["x_from"], f"to {analysis.x}": w["x_to"],
        "change (pp) [95% paired CI]": [with_ci(v, lo, hi, scale=100) for v, lo, hi in zip(w["mean_change"], w["ci_low"], w["ci_high"], strict=True)],
        "seeds": w["n_seeds"], "baseline": ["yes" if str(label).startswith(DENSE) else "" for label in w["label"]],
    })


def health_summary(analysis: ScalingAnalysis) -> list[str]:
    """Plain lines (terminal and report): flagged cells, unknown health, worsening lines."""
    x = analysis.x
    lines = []
    flagged, unknown = analysis.flagged, unknown_only(analysis.health)
    if len(flagged):
        lines.append(f"{len(flagged)} of {analysis.points.groupby(['label', x]).ngroups} cells flagged (every number is also given without them):")
        lines += [f"  {r['label']}, {x} {r[x]:g}: {r['reasons']}" for _, r in flagged.iterrows()]
    if len(unknown):
        lines.append(f"{UNKNOWN} for {len(unknown)} cells ({int(unknown['n_trials'].sum())} trials without a health record: "
                     "written before hidden recorded training health; they cannot be checked)")
    for _, r in analysis.worsening.iterrows():
        lines.append(f"gets worse: {r['label']} from {x} {r['x_from']:g} to {r['x_to']:g}: {100 * r['mean_change']:+.2f} pp "
                     f"[{100 * r['ci_low']:.2f}, {100 * r['ci_high']:.2f}] over {r['n_seeds']} seeds (paired)")
    if not lines:
        lines.append("training health: every cell healthy")
    return lines


def _values(series: pd.Series) -> str:
    distinct = sorted({("default" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for v in series.tolist()}, key=str)
    shown = [f"{v:g}" if isinstance(v, float) else str(v) for v in distinct]
    return ", ".join(shown[:12]) + (f", ... ({len(shown)} values)" if len(shown) > 12 else "")


def run_description(trials: pd.DataFrame, analysis: ScalingAnalysis) -> list[str]:
    """What was run: every config field that varies, the ones that define the experiment,
    per-method learning rates, seeds per group, code version and commit."""
    used = trials[trials["trial_id"].isin(analysis.points["trial_id"])] if "trial_id" in analysis.points.columns and "trial_id" in trials.columns else trials
    lines = []
    fields = [f for f in TrialConfig.model_fields if f in used.columns and f != "seed"]
    varying = [f for f in fields if used[f].astype(str).nunique() > 1]
    constant = [f for f in ALWAYS_SHOWN if f in used.columns and f not in varying]
    if varying:
        lines.append("Varies: " + "; ".join(f"{f} = {_values(used[f])}" for f in varying) + ".")
    if constant:
        lines.append("Fixed: " + "; ".join(f"{f} = {_values(used[f])}" for f in constant) + ".")
    if {"method", "lr"} <= set(used.columns) and "lr" in varying:
        lines.append("Learning rate per method: " + "; ".join(f"{m}: {_values(g['lr'])}" for m, g in used.groupby("method")) + ".")
    seeds = analysis.points.groupby("label")["seed"].nunique()
    lines.append(f"Seeds per group: {_values(seeds.astype(float))} (seed values {_values(analysis.points['seed'].astype(float))}).")
    for column, what in (("hidden_version", "hidden version"), ("git_commit", "commit")):
        if column in used.columns:
            lines.append(f"{what.capitalize()} of the runs: {_values(used[column].map(lambda v: str(v)[:12] if v is not None else 'unknown'))}.")
    return lines


def write_scaling_report(analysis: ScalingAnalysis, out_dir: str | Path, *, sweep: str, trials: pd.DataFrame | None = None, selection: str | None = None, store: str | None = None) -> dict[str, Path]:
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
    analysis.health.to_csv(out / "health.csv", index=False)
    written["health.csv"] = out / "health.csv"
    if not analysis.worsening.empty:
        analysis.worsening.to_csv(out / "worsening.csv", index=False)
        written["worsening.csv"] = out / "worsening.csv"
    healthy = analysis.without_flagged
    if healthy is not None:
        healthy.fits.to_csv(out / "fits_without_flagged.csv", index=False)
        written["fits_without_flagged.csv"] = out / "fits_without_flagged.csv"
        if not healthy.gaps.empty:
            healthy.gaps.to_csv(out / "gaps_without_flagged.csv", index=False)
            written["gaps_without_flagged.csv"] = out / "gaps_without_flagged.csv"
    k_figure = plot_accuracy_vs_keep_fraction(trials, metric=analysis.metric) if x == "keep_fraction" and trials is not None else None
    # on the k axis, edge-popup's figure (with dense of each model as a line) is the main one
    figures = {f"accuracy_vs_{x}": k_figure or plot_accuracy_vs_x(analysis)}
    if not analysis.gaps.empty:
        figures[f"gap_vs_{x}"] = plot_gap_vs_x(analysis)
    # figures that do not depend on x (the k figure, the joint law across width and depth) are
    # written once, by the width analysis, unless this analysis is the only one that can draw them
    elsewhere = _x_free_figures_elsewhere(trials, analysis)
    if trials is not None and x != "keep_fraction" and not elsewhere and {"keep_fraction", "model", "depth", "width", "method", "seed"} <= set(trials.columns):
        k_figure = plot_accuracy_vs_keep_fraction(trials, metric=analysis.metric)
        if k_figure is not None:
            figures["accuracy_vs_keep_fraction"] = k_figure
    for stem, fig in figures.items():
        for path in save_figure(fig, out, stem):
            written[path.name] = path
    captions = {stem: figure_caption(fig) for stem, fig in figures.items()}
    joint = None if elsewhere else joint_law(trials, analysis)
    if joint is not None:
        joint.fits.to_csv(out / "joint_fits.csv", index=False)
        written["joint_fits.csv"] = out / "joint_fits.csv"
        joint_figure = plot_accuracy_vs_x(joint)
        captions["accuracy_vs_params_active"] = figure_caption(joint_figure)
        for path in save_figure(joint_figure, out, "accuracy_vs_params_active"):
            written[path.name] = path
    report = out / "report.md"
    report.write_text(_markdown(analysis, sweep, selection, list(figures), trials, store, joint, captions, elsewhere))
    written["report.md"] = report
    return written


def joint_law(trials: pd.DataFrame | None, analysis: ScalingAnalysis) -> ScalingAnalysis | None:
    """When both width and depth vary: one law per group across both, in active parameters."""
    if trials is None or analysis.x not in ("width", "depth") or not {"width", "depth", PARAMS_ACTIVE} <= set(trials.columns):
        return None
    used = trials[trials["trial_id"].isin(analysis.points["trial_id"])] if "trial_id" in trials.columns else trials
    if used["width"].nunique() < 2 or used["depth"].nunique() < 2 or used[PARAMS_ACTIVE].isna().all():
        return None
    chosen = analysis.keys[: len(analysis.keys) - len(analysis.auto_split)]  # the user's groups
    by = [k for k in chosen if k not in ("width", "depth")]
    try:
        return analyze_scaling(used, x=PARAMS_ACTIVE, by=by or ["method"], metric=analysis.metric, ci=analysis.ci)
    except ConfigError:
        return None


def _x_free_figures_elsewhere(trials: pd.DataFrame | None, analysis: ScalingAnalysis) -> bool:
    """True when a width analysis of the same trials can draw the figures that do not depend
    on x, so this one (x = depth, say) leaves them out instead of writing a duplicate."""
    return trials is not None and analysis.x not in ("width", "keep_fraction") and "width" in trials.columns and trials["width"].nunique() > 1


def _markdown(analysis: ScalingAnalysis, sweep: str, selection: str | None, figures: list[str], trials: pd.DataFrame | None, store: str | None,
              joint: ScalingAnalysis | None = None, captions: dict[str, str] | None = None, elsewhere: bool = False) -> str:
    x, metric = analysis.x, analysis.metric
    level = int(round(100 * analysis.ci))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    excluded = ", ".join(f"{n} {reason}" for reason, n in analysis.excluded.items()) or "none"
    lines = [
        f"# {metric_label(metric).capitalize()} against {x}: sweep `{sweep}`",
        "",
        f"Generated {stamp} by hidden {__version__} from the store `{store or 'unknown'}`. "
        f"Selection: {f'`{selection}`' if selection else 'all trials'}.",
        "",
        f"**Metric:** {metric_label(metric)} (column `{metric}`), as a fraction of the test set, shown in %. "
        f"Where a search tried several settings for one point, the trial with the best `{selection_column(metric)}` is kept "
        f"(selected on validation, reported on test); one point per group, {x} and seed: "
        f"{len(analysis.points)} points in {len(analysis.fits)} groups.",
        "",
        f"**Left out of every fit and table:** {excluded} (only completed trials are analyzed; no trial is left out "
        "for its own accuracy: cells with an unhealthy training run are flagged as whole cells, see Training health).",
        "",
    ]
    if trials is not None:
        lines += ["## What was run", "", *[f"- {line}" for line in run_description(trials, analysis)], ""]
    lines += [*[f"- {note}" for note in analysis.notes], ""]
    headline = headline_table(analysis)
    if not headline.empty:
        lines += ["## Headline", "", format_table(headline, markdown=True), ""]
    lines += _health_markdown(analysis)
    lines += ["## Figures", ""]
    captions = captions or {}
    for stem in figures:
        lines += [f"![{stem.replace('_', ' ')}]({stem}.png)", "", f"*{captions.get(stem, stem)}*", ""]
    if elsewhere:
        lines += ["The keep-fraction figure and the joint law across width and depth do not depend on the x axis: "
                  "`hidden analyze scaling SWEEP --x width` writes them (in `../width/`).", ""]
    if analysis.law_fitted:
        lines += [
            f"## Fitted laws: test error = e_inf + a * {x}^(-b)", "",
            f"Least squares on every seed's point. Intervals: {level}% {CI_METHOD}; in a coverage study on synthetic "
            f"laws with 3 and 5 seeds they held the truth 94-96% of the time for a nominal 95% "
            f"(tests/test_analysis_coverage.py). They do not hold for a parameter at its bound. "
            f"Flagged: R^2 below {MIN_R2}, parameters at their bounds. A group with fewer than 3 distinct {x} values, "
            f"or whose points are all equal, gets no law (note says why). Full numbers: `fits.csv`.", "",
            format_table(fits_table(analysis), markdown=True), "",
        ]
        check = extrapolation_check(analysis)
        if not check.empty:
            table = check.assign(predicted_acc=[_percent(v) for v in check["predicted_acc"]], measured_acc=[_percent(v) for v in check["measured_acc"]], error_pp=check["error_pp"].round(2))
            lines += ["## Extrapolation check", "", f"Each law refitted without the largest {x}, then asked to predict it: how far the law can be trusted beyond the measured range.", "", format_table(table, markdown=True), ""]
    if joint is not None:
        check = extrapolation_check(joint)
        lines += [
            "## Joint law across width and depth", "",
            "One law per group against active parameters (weights in the forward pass), over every width and depth: "
            "err = e_inf + a * params_active^(-b). Full numbers: `joint_fits.csv`.", "",
            "![accuracy vs params active](accuracy_vs_params_active.png)", "",
            f"*{captions.get('accuracy_vs_params_active', '')}*", "",
            format_table(fits_table(joint), markdown=True), "",
        ]
        if not check.empty:
            table = check.assign(predicted_acc=[_percent(v) for v in check["predicted_acc"]], measured_acc=[_percent(v) for v in check["measured_acc"]], error_pp=check["error_pp"].round(2))
            lines += ["Extrapolation check: fitted on the smaller networks, predicting the largest:", "", format_table(table, markdown=True), ""]
    matches = match_table(analysis)
    if not matches.empty:
        lines += [
            f"## {x.capitalize()} at which each method's fit reaches dense-trained accuracy", "",
            f"{level}% interval: delta method on the fitted law plus the dense mean's uncertainty (seed spread pooled over every {x} dense was run at). "
            "A crossing outside the measured range is an extrapolation and says so.", "",
            format_table(matches, markdown=True), "",
        ]
    if not analysis.gaps.empty:
        lines += [
            f"## Gap to dense at each measured {x}", "",
            f"Mean accuracy minus dense's mean at the same {x}, percentage points, with a {level}% Welch t interval; "
            "the paired gap is the mean of per-seed differences over the seeds both ran (a method and dense at the same seed "
            f"share their initial weights), with a {level}% paired t interval. Full numbers: `gaps.csv`.", "",
            format_table(gap_table(analysis), markdown=True), "",
        ]
    lines += _without_flagged_markdown(analysis)
    return "\n".join(lines)


def _health_markdown(analysis: ScalingAnalysis) -> list[str]:
    x = analysis.x
    lines = [
        "## Training health", "",
        f"Each trial records its training health (`health_flags`: a layer dead beyond its threshold, loss stuck at ln(classes), "
        f"train accuracy near chance, an early loss spike; results/README.md). A cell (group and {x}) is flagged when at least one "
        "of its selected completed trials carries a flag, or a seed of it diverged (and has no completed trial there): one seed of five "
        "that kills a layer makes the recipe fragile. The rule "
        "acts on whole cells, never on one trial's own accuracy (leaving out the unlucky seeds would bias the mean). Flagged "
        "cells stay in every table above, marked; the section *Without the flagged cells* repeats the numbers without them "
        "(docs/methods.md, Training health). Full list: `health.csv`.", "",
    ]
    flagged, unknown = analysis.flagged, unknown_only(analysis.health)
    if len(flagged):
        lines += [format_table(health_table(analysis), markdown=True), ""]
    else:
        lines += ["No cell is flagged." if not len(unknown) else "No cell with a health record is flagged.", ""]
    if len(unknown):
        lines += [f"**{UNKNOWN.capitalize()}** for {len(unknown)} of {analysis.points.groupby(['label', x]).ngroups} cells "
                  f"({int(unknown['n_trials'].sum())} trials have no health record: written before hidden recorded training "
                  "health). Their health cannot be checked: treat them as unverified, not as healthy.", ""]
    if analysis.law_fitted:
        lines += [f"**Lines that get worse as {x} grows** (beyond the seed spread: the 95% paired t interval over seeds of the "
                  f"change between consecutive {x} values lies below 0; full numbers: `worsening.csv`). A baseline that gets "
                  "worse as it grows usually trained badly there (a recipe that does not scale), not a law of nature.", ""]
        table = worsening_table(analysis)
        lines += [format_table(table, markdown=True) if not table.empty else "None.", ""]
    return lines


def _without_flagged_markdown(analysis: ScalingAnalysis) -> list[str]:
    healthy = analysis.without_flagged
    if not len(analysis.flagged):
        return []
    lines = ["## Without the flagged cells", ""]
    if healthy is None:
        return [*lines, "Every cell is flagged: nothing is left to analyze without them.", ""]
    n = len(analysis.flagged)
    lines += [f"The same analysis on the {len(healthy.points)} points outside the {n} flagged cell{'s' if n != 1 else ''} "
              "(`fits_without_flagged.csv`, `gaps_without_flagged.csv`); compare with the tables above.", ""]
    headline = headline_table(healthy)
    if not headline.empty:
        lines += ["Headline:", "", format_table(headline, markdown=True), ""]
    if healthy.law_fitted:
        lines += ["Fitted laws:", "", format_table(fits_table(healthy), markdown=True), ""]
    matches = match_table(healthy)
    if not matches.empty:
        lines += [f"{analysis.x.capitalize()} at which each fit reaches dense:", "", format_table(matches, markdown=True), ""]
    if not healthy.gaps.empty:
        lines += [f"Gap to dense at each {analysis.x}:", "", format_table(gap_table(healthy), markdown=True), ""]
    return lines
