"""Scaling-law fits, the dense comparison, plots and the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from synthetic_store import TRUE_LAWS, grid, make_trial, write_synthetic_sweep

from hidden_core.analysis import (
    analyze_scaling,
    fit_power_law,
    plot_accuracy_vs_keep_fraction,
    plot_accuracy_vs_x,
    plot_gap_vs_x,
    save_figure,
    write_scaling_report,
)
from hidden_core.analysis.fits import PARAMS, error_crossing, saturating_power_law
from hidden_core.analysis.plots import METHOD_PALETTE, OKABE_ITO, method_color
from hidden_core.config import METHODS, ConfigError
from hidden_core.store import ResultStore

TRUE = {"e_inf": 0.06, "a": 0.2, "b": 0.6}
WIDTHS = np.array([0.25, 0.5, 1, 2, 4, 8, 16])


def _noisy_law(seed: int, seeds: int = 3, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    x = np.repeat(WIDTHS, seeds)
    return x, saturating_power_law(x, *TRUE.values()) + rng.normal(0, noise, len(x))


def test_fit_recovers_a_known_law_and_its_intervals_cover_the_truth():
    x, y = _noisy_law(seed=1)
    fit = fit_power_law(x, y, x_name="width")
    assert fit.ok and fit.r2 > 0.98 and fit.rmse < 0.02
    assert fit.ci_method.startswith("Student-t")
    for p in PARAMS:
        lo, hi = fit.ci[p]
        assert lo <= TRUE[p] <= hi, f"{p}: {TRUE[p]} not in [{lo}, {hi}]"
        assert lo <= fit.params[p] <= hi


def test_fit_refuses_fewer_distinct_x_than_parameters():
    x = np.repeat([1.0, 2.0], 3)
    fit = fit_power_law(x, 0.1 + 0.2 / x, x_name="width")
    assert not fit.ok
    assert "only 2 distinct width value(s)" in fit.refused and "at least 3" in fit.refused
    assert all(math.isnan(v) for v in fit.params.values())


def test_one_seed_per_x_still_gets_intervals_from_the_residuals():
    x, y = _noisy_law(seed=3, seeds=1, noise=0.005)
    fit = fit_power_law(x, y)
    assert fit.ok and all(fit.ci[p][0] < fit.params[p] < fit.ci[p][1] for p in PARAMS)


def test_error_crossing():
    assert error_crossing(0.16, 0.06, 0.2, 0.6) == pytest.approx((0.2 / 0.1) ** (1 / 0.6))
    assert error_crossing(0.05, 0.06, 0.2, 0.6) == math.inf
    assert error_crossing(0.10, 0.06, 0.0, 0.6) == 0.0


@pytest.fixture(scope="module")
def trials(tmp_path_factory) -> pd.DataFrame:
    store = ResultStore(tmp_path_factory.mktemp("store"))
    configs = grid(methods=("dense", "edge_popup", "random_features"), widths=(0.25, 0.5, 1, 2, 4, 8, 16), keep_fractions=(0.3, 0.5))
    write_synthetic_sweep(store, "s", configs, noise=0.005)
    return store.load_trials("s")


@pytest.fixture(scope="module")
def analysis(trials):
    return analyze_scaling(trials, x="width", by=["method"])


def test_analysis_splits_by_varying_axes_and_labels_groups(analysis):
    assert analysis.auto_split == ["keep_fraction"]
    assert analysis.labels == ["dense", "edge_popup, keep_fraction=0.3", "edge_popup, keep_fraction=0.5", "random_features"]
    assert (analysis.fits["fit"] == "ok").all()
    assert analysis.points.groupby("label").size().tolist() == [21, 21, 21, 21]


def test_width_that_matches_dense_agrees_with_the_true_law(analysis):
    fits = analysis.fits.set_index("label")
    e_dense, a_dense, b_dense = TRUE_LAWS["dense"]
    e_ep, a_ep, b_ep = TRUE_LAWS["edge_popup"]
    dense_error_at_1 = e_dense + a_dense
    truth = error_crossing(dense_error_at_1, e_ep, a_ep, b_ep)
    row = fits.loc["edge_popup, keep_fraction=0.5"]
    assert row["match_x"] == pytest.approx(truth, rel=0.15)
    assert row["match_x_lo"] < row["match_x"] < row["match_x_hi"] < 2 * truth
    assert row["match_note"].startswith("reached at width")
    assert fits.loc["random_features", "match_note"].startswith("not reached")
    assert math.isnan(fits.loc["random_features", "match_x"])
    assert fits.loc["dense", "match_note"] == "reference"


def test_gap_to_dense_at_each_measured_width(analysis):
    gaps = analysis.gaps
    assert len(gaps) == 3 * 7
    assert (gaps["gap"] < 0).all() and (gaps["gap_lo"] <= gaps["gap"]).all() and (gaps["gap"] <= gaps["gap_hi"]).all()
    ep = gaps[gaps["label"] == "edge_popup, keep_fraction=0.5"].set_index("width")
    assert ep.loc[16.0, "gap"] > ep.loc[0.25, "gap"], "the gap closes with width"


def test_searched_hyperparameters_keep_the_best_validation_trial_per_seed():
    rng = np.random.default_rng(0)
    rows = []
    for width in (1.0, 2.0, 4.0):
        for seed in (0, 1):
            for lr, bump in ((0.1, 0.0), (0.01, 0.05)):
                row, _ = make_trial({"method": "dense", "width": width, "seed": seed, "lr": lr}, noise=0.0, rng=rng, index=0)
                row["cell_id"] = f"cell-{width}"  # lr is searched: it varies inside a cell
                row["val_acc"] += bump
                rows.append(row)
    result = analyze_scaling(pd.DataFrame(rows))
    assert result.auto_split == []
    assert len(result.points) == 6


def test_bad_analysis_input_raises_config_error(trials):
    with pytest.raises(ConfigError, match="unknown column 'colour'.*available columns"):
        analyze_scaling(trials, by=["colour"])
    with pytest.raises(ConfigError, match="no usable trials.*failed"):
        analyze_scaling(trials.assign(status="failed"))
    with pytest.raises(ConfigError, match="nothing to scale over"):
        analyze_scaling(trials, x="depth")


def test_accuracy_plot_has_one_mean_line_and_one_fit_per_group(analysis, tmp_path):
    fig = plot_accuracy_vs_x(analysis)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert [lab for lab in labels if not lab.startswith("_")] == [f"{lab} (n=3)" for lab in analysis.labels] + ["dense at width 1"]
    assert sum(lab.startswith("_fit ") for lab in labels) == 4
    fit_lines = [line for line in ax.get_lines() if line.get_label().startswith("_fit ")]
    assert min(line.get_zorder() for line in fit_lines) > max(line.get_zorder() for line in ax.get_lines() if "(n=" in line.get_label()), "fits drawn on top"
    assert ax.get_xscale() == "log" and "width" in ax.get_xlabel() and "%" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:4] == [f"{lab} (n=3)" for lab in analysis.labels] and "fitted law" in legend
    assert ax.get_lines()[labels.index("dense (n=3)")].get_color() == "#000000"
    paths = save_figure(fig, tmp_path, "accuracy_vs_width")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 10_000
    assert b"<svg" in paths[1].read_bytes()[:500]


def test_gap_plot_has_one_series_per_untrained_group(analysis):
    ax = plot_gap_vs_x(analysis).axes[0]
    series = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in series] == [f"{lab} (n=3)" for lab in analysis.labels[1:]]
    assert ax.get_xscale() == "log" and "percentage points" in ax.get_ylabel()


def test_keep_fraction_plot_draws_one_line_per_model(tmp_path):
    store = ResultStore(tmp_path)
    write_synthetic_sweep(store, "k", grid(methods=("dense", "edge_popup"), widths=(1,), depths=(1, 3), keep_fractions=(0.1, 0.3, 0.5, 0.7), seeds=(0, 1)))
    trials = store.load_trials("k")
    ax = plot_accuracy_vs_keep_fraction(trials).axes[0]
    series = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in series] == ["MLP-1 (n=2)", "MLP-3 (n=2)"]
    assert [len(c.lines[0].get_xdata()) for c in series] == [4, 4]
    assert sorted(line.get_label() for line in ax.get_lines() if "dense" in line.get_label()) == ["MLP-1 dense (n=2)", "MLP-3 dense (n=2)"]
    assert plot_accuracy_vs_keep_fraction(trials[trials["keep_fraction"] == 0.5]) is None


def test_palette_is_okabe_ito_and_follows_the_method_catalog():
    assert [method_color(m) for m in METHODS] == list(METHOD_PALETTE[: len(METHODS)])
    # grey for random_features, then Paul Tol's muted scheme (its wine first)
    tol_muted = {"#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"}
    assert set(METHOD_PALETTE) - set(OKABE_ITO) <= {"#999999"} | tol_muted
    assert len(set(METHOD_PALETTE)) == len(METHOD_PALETTE)


def test_a_method_beyond_the_palette_gets_its_own_colour():
    from hidden_core.analysis.plots import _extra_color

    extra = [_extra_color(i) for i in range(12)]
    assert len(set(extra) | set(METHOD_PALETTE)) == len(extra) + len(METHOD_PALETTE)


def test_report_embeds_plots_and_tables(analysis, trials, tmp_path):
    written = write_scaling_report(analysis, tmp_path / "out", sweep="s", trials=trials, selection="width > 0")
    assert {"fits.csv", "gaps.csv", "report.md", "accuracy_vs_width.png", "accuracy_vs_width.svg", "gap_vs_width.png", "accuracy_vs_keep_fraction.png"} <= set(written)
    report = written["report.md"].read_text()
    for png in (p for p in written if p.endswith(".png")):
        assert f"]({png})" in report
    assert "| edge_popup, keep_fraction=0.5" in report and "reached at width" in report and "`width > 0`" in report
    fits = pd.read_csv(written["fits.csv"])
    assert list(fits["label"]) == analysis.labels
    assert {"e_inf", "e_inf_lo", "e_inf_hi", "a", "b_hi", "r2", "rmse", "match_x", "match_x_lo", "match_x_hi", "match_note"} <= set(fits.columns)
