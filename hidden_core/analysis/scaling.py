"""Scaling analysis of a trials table: one power-law fit per group, the size at which each
untrained method reaches dense-trained accuracy, and its gap to dense at every measured
size (unpaired, and paired over seeds that share their initial weights).

Training health (analysis/health.py): every (group, x) cell with a flagged trial is listed,
with lines that get worse as x grows; the whole analysis is repeated without the flagged
cells (`without_flagged`), so a reader sees both. No trial is left out for its own accuracy.

Works on any DataFrame with the store's columns, so it runs on a laptop with pandas.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hidden_core.analysis.fits import PARAMS, PowerLawFit, fit_power_law
from hidden_core.analysis.health import (
    flagged_only,
    in_cells,
    unhealthy_cells,
    worsening_baselines,
)
from hidden_core.analysis.intervals import (
    crossing_interval,
    paired_interval,
    pooled_variance,
    welch_interval,
)
from hidden_core.analysis.metrics import (
    TEST_METRIC,
    best_by_validation,
    metric_label,
    selection_column,
)
from hidden_core.analysis.tables import require_columns
from hidden_core.catalog import REFERENCE
from hidden_core.config import (
    DATASET_INFO,
    METHOD_FIELDS,
    METHOD_SPECIFIC_FIELDS,
    TrialConfig,
)
from hidden_core.errors import ConfigError
from hidden_core.records import (
    ANALYZED_STATUSES,  # diverged, pruned and failed rows are counted, not fitted
    DEAD_UNITS_MAX,
    DIVERGED,
    EARLY_LOSS_PEAK,
    HEALTH_FLAGS,
    PARAMS_ACTIVE,
    PARAMS_LEARNED,
    PARAMS_TOTAL,
    TRAIN_ACC,
)

DENSE = REFERENCE  # the trained dense network of every gap and ratio (its registry line says reference)
BARE_LABELS = frozenset({"method", "model_name"})  # values that name themselves: "dense", not "method=dense"
# axes a saturating power law of the error makes sense against: the error falls as they grow
SIZE_AXES = frozenset({"width", "depth", "mlp_units", "epochs", PARAMS_TOTAL, PARAMS_ACTIVE, PARAMS_LEARNED})
# config fields that move a statistic such as params_active: with a statistic on the x axis
# they are the axis, not a reason to split the groups
STATISTIC_DRIVERS = ("width", "depth", "mlp_units", "keep_fraction", "penalty", "supermask_init_keep", "train_output_layer")


def natural_key(text: str) -> list:
    """'MLP-10' after 'MLP-2': digits compare as numbers."""
    return [float(part) if part[:1].isdigit() else part for part in re.split(r"(\d+(?:\.\d+)?)", str(text)) if part]


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
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> trials left out
    notes: list[str] = field(default_factory=list)
    ci: float = 0.95
    # health.unhealthy_cells of the points over HEALTH_CELL (label, x): flagged or unknown cells
    health: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["label", "x", "n_trials", "n_flagged", "reasons"]))
    worsening: pd.DataFrame = field(default_factory=pd.DataFrame)  # health.worsening_baselines per label
    without_flagged: ScalingAnalysis | None = None  # the same analysis without the flagged cells

    @property
    def health_cells(self) -> list[str]:
        return ["label", self.x]

    @property
    def flagged(self) -> pd.DataFrame:
        """The cells with a flagged trial (unknown-only cells are not dropped anywhere)."""
        return flagged_only(self.health) if len(self.health) else self.health

    @property
    def labels(self) -> list[str]:
        return list(self.fits["label"])

    @property
    def law_fitted(self) -> bool:
        return self.x in SIZE_AXES


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _auto_split(rows: pd.DataFrame, x: str, by: Sequence[str]) -> list[str]:
    """Config columns that vary across grid cells, so that one fit never mixes, say, two
    keep_fractions. A column that varies inside one cell (cell_id) is a searched
    hyperparameter: the best trial per cell and seed is taken instead of splitting."""
    skip = {*by, x, "seed"} | (set(STATISTIC_DRIVERS) if x not in TrialConfig.model_fields else set())
    candidates = [c for c in TrialConfig.model_fields if c in rows.columns and c not in skip]
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
            if c in METHOD_FIELDS.get(method, ()) or c not in METHOD_SPECIFIC_FIELDS:
                parts.append(f"{c}={_fmt(row[c])}")
        return ", ".join(parts)

    return points.apply(label, axis=1) if len(points) else pd.Series(dtype=str)


def chance_level(rows: pd.DataFrame) -> pd.Series:
    """1 / classes of each row's data set (NaN when unknown)."""
    if "dataset" not in rows.columns:
        return pd.Series(math.nan, index=rows.index)
    return rows["dataset"].map(lambda d: 1.0 / DATASET_INFO[d].num_classes if d in DATASET_INFO else math.nan).astype(float)


