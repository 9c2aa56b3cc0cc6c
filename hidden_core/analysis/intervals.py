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


def crossing_intervals(params: np.ndarray, covariance: np.ndarray, df_fit: int, target_error: np.ndarray, target_variance: np.ndarray, target_df: np.ndarray, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized crossing_interval: params (R, 3), covariance (R, 3, 3), targets (R,).
    NaN where the crossing is not a finite positive size."""
    e_inf, a, b = np.asarray(params, float).T
    target_error, target_variance = np.asarray(target_error, float), np.asarray(target_variance, float)
    target_df = np.broadcast_to(np.asarray(target_df, float), target_error.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gap = target_error - e_inf
        log_x = (np.log(a) - np.log(gap)) / b
        gradient = np.stack([1 / (b * gap), 1 / (a * b), -log_x / b], axis=-1)
        v_fit = np.einsum("ri,rij,rj->r", gradient, covariance, gradient)
        v_target = np.where(target_variance > 0, (1 / (b * gap)) ** 2 * target_variance, 0.0)
        total = v_fit + v_target
        parts = v_fit**2 / df_fit + np.where((v_target > 0) & (target_df > 0), v_target**2 / np.where(target_df > 0, target_df, 1.0), 0.0)
        df = np.where(parts > 0, total**2 / parts, df_fit)
        half = student_t.ppf(0.5 + ci / 2, df) * np.sqrt(total)
        valid = (gap > 0) & (a > 0) & np.isfinite(log_x) & np.isfinite(half)
    return np.where(valid, np.exp(log_x - half), np.nan), np.where(valid, np.exp(log_x + half), np.nan)


def crossing_interval(fit: PowerLawFit, target_error: float, target_variance: float, target_df: float, ci: float = 0.95) -> tuple[float, float]:
    """Interval for the x at which the fitted law reaches target_error, when the target is
    itself a mean with variance target_variance (df target_df; 0 variance = known).

    Delta method on log x_c = (log a - log(target - e_inf)) / b with the fit's covariance,
    plus the target's variance; Welch-Satterthwaite df for the sum."""
    if not fit.ok or not np.all(np.isfinite(fit.covariance)):
        return NAN_PAIR
    params = np.array([[fit.params[p] for p in PARAMS]])
    lo, hi = crossing_intervals(params, fit.covariance[None], fit.n_points - len(PARAMS), np.array([target_error]), np.array([target_variance]), np.array([target_df]), ci)
    return float(lo[0]), float(hi[0])
