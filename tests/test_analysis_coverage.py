"""Coverage study: how often the analysis's nominal 95% intervals hold the truth.

Synthetic data sets follow known saturating power laws at 7 widths with Gaussian seed
noise, 3 or 5 seeds per width; each quantity's interval is computed by the analysis's own
code (batched over data sets) and checked against the truth. With N data sets the Monte
Carlo standard error of a measured coverage near 95% is sqrt(0.95 * 0.05 / N): 0.49
points for N = 2000, so a bound of 93% sits about 4 standard errors under nominal. The RNG
seed is fixed, so the numbers are reproducible; `pytest -s` prints them.
"""

from __future__ import annotations

import numpy as np
import pytest

from hidden_core.analysis.fits import (
    PARAMS,
    error_crossings,
    fit_many,
    fit_power_law,
    saturating_power_law,
    t_intervals,
)
from hidden_core.analysis.intervals import (
    crossing_intervals,
    paired_interval,
    pooled_variance,
    welch_interval,
)

WIDTHS = np.array([0.25, 0.5, 1, 2, 4, 8, 16])
N_SETS = 2000
FLOOR = 0.93
METHOD_LAW = (0.06, 0.20, 0.60)  # edge_popup-like
DENSE_LAW = (0.05, 0.10, 0.80)
SCENARIOS = [(METHOD_LAW, 3, 0.01), (METHOD_LAW, 3, 0.02), (METHOD_LAW, 5, 0.01), ((0.30, 0.15, 0.40), 3, 0.01), ((0.10, 0.18, 0.50), 5, 0.005)]


def _report(what: str, coverage: np.ndarray | float) -> None:
    se = np.sqrt(0.95 * 0.05 / N_SETS)
    print(f"coverage of nominal 95% {what}: {np.round(coverage, 3)} (Monte Carlo s.e. {se:.4f})")


@pytest.mark.parametrize(("law", "seeds", "noise"), SCENARIOS)
def test_parameter_intervals_cover_the_true_law(law, seeds, noise):
    rng = np.random.default_rng(1234)
    x = np.repeat(WIDTHS, seeds)
    y = saturating_power_law(x, *law) + rng.normal(0, noise, (N_SETS, len(x)))
    params, sse = fit_many(x, y)
    lo, hi, _ = t_intervals(x, params, sse)
    coverage = ((lo <= law) & (np.array(law) <= hi)).mean(axis=0)
    _report(f"{'/'.join(PARAMS)} ({seeds} seeds, noise {noise})", coverage)
    assert (coverage >= FLOOR).all(), dict(zip(PARAMS, coverage, strict=True))
    assert (coverage <= 0.985).all(), "intervals far wider than they need to be"


def test_batched_fit_is_the_single_fit_and_the_least_squares_optimum():
    rng = np.random.default_rng(7)
    x = np.repeat(WIDTHS, 3)
    y = saturating_power_law(x, *METHOD_LAW) + rng.normal(0, 0.01, (5, len(x)))
    params, sse = fit_many(x, y)
    for row, p, s in zip(y, params, sse, strict=True):
        fit = fit_power_law(x, row)
        assert [fit.params[k] for k in PARAMS] == pytest.approx(p)
        assert np.sum((saturating_power_law(x, *p) - row) ** 2) == pytest.approx(s)
        for nudge in np.eye(3) * 1e-3:  # any small step away makes the fit worse
            for sign in (1, -1):
                assert np.sum((saturating_power_law(x, *(p + sign * nudge)) - row) ** 2) >= s - 1e-12


@pytest.mark.parametrize("seeds", [3, 5])
def test_crossing_width_interval_covers_the_true_crossing(seeds):
    rng = np.random.default_rng(99)
    noise = 0.01
    x = np.repeat(WIDTHS, seeds)
    y = saturating_power_law(x, *METHOD_LAW) + rng.normal(0, noise, (N_SETS, len(x)))
    dense = saturating_power_law(x, *DENSE_LAW) + rng.normal(0, noise, (N_SETS, len(x)))
    target_true = saturating_power_law(1.0, *DENSE_LAW)
    truth = float(error_crossings(np.array([target_true]), np.array([METHOD_LAW]))[0])
    params, sse = fit_many(x, y)
    _, _, covariance = t_intervals(x, params, sse)
    at_one = dense[:, x == 1.0]
    variance = np.empty(N_SETS)
    df = 0
    for i in range(N_SETS):  # the analysis's own estimate: seed spread pooled over widths
        variance[i], df = pooled_variance(dense[i], x)
    lo, hi = crossing_intervals(params, covariance, len(x) - 3, at_one.mean(axis=1), variance / seeds, df)
    finite = np.isfinite(lo)
    coverage = ((lo <= truth) & (truth <= hi))[finite].mean()
    _report(f"crossing width (truth {truth:.2f}, {seeds} seeds; {finite.mean():.1%} finite)", coverage)
    assert finite.mean() > 0.99 and coverage >= FLOOR


@pytest.mark.parametrize("seeds", [3, 5])
def test_gap_intervals_cover_the_true_gap_unpaired_and_paired(seeds):
    rng = np.random.default_rng(5)
    true_gap = -0.03
    # a seed's initial weights move both runs: shared seed effect plus each run's own noise
    seed_effect = rng.normal(0, 0.01, (N_SETS, seeds))
    method = 0.90 + true_gap + seed_effect + rng.normal(0, 0.006, (N_SETS, seeds))
    dense = 0.90 + seed_effect + rng.normal(0, 0.003, (N_SETS, seeds))
    unpaired = np.array([welch_interval(m, d) for m, d in zip(method, dense, strict=True)])
    paired = np.array([paired_interval(m - d) for m, d in zip(method, dense, strict=True)])
    cover_unpaired = ((unpaired[:, 0] <= true_gap) & (true_gap <= unpaired[:, 1])).mean()
    cover_paired = ((paired[:, 0] <= true_gap) & (true_gap <= paired[:, 1])).mean()
    _report(f"gap, unpaired Welch / paired t ({seeds} seeds)", np.array([cover_unpaired, cover_paired]))
    assert cover_unpaired >= FLOOR and cover_paired >= FLOOR
    # runs that share nothing: Welch alone is the right interval, and close to nominal
    independent = np.array([welch_interval(m, d) for m, d in zip(method[:500], dense[::-1][:500], strict=True)])
    cover_independent = ((independent[:, 0] <= true_gap) & (true_gap <= independent[:, 1])).mean()
    _report(f"gap, Welch on independent runs ({seeds} seeds, 500 sets, s.e. ~0.01)", cover_independent)
    assert 0.92 <= cover_independent <= 0.99
    width = lambda iv: np.median(iv[:, 1] - iv[:, 0])  # noqa: E731
    assert width(paired) < width(unpaired), "pairing on the shared seed removes its variance"
