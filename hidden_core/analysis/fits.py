"""Saturating power-law fits with bootstrap confidence intervals.

err(x) = e_inf + a * x**(-b): the error falls with size x (width or depth) towards an
irreducible e_inf. Three parameters, so a fit needs at least three distinct x values.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

PARAMS = ("e_inf", "a", "b")
N_PARAMS = len(PARAMS)
# e_inf is an error rate; b > 5 would be a step, not a scaling law, and makes x**-b overflow
LOWER = np.array([0.0, 0.0, 1e-3])
UPPER = np.array([1.0, np.inf, 5.0])
_B_STARTS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def saturating_power_law(x: np.ndarray | float, e_inf: float, a: float, b: float) -> np.ndarray:
    return e_inf + a * np.power(x, -b)


@dataclass(frozen=True)
class PowerLawFit:
    """A fit of err(x), or a refusal (`refused` says why; the numbers are then NaN)."""

    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    r2: float
    rmse: float
    n_points: int
    n_x: int
    x_min: float
    x_max: float
    ci_level: float = 0.95
    ci_method: str = ""
    replicates: np.ndarray = field(default_factory=lambda: np.empty((0, N_PARAMS)), repr=False)
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return saturating_power_law(np.asarray(x, dtype=float), *(self.params[p] for p in PARAMS))

    def crossing(self, target_error: float) -> float:
        return error_crossing(target_error, *(self.params[p] for p in PARAMS))


def error_crossing(target_error: float, e_inf: float, a: float, b: float) -> float:
    """The x at which err(x) falls to target_error: inf if never (e_inf too high), 0 if
    the curve is below it everywhere."""
    if not np.isfinite(target_error) or target_error <= e_inf:
        return math.inf
    if a <= 0:
        return 0.0
    return float((a / (target_error - e_inf)) ** (1.0 / b))


def _jacobian(x: np.ndarray, e_inf: float, a: float, b: float) -> np.ndarray:
    power = np.power(x, -b)
    return np.column_stack([np.ones_like(x), power, -a * power * np.log(x)])


def _initial_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For fixed b the law is linear in (e_inf, a): solve that for a few b, keep the best."""
    best, best_sse = None, math.inf
    for b in _B_STARTS:
        design = np.column_stack([np.ones_like(x), np.power(x, -b)])
        (e_inf, a), *_ = np.linalg.lstsq(design, y, rcond=None)
        guess = np.clip([e_inf, a, b], LOWER, np.minimum(UPPER, [1.0, 1e6, 5.0]))
        sse = float(np.sum((saturating_power_law(x, *guess) - y) ** 2))
        if sse < best_sse:
            best, best_sse = guess, sse
    return _inside_bounds(best)


def _inside_bounds(p: np.ndarray) -> np.ndarray:
    span = np.where(np.isfinite(UPPER), UPPER - LOWER, 1.0)
    return np.clip(p, LOWER + 1e-9 * span, np.where(np.isfinite(UPPER), UPPER - 1e-9 * span, np.inf))


def _least_squares(x: np.ndarray, y: np.ndarray, p0: np.ndarray, *, bounded: bool = True) -> np.ndarray | None:
    options = {"bounds": (LOWER, UPPER), "max_nfev": 10_000} if bounded else {"maxfev": 10_000}
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(saturating_power_law, x, y, p0=p0, jac=_jacobian, **options)
    except (RuntimeError, ValueError):
        return None
    return popt if np.all(np.isfinite(popt)) else None