def usable_rows(trials: pd.DataFrame, x: str, metric: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The completed trials with a metric and an x value, and a count of what was left out
    and why. No trial is left out for its own accuracy: that keeps the seeds that happened to
    land high and biases the mean (a whole-cell health rule replaces it, analysis/health.py)."""
    excluded: dict[str, int] = {}
    rows = trials
    if "status" in rows.columns:
        for status, count in rows.loc[~rows["status"].isin(ANALYZED_STATUSES), "status"].value_counts().items():
            excluded[str(status)] = int(count)
        rows = rows[rows["status"].isin(ANALYZED_STATUSES)]
    missing = rows[metric].isna() | rows[x].isna()
    if missing.any():
        excluded[f"no {metric} or {x} value"] = int(missing.sum())
    return rows[~missing], excluded


def no_rows_reason(trials: pd.DataFrame, metric: str, excluded: dict[str, int]) -> str:
    reason = f"analysis: no usable trials for {metric} in the selection ({len(trials)} trials; left out: {excluded or 'none'})"
    if "val_fraction" in trials.columns and (trials["val_fraction"] == 0).all() and metric == TEST_METRIC:
        reason += f"; the sweep has no validation split (val_fraction 0), so {metric} is undefined: use --metric test_acc (final epoch)"
    return reason


def select_points(trials: pd.DataFrame, x: str, by: Sequence[str], metric: str = TEST_METRIC, select_by: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One point per (group, x, seed): the trial with the best validation accuracy there."""
    points, split, _ = _select(trials, x, by, metric, select_by)
    return points, split


def _select(trials: pd.DataFrame, x: str, by: Sequence[str], metric: str, select_by: str | None) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    require_columns(trials, [x, *by, metric, "seed"], "analysis")
    if not pd.api.types.is_numeric_dtype(trials[x]) or pd.api.types.is_bool_dtype(trials[x]):
        raise ConfigError([f"x: {x!r} is not a numeric column; numeric columns: {', '.join(c for c in trials.columns if pd.api.types.is_numeric_dtype(trials[c]) and not pd.api.types.is_bool_dtype(trials[c]))}"])
    rows, excluded = usable_rows(trials, x, metric)
    if x in METHOD_SPECIFIC_FIELDS and "method" in rows.columns:
        # a method that does not read x (dense for k) sits at its default: not a point on this axis
        rows = rows[rows["method"].map(lambda m: x in METHOD_FIELDS.get(m, ()))]
    if rows.empty:
        raise ConfigError([no_rows_reason(trials, metric, excluded) + (f"; no method in it reads {x}" if x in METHOD_SPECIFIC_FIELDS else "")])
    split = _auto_split(rows, x, by)
    keys = [*by, *split]
    select_by = select_by or selection_column(metric)
    points = (best_by_validation(rows, [*keys, x, "seed"], select_by) if select_by in rows.columns else rows.drop_duplicates([*keys, x, "seed"])).copy()
    points["label"] = _labels(points, by, split)
    columns = ["label", *keys, x, "seed", metric] + [c for c in ("trial_id", "dataset", "status", HEALTH_FLAGS, EARLY_LOSS_PEAK, DEAD_UNITS_MAX, TRAIN_ACC) if c in points.columns]
    points = points[list(dict.fromkeys(columns))]
    order = sorted(points["label"].unique(), key=lambda lab: (not lab.startswith(DENSE), natural_key(lab)))
    points["label"] = pd.Categorical(points["label"], categories=order, ordered=True)
    points = points.sort_values(["label", x, "seed"]).reset_index(drop=True)
    points["label"] = points["label"].astype(str)
    return points, split, excluded


def _default_reference(x: str, dense_x: np.ndarray) -> float:
    return 1.0 if x == "width" and np.any(np.isclose(dense_x, 1.0)) else float(np.max(dense_x))


def _match_note(fit: PowerLawFit, crossing: float, x: str, dense_acc: float) -> str:
    if not fit.ok:
        return f"no fit: {fit.refused}"
    if math.isinf(crossing):
        return f"not reached: the fitted asymptote {1 - fit.params['e_inf']:.1%} is below dense's {dense_acc:.1%}"
    if crossing > fit.x_max or crossing < fit.x_min:
        return f"extrapolated to {crossing:.3g}, outside the measured {fit.x_min:g}-{fit.x_max:g}"
    return f"reached at {x} {crossing:.3g}"


def analyze_scaling(trials: pd.DataFrame, *, x: str = "width", by: Sequence[str] = ("method",), metric: str = TEST_METRIC, select_by: str | None = None, reference_x: float | None = None, ci: float = 0.95) -> ScalingAnalysis:
    """Fit error = 1 - metric against x for every group (size axes only), and compare the
    untrained methods to dense."""
    by = list(dict.fromkeys(by))
    if x in by:
        raise ConfigError([f"by: {x!r} is the x axis; group by other columns"])
    points, split, excluded = _select(trials, x, by, metric, select_by)
    if points[x].nunique() < 2:
        others = [c for c in ("width", "depth", "keep_fraction", PARAMS_ACTIVE) if c != x and c in trials.columns and trials[c].nunique() > 1]
        hint = f" (varying: {', '.join(others)}; try --x {others[0]})" if others else ""
        raise ConfigError([f"x: every selected trial has {x} = {points[x].iloc[0]:g}; nothing to scale over{hint}"])
    keys = [*by, *split]
    notes = [f"also split by {', '.join(split)} (they vary across grid cells)"] if split else []
    if x not in SIZE_AXES:
        notes.append(f"{x} is not a size axis: means per {x} only, no power law (laws are fitted against {', '.join(sorted(SIZE_AXES))})")
    # judged on the selected trials (the recipe each point used) and on the seeds lost to divergence
    lost = lost_seeds(trials, points, keys, x)
    health = unhealthy_cells(pd.concat([points, lost], ignore_index=True) if len(lost) else points, ["label", x])
    analysis = _analyze_points(points, x, keys, split, metric, reference_x, ci, excluded, notes, health)
    if x in SIZE_AXES:
        analysis.worsening = worsening_baselines(points, x, ["label"], metric)
    flagged = analysis.flagged
    if len(flagged):
        keep = ~in_cells(points, flagged, analysis.health_cells)
        if not keep.any():
            analysis.notes.append("every cell is flagged: no analysis without the flagged cells")
        else:
            # the same question: the dense reference stays where it was, flagged or not
            same_reference = analysis.reference_x if analysis.reference_x is not None else reference_x
            analysis.without_flagged = _analyze_points(points[keep].reset_index(drop=True), x, keys, split, metric, same_reference, ci, excluded, [], health[health["n_flagged"] == 0])
    return analysis


def lost_seeds(trials: pd.DataFrame, points: pd.DataFrame, keys: list[str], x: str) -> pd.DataFrame:
    """The diverged trials of a (group, x) cell whose seed has no point there (label, x, seed,
    status): a seed the cell lost to divergence. Leaving it out silently would keep only the
    seeds that trained, so it flags its cell instead (health.unhealthy_cells counts
    'diverged'). A diverged trial beside a completed one of the same seed (a searched setting
    that diverged) lost nothing and flags nothing."""
    columns = ["label", x, "seed", "status"]
    if "status" not in trials.columns or not (trials["status"] == DIVERGED).any():
        return pd.DataFrame(columns=columns)
    lost = trials.loc[trials["status"] == DIVERGED, [*dict.fromkeys([*keys, x, "seed", "status"])]]
    cells = points[[*dict.fromkeys([*keys, x, "label"])]].drop_duplicates([*keys, x])
    lost = lost.merge(cells, on=[*dict.fromkeys([*keys, x])], how="inner")
    have = set(zip(points["label"], points[x].astype(float), points["seed"], strict=True))
    lost = lost[[(label, float(v), s) not in have for label, v, s in zip(lost["label"], lost[x], lost["seed"], strict=True)]]
    return lost.drop_duplicates(["label", x, "seed"])[columns].reset_index(drop=True)


def _analyze_points(points: pd.DataFrame, x: str, keys: list[str], split: list[str], metric: str, reference_x: float | None, ci: float, excluded: dict[str, int], notes: list[str], health: pd.DataFrame) -> ScalingAnalysis:
    """Fits and gaps of selected points (one per group, x and seed); `health`: their
    unhealthy cells (health.unhealthy_cells over label and x)."""
    notes = list(notes)
    cell_health = {(str(r["label"]), float(r[x])): r["reasons"] for _, r in flagged_only(health).iterrows()}

    fit_results: dict[str, PowerLawFit] = {}
    rows = []
    for label, group in points.groupby("label", sort=False):
        xs, errors = group[x].to_numpy(float), 1 - group[metric].to_numpy(float)
        if x in SIZE_AXES:
            fit = fit_power_law(xs, errors, x_name=x, ci=ci)
        else:
            fit = PowerLawFit(params=dict.fromkeys(PARAMS, math.nan), ci=dict.fromkeys(PARAMS, (math.nan, math.nan)), r2=math.nan, rmse=math.nan, n_points=len(xs), n_x=len(np.unique(xs)), x_min=float(xs.min()), x_max=float(xs.max()), refused=f"{x} is not a size axis")
        fit_results[label] = fit
        seeds_per_x = group.groupby(x)["seed"].nunique()
        row = {"label": label, **{k: group[k].iloc[0] for k in keys}, "n_trials": len(group), "n_x": fit.n_x, "n_seeds": group["seed"].nunique(), "seeds_min": int(seeds_per_x.min()), "seeds_max": int(seeds_per_x.max()), "x_min": fit.x_min, "x_max": fit.x_max}
        for p in PARAMS:
            row[p], (row[f"{p}_lo"], row[f"{p}_hi"]) = fit.params[p], fit.ci[p]
        row.update({"acc_inf": 1 - fit.params["e_inf"], "r2": fit.r2, "rmse": fit.rmse, "fit": "ok" if fit.ok else "refused", "reason": fit.refused or "", "flags": "; ".join(fit.warnings()), "ci_method": fit.ci_method})
        rows.append(row)
    fits = pd.DataFrame(rows)

    reference = None
    gaps = pd.DataFrame(columns=GAP_COLUMNS(keys, x))
    comparable = x not in METHOD_SPECIFIC_FIELDS and x in TrialConfig.model_fields
    if "method" in keys and (points["method"] == DENSE).any() and comparable:
        dense = points[points["method"] == DENSE]
        match_on = [k for k in keys if k != "method" and dense[k].astype(str).nunique() > 1]
        reference = float(reference_x) if reference_x is not None else _default_reference(x, dense[x].to_numpy(float))
        fits, gaps = _compare_to_dense(points, fits, fit_results, dense, match_on, keys, x, metric, reference, ci, cell_health)
        notes.append(f"dense reference: dense-trained {metric_label(metric)} at {x} = {reference:g}")
    elif not comparable:
        notes.append(f"no gaps to dense: dense does not vary along {x}")
    else:
        notes.append("no dense trials in the selection: no dense reference and no gaps")
    return ScalingAnalysis(x=x, metric=metric, keys=keys, auto_split=split, points=points, fits=fits, gaps=gaps, fit_results=fit_results, reference_x=reference, excluded=excluded, notes=notes, ci=ci, health=health)


def GAP_COLUMNS(keys: list[str], x: str) -> list[str]:  # noqa: N802 - a column list, read like a constant
    return ["label", *keys, x, "gap", "gap_lo", "gap_hi", "acc", "dense_acc", "n", "n_dense", "paired_gap", "paired_lo", "paired_hi", "n_pairs", "health"]


def _compare_to_dense(points: pd.DataFrame, fits: pd.DataFrame, fit_results: dict[str, PowerLawFit], dense: pd.DataFrame, match_on: list[str], keys: list[str], x: str, metric: str, reference: float, ci: float, cell_health: dict[tuple[str, float], str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    match_columns = {c: [] for c in ("reference_x", "dense_acc_at_reference", "match_x", "match_x_lo", "match_x_hi", "match_x_extrapolated", "match_note")}
    gap_rows = []
    for _, row in fits.iterrows():
        own = points[points["label"] == row["label"]]
        twin = dense
        for k in match_on:
            twin = twin[twin[k].astype(str) == str(row[k])]
        near = np.isclose(twin[x].to_numpy(float), reference)
        at_reference = twin[near][metric].to_numpy(float)
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
                # the dense mean's variance: seeds' spread pooled over every x dense was run at
                variance, df = pooled_variance(twin[metric].to_numpy(float), twin[x].to_numpy(float))
                variance = variance / len(at_reference) if df else 0.0
                values["match_x_lo"], values["match_x_hi"] = crossing_interval(fit, 1 - dense_acc, variance, df, ci)
        for c in match_columns:
            match_columns[c].append(values[c])
        if row["method"] != DENSE:
            gap_rows += _gaps(row, own, twin, keys, x, metric, ci, cell_health)
    fits = fits.assign(**match_columns)
    gaps = pd.DataFrame(gap_rows, columns=GAP_COLUMNS(keys, x))
    return fits, gaps


def _gaps(row: pd.Series, own: pd.DataFrame, twin: pd.DataFrame, keys: list[str], x: str, metric: str, ci: float, cell_health: dict[tuple[str, float], str]) -> list[dict]:
    """Per x: mean minus dense's mean (Welch interval), and the mean of per-seed differences
    over the seeds both have (same seed = same initial weights; paired t interval). `health`:
    the flags of either side's cell ('' when both are healthy or unknown)."""
    out = []
    twin_x, twin_values, twin_seeds, twin_labels = twin[x].to_numpy(float), twin[metric].to_numpy(float), twin["seed"].to_numpy(), twin["label"].astype(str).to_numpy()
    for value, group in own.groupby(x):
        near = np.isclose(twin_x, float(value))
        if not near.any():
            continue
        values, dense_values = group[metric].to_numpy(float), twin_values[near]
        lo, hi = welch_interval(values, dense_values, ci)
        own_means, dense_means = _seed_means(group["seed"].to_numpy(), values), _seed_means(twin_seeds[near], dense_values)
        differences = np.array([own_means[s] - dense_means[s] for s in sorted(own_means.keys() & dense_means.keys())], float)
        p_lo, p_hi = paired_interval(differences, ci)
        flags = [f"{label}: {cell_health[(label, float(value))]}" for label in dict.fromkeys([str(row["label"]), *twin_labels[near]]) if (label, float(value)) in cell_health]
        out.append({
            "label": row["label"], **{k: row[k] for k in keys}, x: float(value),
            "gap": values.mean() - dense_values.mean(), "gap_lo": lo, "gap_hi": hi,
            "acc": values.mean(), "dense_acc": dense_values.mean(), "n": len(values), "n_dense": len(dense_values),
            "paired_gap": differences.mean() if len(differences) else math.nan, "paired_lo": p_lo, "paired_hi": p_hi, "n_pairs": len(differences),
            "health": " | ".join(flags),
        })
    return out


def _seed_means(seeds: np.ndarray, values: np.ndarray) -> dict:
    """{seed: mean of its values} (several rows of one seed are averaged)."""
    sums: dict = {}
    for seed, value in zip(seeds.tolist(), values.tolist(), strict=True):
        total, count = sums.get(seed, (0.0, 0))
        sums[seed] = (total + value, count + 1)
    return {seed: total / count for seed, (total, count) in sums.items()}


def extrapolation_check(analysis: ScalingAnalysis) -> pd.DataFrame:
    """For each fitted group with >= 4 distinct x: fit without the largest x, predict the
    accuracy there, and compare with the measured mean (the law's out-of-range error)."""
    rows = []
    x, metric = analysis.x, analysis.metric
    for label, group in analysis.points.groupby("label", sort=False):
        if not analysis.fit_results[label].ok or group[x].nunique() < 4:
            continue
        largest = group[x].max()
        small = group[group[x] < largest]
        fit = fit_power_law(small[x].to_numpy(float), 1 - small[metric].to_numpy(float), x_name=x, ci=analysis.ci)
        if not fit.ok:
            continue
        predicted = 1 - float(fit.predict(largest))
        measured = float(group.loc[group[x] == largest, metric].mean())
        rows.append({"label": label, "fitted_up_to": float(small[x].max()), x: float(largest), "predicted_acc": predicted, "measured_acc": measured, "error_pp": 100 * (predicted - measured)})
    return pd.DataFrame(rows, columns=["label", "fitted_up_to", x, "predicted_acc", "measured_acc", "error_pp"])
