"""Confidence intervals for the derived quantities: differences of means (unpaired and
paired over seeds) and the size at which a fitted law reaches a target error. Their
measured coverage is in tests/test_analysis_coverage.py.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import t as student_t

from hidden_core.analysis.fits import PARAMS, PowerLawFit

NAN_PAIR = (math.nan, math.nan)


def welch_interval(values: np.ndarray, reference: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Interval for mean(values) - mean(reference), unequal variances (Welch-Satterthwaite).
    NaN when either side has fewer than 2 seeds (no variance to go on)."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    n1, n2 = len(values), len(reference)
    if n1 < 2 or n2 < 2:
        return NAN_PAIR
    v1, v2 = values.var(ddof=1) / n1, reference.var(ddof=1) / n2
    diff = values.mean() - reference.mean()
    total = v1 + v2
    if total == 0:
        return diff, diff
    df = total**2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    half = student_t.ppf(0.5 + ci / 2, df) * math.sqrt(total)
    return diff - half, diff + half


def paired_interval(differences: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of per-seed differences (n - 1 df)."""
    d = np.asarray(differences, float)
    if len(d) < 2:
        return NAN_PAIR
    half = student_t.ppf(0.5 + ci / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean() - half, d.mean() + half


def pooled_variance(values: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """Within-group variance pooled over groups (e.g. seeds at each width) and its df."""
    values, groups = np.asarray(values, float), np.asarray(groups)
    sum_squares, df = 0.0, 0
    for g in np.unique(groups):
        v = values[groups == g]
        if len(v) >= 2:
            sum_squares += float(np.sum((v - v.mean()) ** 2))
            df += len(v) - 1
    return (sum_squares / df if df else math.nan), df


def crossing_interval(fit: PowerLawFit, target_error: float, target_variance: float, target_df: float, ci: float = 0.95) -> tuple[float, float]:
    """Interval for the x at which the fitted law reaches target_error, when the target is
    itself a mean with variance target_variance (df target_df; 0 variance = known).

    Delta method on log x_c = (log a - log(target - e_inf)) / b with the fit's covariance,
    plus the target's variance; Welch-Satterthwaite df for the sum."""
    if not fit.ok or not np.all(np.isfinite(fit.covariance)):
        return NAN_PAIR
    e_inf, a, b = (fit.params[p] for p in PARAMS)
    crossing = fit.crossing(target_error)
    if not (0 < crossing < math.inf):
        return NAN_PAIR
    log_x = math.log(crossing)
    gradient = np.array([1 / (b * (target_error - e_inf)), 1 / (a * b), -log_x / b])
    v_fit = float(gradient @ fit.covariance @ gradient)
    v_target = (1 / (b * (target_error - e_inf))) ** 2 * target_variance if target_variance > 0 else 0.0
    total = v_fit + v_target
    df_fit = fit.n_points - len(PARAMS)
    parts = v_fit**2 / df_fit + (v_target**2 / target_df if v_target > 0 and target_df > 0 else 0.0)
    df = total**2 / parts if parts > 0 else df_fit
    half = student_t.ppf(0.5 + ci / 2, df) * math.sqrt(total)
    return math.exp(log_x - half), math.exp(log_x + half)