def _refit(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """Unbounded Levenberg-Marquardt from the point estimate is ~8x faster than the bounded
    solver and almost always stays inside the bounds; when it leaves them, redo bounded."""
    popt = _least_squares(x, y, start, bounded=False)
    if popt is not None and np.all(popt >= LOWER) and np.all(popt <= UPPER):
        return popt
    return _least_squares(x, y, start)


def refusal(x: np.ndarray, x_name: str = "x") -> str | None:
    distinct = np.unique(x[np.isfinite(x)])
    if len(distinct) < N_PARAMS:
        shown = ", ".join(f"{v:g}" for v in distinct) or "none"
        return f"only {len(distinct)} distinct {x_name} value(s) ({shown}); the 3-parameter law needs at least {N_PARAMS}"
    if np.any(distinct <= 0):
        return f"{x_name} must be > 0 for a power law"
    return None


def fit_power_law(x: np.ndarray, y: np.ndarray, *, x_name: str = "x", n_boot: int = 400, ci: float = 0.95, seed: int = 0) -> PowerLawFit:
    """Fit err(x) to every (x, y) point (one per seed), with percentile bootstrap CIs.

    The bootstrap resamples seeds: each point becomes its x's mean plus a seed deviation
    (a seed's result minus its x's mean) drawn with replacement from all x. Pooling the
    deviations over x matters with the 2-3 seeds a sweep usually has: resampling seeds
    only within each x (or whole seeds) leaves a handful of distinct replicates and CIs
    that cover the truth far less often than stated. With one point per x it resamples
    the fit's residuals instead. Measured on 300 synthetic data sets with 3 seeds and 7
    widths, nominal 95% intervals covered each true parameter about 90% of the time
    (percentile intervals from few seeds run a little narrow); read them as approximate.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n_x = len(np.unique(x))
    base = dict(n_points=len(x), n_x=n_x, x_min=float(x.min()) if len(x) else math.nan, x_max=float(x.max()) if len(x) else math.nan, ci_level=ci)
    reason = refusal(x, x_name)
    popt = None if reason else _least_squares(x, y, _initial_guess(x, y))
    if popt is None:
        nan = dict.fromkeys(PARAMS, math.nan)
        return PowerLawFit(params=nan, ci=dict.fromkeys(PARAMS, (math.nan, math.nan)), r2=math.nan, rmse=math.nan, refused=reason or "the least-squares fit did not converge", **base)
    fitted = saturating_power_law(x, *popt)
    residuals = y - fitted
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residuals**2)) / total if total > 0 else math.nan
    rmse = float(np.sqrt(np.mean(residuals**2)))
    replicates, method = _bootstrap(x, y, fitted, residuals, popt, n_boot, seed)
    alpha = (1 - ci) / 2
    if len(replicates):
        lo, hi = np.quantile(replicates, [alpha, 1 - alpha], axis=0)
    else:
        lo = hi = np.full(N_PARAMS, math.nan)
    return PowerLawFit(
        params=dict(zip(PARAMS, map(float, popt), strict=True)),
        ci={p: (float(lo[i]), float(hi[i])) for i, p in enumerate(PARAMS)},
        r2=r2, rmse=rmse, ci_method=method, replicates=replicates, **base,
    )


def _bootstrap(x: np.ndarray, y: np.ndarray, fitted: np.ndarray, residuals: np.ndarray, popt: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(seed)
    centers = np.empty_like(y)
    deviations = np.empty_like(y)
    repeated = True
    for value in np.unique(x):
        group = x == value
        n = int(group.sum())
        repeated &= n >= 2
        centers[group] = y[group].mean()
        # sqrt(n/(n-1)): resampled deviations then have the unbiased seed variance
        deviations[group] = (y[group] - centers[group]) * math.sqrt(n / (n - 1)) if n >= 2 else 0.0
    if repeated:
        method = "bootstrap over seeds (deviations from each x's mean, pooled over x)"
    elif len(y) > N_PARAMS:
        method = "residual bootstrap (one point per x)"
        centers, deviations = fitted, residuals * math.sqrt(len(y) / (len(y) - N_PARAMS))
    else:
        return np.empty((0, N_PARAMS)), "none (no degrees of freedom left)"
    samples = centers + deviations[rng.integers(0, len(y), size=(n_boot, len(y)))]
    start = _inside_bounds(popt)
    fits = [_refit(x, s, start) for s in samples]
    return np.array([f for f in fits if f is not None]).reshape(-1, N_PARAMS), method
