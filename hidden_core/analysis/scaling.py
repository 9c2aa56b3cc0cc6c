"""Scaling analysis of a trials table: one power-law fit per group, the size at which each
untrained method reaches dense-trained accuracy, and its gap to dense at every measured size.

Works on any DataFrame with the store's columns, so it runs on a laptop with pandas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hidden_core.analysis.fits import PARAMS, PowerLawFit, error_crossing, fit_power_law
from hidden_core.analysis.tables import require_columns
from hidden_core.config import METHOD_FIELDS, ConfigError, TrialConfig
from hidden_core.records import ANALYZED_STATUSES  # pruned and failed runs have no final accuracy

DENSE = "dense"
BARE_LABELS = frozenset({"method", "model_name"})  # values that name themselves: "dense", not "method=dense"


@dataclass
class ScalingAnalysis:
    x: str
    metric: str
    keys: list[str]
    auto_split: list[str]
    points: pd.DataFrame  # keys + label + x + seed + metric: one row per group, x and seed
    fits: pd.DataFrame  # one row per group
    gaps: pd.DataFrame  # one row per untrained group and x measured for it and for dense
    fit_results: dict[str, PowerLawFit]
    reference_x: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(self.fits["label"])


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _auto_split(rows: pd.DataFrame, x: str, by: Sequence[str]) -> list[str]:
    """Config columns that vary across grid cells, so that one fit never mixes, say, two
    keep_fractions. A column that varies inside one cell (cell_id) is a searched
    hyperparameter: the best trial per cell and seed is taken instead of splitting."""
    candidates = [c for c in TrialConfig.model_fields if c in rows.columns and c not in (*by, x, "seed")]
    varying = [c for c in candidates if rows[c].astype(str).nunique() > 1]
    if "cell_id" in rows.columns and rows["cell_id"].notna().all():
        per_cell = rows.groupby("cell_id")
        varying = [c for c in varying if (per_cell[c].agg(lambda s: s.astype(str).nunique()) <= 1).all()]
    return varying


def _labels(points: pd.DataFrame, by: Sequence[str], split: Sequence[str]) -> pd.Series:
    """'edge_popup, keep_fraction=0.3': the by values plus the split columns that vary among
    rows with the same by values (so dense is not labelled with a k it does not read)."""
    shown: dict[tuple, list[str]] = {}
    for by_values, rows in points.groupby(list(by), dropna=False, sort=False):
        shown[by_values] = [c for c in split if rows[c].astype(str).nunique() > 1]

    def label(row: pd.Series) -> str:
        by_values = tuple(row[c] for c in by)
        parts = [_fmt(row[c]) if c in BARE_LABELS else f"{c}={_fmt(row[c])}" for c in by]
        method = row.get("method")
        for c in shown.get(by_values, []):
            if c in METHOD_FIELDS.get(method, ()) or not _method_specific(c):
                parts.append(f"{c}={_fmt(row[c])}")
        return ", ".join(parts)

    return points.apply(label, axis=1) if len(points) else pd.Series(dtype=str)


def _method_specific(column: str) -> bool:
    return any(column in fields for fields in METHOD_FIELDS.values())


def select_points(trials: pd.DataFrame, x: str, by: Sequence[str], metric: str, select_by: str = "val_acc") -> tuple[pd.DataFrame, list[str]]:
    """One point per (group, x, seed): the trial with the best validation accuracy there."""
    require_columns(trials, [x, *by, metric, "seed"], "analysis")
    rows = trials
    if "status" in rows.columns:
        rows = rows[rows["status"].isin(ANALYZED_STATUSES)]
    rows = rows[rows[metric].notna() & rows[x].notna()]
    if rows.empty:
        statuses = trials["status"].value_counts().to_dict() if "status" in trials.columns else {}
        raise ConfigError([f"analysis: no completed trials with a {metric} value in the selection ({len(trials)} trials; statuses: {statuses or 'none'})"])
    split = _auto_split(rows, x, by)
    keys = [*by, *split]
    if select_by in rows.columns:
        rows = rows.sort_values(select_by, ascending=False, na_position="last", kind="stable")
    points = rows.drop_duplicates([*keys, x, "seed"]).copy()
    points["label"] = _labels(points, by, split)
    columns = ["label", *keys, x, "seed", metric] + (["trial_id"] if "trial_id" in points.columns else [])
    return points[list(dict.fromkeys(columns))].sort_values(["label", x, "seed"]).reset_index(drop=True), split


def _default_reference(x: str, dense_x: np.ndarray) -> float:
    return 1.0 if x == "width" and np.any(np.isclose(dense_x, 1.0)) else float(np.max(dense_x))


def _match_note(fit: PowerLawFit, crossing: float, x: str, dense_acc: float) -> str:
    if not fit.ok:
        return f"no fit: {fit.refused}"
    if math.isinf(crossing):
        return f"not reached: the fitted asymptote {1 - fit.params['e_inf']:.1%} is below dense's {dense_acc:.1%}"
    if crossing > fit.x_max:
        return f"not reached within the fitted range ({x} <= {fit.x_max:g}); the fit extrapolates to {crossing:.3g}"
    if crossing < fit.x_min:
        return f"already reached at the smallest measured {x} ({fit.x_min:g})"
    return f"reached at {x} {crossing:.3g}"


def _quantiles(values: np.ndarray, ci: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    alpha = (1 - ci) / 2
    # inverted_cdf never interpolates, so an infinite upper tail ("never reached") stays inf
    lo, hi = np.quantile(values, [alpha, 1 - alpha], method="inverted_cdf")
    return float(lo), float(hi)


def _bootstrap_means(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Means of seeds resampled with replacement, spread widened by sqrt(k/(k-1)) so that
    k = 2-3 seeds give the unbiased variance of a mean (as in fits._bootstrap)."""
    k = len(values)
    means = values[rng.integers(0, k, size=(n, k))].mean(axis=1)
    return values.mean() + math.sqrt(k / (k - 1)) * (means - values.mean()) if k > 1 else means


def analyze_scaling(trials: pd.DataFrame, *, x: str = "width", by: Sequence[str] = ("method",), metric: str = "test_acc", select_by: str = "val_acc", reference_x: float | None = None, n_boot: int = 400, ci: float = 0.95, seed: int = 0) -> ScalingAnalysis:
    """Fit error = 1 - metric against x for every group, and compare untrained methods to dense."""
    by = list(dict.fromkeys(by))
    if x in by:
        raise ConfigError([f"by: {x!r} is the x axis; group by other columns"])
    points, split = select_points(trials, x, by, metric, select_by)
    if points[x].nunique() < 2:
        raise ConfigError([f"x: every selected trial has {x} = {points[x].iloc[0]:g}; nothing to scale over (try --x {'depth' if x == 'width' else 'width'})"])
    keys = [*by, *split]
    rng = np.random.default_rng(seed)
    notes = [f"also split by {', '.join(split)} (they vary across grid cells)"] if split else []

    fit_results: dict[str, PowerLawFit] = {}
    rows = []
    for label, group in points.groupby("label", sort=False):
        fit = fit_power_law(group[x].to_numpy(float), 1 - group[metric].to_numpy(float), x_name=x, n_boot=n_boot, ci=ci, seed=seed)
        fit_results[label] = fit
        row = {"label": label, **{k: group[k].iloc[0] for k in keys}, "n_trials": len(group), "n_x": fit.n_x, "n_seeds": group["seed"].nunique(), "x_min": fit.x_min, "x_max": fit.x_max}
        for p in PARAMS:
            row[p], (row[f"{p}_lo"], row[f"{p}_hi"]) = fit.params[p], fit.ci[p]
        row.update({"acc_inf": 1 - fit.params["e_inf"], "r2": fit.r2, "rmse": fit.rmse, "fit": "ok" if fit.ok else "refused", "reason": fit.refused or "", "ci_method": fit.ci_method})
        rows.append(row)
    fits = pd.DataFrame(rows)

    reference = None
    gaps = pd.DataFrame(columns=["label", *keys, x, "gap", "gap_lo", "gap_hi", "acc", "dense_acc", "n", "n_dense"])
    if "method" in keys and (points["method"] == DENSE).any():
        dense = points[points["method"] == DENSE]
        match_on = [k for k in keys if k != "method" and dense[k].astype(str).nunique() > 1]
        reference = float(reference_x) if reference_x is not None else _default_reference(x, dense[x].to_numpy(float))
        fits, gaps = _compare_to_dense(points, fits, fit_results, dense, match_on, keys, x, metric, reference, n_boot, ci, rng)
        notes.append(f"dense reference: dense-trained {metric} at {x} = {reference:g}")
    else:
        notes.append("no dense trials in the selection: no dense reference and no gaps")
    return ScalingAnalysis(x=x, metric=metric, keys=keys, auto_split=split, points=points, fits=fits, gaps=gaps, fit_results=fit_results, reference_x=reference, notes=notes)


def _compare_to_dense(points: pd.DataFrame, fits: pd.DataFrame, fit_results: dict[str, PowerLawFit], dense: pd.DataFrame, match_on: list[str], keys: list[str], x: str, metric: str, reference: float, n_boot: int, ci: float, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    match_columns = {c: [] for c in ("reference_x", "dense_acc_at_reference", "match_x", "match_x_lo", "match_x_hi", "match_x_extrapolated", "match_note")}
    gap_rows = []
    for _, row in fits.iterrows():
        own = points[points["label"] == row["label"]]
        twin = dense
        for k in match_on:
            twin = twin[twin[k].astype(str) == str(row[k])]
        at_reference = twin[np.isclose(twin[x].to_numpy(float), reference)][metric].to_numpy(float)
        values = dict.fromkeys(match_columns, math.nan)
        values["reference_x"], values["match_note"] = reference, ""
        if row["method"] == DENSE:
            values["match_note"] = "reference"
        elif not len(at_reference):
            values["match_note"] = f"no dense trial at {x} {reference:g} with the same {', '.join(match_on) or 'settings'}"
        else:
            fit = fit_results[row["label"]]
            dense_acc = float(at_reference.mean())
            crossing = fit.crossing(1 - dense_acc) if fit.ok else math.nan
            values["dense_acc_at_reference"] = dense_acc
            values["match_note"] = _match_note(fit, crossing, x, dense_acc)
            if fit.ok:
                values["match_x_extrapolated"] = crossing
                if fit.x_min <= crossing <= fit.x_max:
                    values["match_x"] = crossing
                replicate_targets = 1 - _bootstrap_means(at_reference, len(fit.replicates), rng)
                crossings = np.array([error_crossing(t, *p) for t, p in zip(replicate_targets, fit.replicates, strict=True)])
                values["match_x_lo"], values["match_x_hi"] = _quantiles(crossings, ci)
        for c in match_columns:
            match_columns[c].append(values[c])
        if row["method"] != DENSE:
            gap_rows += _gaps(row, own, twin, keys, x, metric, ci, rng)
    fits = fits.assign(**match_columns)
    gaps = pd.DataFrame(gap_rows, columns=["label", *keys, x, "gap", "gap_lo", "gap_hi", "acc", "dense_acc", "n", "n_dense"])
    return fits, gaps


def _gaps(row: pd.Series, own: pd.DataFrame, twin: pd.DataFrame, keys: list[str], x: str, metric: str, ci: float, rng: np.random.Generator, n_boot: int = 2000) -> list[dict]:
    out = []
    for value, group in own.groupby(x):
        dense_values = twin[np.isclose(twin[x].to_numpy(float), float(value))][metric].to_numpy(float)
        if not len(dense_values):
            continue
        values = group[metric].to_numpy(float)
        diffs = _bootstrap_means(values, n_boot, rng) - _bootstrap_means(dense_values, n_boot, rng)
        lo, hi = _quantiles(diffs, ci)
        out.append({"label": row["label"], **{k: row[k] for k in keys}, x: float(value), "gap": values.mean() - dense_values.mean(), "gap_lo": lo, "gap_hi": hi, "acc": values.mean(), "dense_acc": dense_values.mean(), "n": len(values), "n_dense": len(dense_values)})
    return out
