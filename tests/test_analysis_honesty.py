"""The analysis says what it measured and how far to trust it: one metric, exclusions
counted, flat and weak fits flagged, extrapolations named, paired gaps, any axis, curves,
a report that says what was run, and `results best` counting every seed."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from synthetic_store import grid, make_trial, write_synthetic_sweep

from hidden_core.analysis import (
    analyze_scaling,
    best_per_group,
    extrapolation_check,
    fit_power_law,
    write_scaling_report,
)
from hidden_core.analysis.curves import learning_curves, plot_learning_curves
from hidden_core.analysis.metrics import TEST_METRIC
from hidden_core.analysis.report import with_ci
from hidden_core.config import ConfigError
from hidden_core.store import ResultStore


def _frame(configs, *, noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame([make_trial(c, noise=noise, rng=rng, index=i)[0] for i, c in enumerate(configs)])


@pytest.fixture(scope="module")
def trials() -> pd.DataFrame:
    return _frame(grid(methods=("dense", "edge_popup", "bn_only"), widths=(0.25, 0.5, 1, 2, 4, 8)))


def test_default_metric_is_test_accuracy_at_the_best_validation_epoch(trials):
    frame = trials.assign(test_acc=0.5)  # the final epoch's number must not leak in
    analysis = analyze_scaling(frame)
    assert analysis.metric == TEST_METRIC == "test_acc_at_best_val"
    by_id = frame.set_index("trial_id")[TEST_METRIC]
    assert analysis.points[TEST_METRIC].to_numpy() == pytest.approx(by_id.loc[analysis.points["trial_id"]].to_numpy())
    assert (analysis.points[TEST_METRIC] != 0.5).all()
    final = analyze_scaling(frame, metric="test_acc")
    assert final.metric == "test_acc" and final.fits["fit"].eq("refused").all()  # all 0.5: flat


def test_diverged_trials_are_left_out_and_counted_and_no_trial_for_its_own_accuracy(trials):
    frame = trials.copy()
    ep = frame.index[frame["method"] == "edge_popup"]
    frame.loc[ep[0], ["status", TEST_METRIC]] = ["diverged", 0.99]
    frame.loc[ep[1], TEST_METRIC] = 0.105  # 10 classes: chance is 0.1; it stays (issue 20: censoring by outcome biases)
    clean = analyze_scaling(trials.drop(index=ep[:1]))
    dirty = analyze_scaling(frame)
    assert dirty.excluded == {"diverged": 1}
    assert frame.loc[ep[1], "trial_id"] in set(dirty.points["trial_id"])
    assert dirty.fits.set_index("label").loc["edge_popup", "e_inf"] != pytest.approx(clean.fits.set_index("label").loc["edge_popup", "e_inf"])
    without_both = analyze_scaling(trials.drop(index=ep[:2])).fits.set_index("label").loc["edge_popup", "e_inf"]
    assert analyze_scaling(frame.drop(index=ep[1])).fits.set_index("label").loc["edge_popup", "e_inf"] == pytest.approx(without_both)


def test_flat_group_gets_no_law_and_says_so():
    x = np.repeat([1.0, 2.0, 4.0, 8.0], 3)
    fit = fit_power_law(x, np.full(len(x), 0.2), x_name="width")
    assert not fit.ok and fit.refused.startswith("flat") and math.isnan(fit.r2)


def test_weak_fit_and_parameters_at_bounds_are_flagged():
    rng = np.random.default_rng(0)
    x = np.repeat([1.0, 2.0, 4.0, 8.0, 16.0], 3)
    noisy = fit_power_law(x, 0.2 + rng.normal(0, 0.05, len(x)))
    assert any(w.startswith("weak fit (R^2") for w in noisy.warnings())
    step = fit_power_law(x, np.where(x < 2, 0.5, 0.1) + rng.normal(0, 1e-4, len(x)))
    assert "b at its bound 5" in step.warnings()


def test_crossing_outside_the_measured_range_is_called_an_extrapolation(trials):
    fits = analyze_scaling(trials).fits.set_index("label")
    note = fits.loc["bn_only", "match_note"]
    assert note.startswith("not reached") or note.startswith("extrapolated to"), note
    # edge_popup reaches dense-at-width-1 inside 0.25-8: a measurement, not an extrapolation
    assert fits.loc["edge_popup", "match_note"].startswith("reached at width")
    narrow = analyze_scaling(trials[trials["width"] <= 2]).fits.set_index("label")
    assert narrow.loc["edge_popup", "match_note"].startswith("extrapolated to") and "outside the measured 0.25-2" in narrow.loc["edge_popup", "match_note"]
    assert math.isnan(narrow.loc["edge_popup", "match_x"])


def test_intervals_print_with_sensible_digits():
    assert with_ci(0.131, 1.22e-14, 0.2634) == "0.13 [0.00, 0.26]"
    assert with_ci(3.2304, 2.911, 3.6) == "3.23 [2.91, 3.60]"
    assert with_ci(-0.0312, -0.0356, -0.0268, scale=100) == "-3.12 [-3.56, -2.68]"
    assert with_ci(math.inf, math.nan, math.nan) == "never"


def test_paired_gaps_sit_beside_unpaired_ones(trials):
    gaps = analyze_scaling(trials).gaps
    assert {"paired_gap", "paired_lo", "paired_hi", "n_pairs"} <= set(gaps.columns)
    assert (gaps["n_pairs"] == 3).all()
    # with every seed paired, the mean paired difference is the difference of means
    assert gaps["paired_gap"].to_numpy() == pytest.approx(gaps["gap"].to_numpy())
    assert ((gaps["paired_lo"] <= gaps["paired_gap"]) & (gaps["paired_gap"] <= gaps["paired_hi"])).all()


def test_any_numeric_axis_and_non_size_axes_get_no_law():
    frame = _frame(grid(methods=("dense", "edge_popup"), widths=(1, 2, 4, 8), depths=(1, 2, 3)))
    joint = analyze_scaling(frame, x="params_active")  # width and depth move it: not split
    assert joint.auto_split == [] and joint.fits.set_index("label").loc["edge_popup", "n_x"] >= 8
    assert joint.law_fitted and joint.gaps.empty and any("dense does not vary" in n for n in joint.notes)
    k = _frame(grid(methods=("dense", "edge_popup"), widths=(1,), keep_fractions=(0.1, 0.3, 0.5, 0.7)))
    by_k = analyze_scaling(k, x="keep_fraction")
    assert not by_k.law_fitted and (by_k.fits["reason"] == "keep_fraction is not a size axis").all()
    bn = analyze_scaling(_frame(grid(methods=("dense", "bn_only"), widths=(1, 2, 4, 8))), x="disabled_features")
    assert bn.labels == ["bn_only"] and bn.points["disabled_features"].nunique() == 4 and not bn.law_fitted
    with pytest.raises(ConfigError, match="'method' is not a numeric column"):
        analyze_scaling(frame, x="method", by=["model"])


def test_joint_law_extrapolation_check_predicts_the_largest_size():
    frame = _frame(grid(methods=("edge_popup",), widths=(0.25, 0.5, 1, 2, 4, 8, 16), depths=(2,)), noise=0.002)
    check = extrapolation_check(analyze_scaling(frame))
    row = check.set_index("label").loc["edge_popup"]
    assert row["fitted_up_to"] == 8 and row["width"] == 16
    assert abs(row["error_pp"]) < 1.0, "the true law extrapolates; the fit should too"


def test_learning_curves_from_the_epochs_table(tmp_path):
    store = ResultStore(tmp_path)
    write_synthetic_sweep(store, "c", grid(methods=("dense", "edge_popup"), widths=(1, 2)), epochs=4)
    trials, epochs = store.load_trials("c"), store.load_epochs("c")
    curves = learning_curves(trials, epochs, ["method"], "val_acc")
    assert sorted(curves["label"].unique()) == ["dense, width=1", "dense, width=2", "edge_popup, width=1", "edge_popup, width=2"]
    assert (curves["count"] == 3).all() and curves["epoch"].max() == 4
    one = curves[(curves["label"] == "dense, width=1") & (curves["epoch"] == 4)]["mean"].iloc[0]
    ids = trials[(trials["method"] == "dense") & (trials["width"] == 1)]["trial_id"]
    assert one == pytest.approx(epochs[epochs["trial_id"].isin(ids) & (epochs["epoch"] == 4)]["val_acc"].mean())
    ax = plot_learning_curves(curves, "val_acc").axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "dense, width=1 (n=3)"
    out = subprocess.run([sys.executable, "-m", "hidden_core.cli", "analyze", "curves", "c", "--results", str(tmp_path), "--metric", "val_acc"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "c" / "analysis" / "curves" / "curves_val_acc.png").exists()


def test_report_says_what_was_run(trials, tmp_path):
    frame = trials.copy()
    frame.loc[frame.index[frame["method"] == "edge_popup"][0], "status"] = "diverged"
    analysis = analyze_scaling(frame)
    report = write_scaling_report(analysis, tmp_path, sweep="s", trials=frame, selection="width > 0", store="/data/results")["report.md"].read_text()
    for text in ("test accuracy at the best-validation epoch", "`test_acc_at_best_val`", "best_val_acc", "1 diverged", "## What was run",
                 "Varies: method = bn_only, dense, edge_popup; width = 0.25, 0.5, 1, 2, 4, 8", "dataset = mnist1d", "epochs = 3",
                 "Seeds per group: 3", "Commit of the runs: 000000000000", "`/data/results`", "94-96%", "paired gap", "*Test accuracy"):
        assert text in report, text


def test_plot_legend_is_off_the_data_and_sorted_naturally(tmp_path):
    from hidden_core.analysis import plot_accuracy_vs_x

    frame = _frame(grid(methods=("edge_popup",), widths=(1, 2, 4), keep_fractions=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), seeds=(0, 1)))
    frame["mlp_units"] = frame["keep_fraction"].map(lambda k: int(10 * k) * 10 if k < 1 else 100)
    analysis = analyze_scaling(frame.assign(weight_dist="kaiming_normal"))
    assert len(analysis.labels) == 10
    ax = plot_accuracy_vs_x(analysis).axes[0]
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 >= ax.bbox.x1 - 1 or legend._loc == 2  # anchored beside the axes
    labels = [t.get_text() for t in legend.get_texts()][:10]
    assert labels == sorted(labels, key=lambda s: float(s.split("=")[1].split(" ")[0].split(",")[0]))


def test_best_counts_every_seed_and_never_averages_config_columns():
    rows = _frame(grid(methods=("dense",), widths=(1, 2), seeds=(0, 1, 2, 3, 4)))
    rows.loc[rows.index[0], "best_val_acc"] = np.nan
    best = best_per_group(rows, ["width"], report=[TEST_METRIC, "seed"])
    first = best.set_index("width").loc[1.0]
    cell = rows[rows["width"] == 1.0]
    assert first["n_in_group"] == 5 and first["cell_seeds"] == 5 and first["n_without_best_val_acc"] == 1
    assert first[f"cell_{TEST_METRIC}_mean"] == pytest.approx(cell[TEST_METRIC].mean())
    assert "cell_seed_mean" not in best.columns
    with pytest.raises(ConfigError, match="no validation split"):
        best_per_group(rows.assign(best_val_acc=np.nan, val_fraction=0.0), ["width"])


def test_best_cli_explains_an_empty_choice(tmp_path):
    store = ResultStore(tmp_path)
    rows = _frame(grid(methods=("dense",), widths=(1,), seeds=(0, 1))).assign(best_val_acc=np.nan, val_fraction=0.0)
    store.write_trials("v", rows.drop(columns=["sweep"], errors="ignore"))
    out = subprocess.run([sys.executable, "-m", "hidden_core.cli", "results", "best", "v", "--by", "width", "--results", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "val_fraction 0" in out.stderr and "(no rows)" not in out.stdout


def test_two_widths_draw_no_law_and_one_width_hints_only_at_axes_that_vary():
    from hidden_core.analysis import plot_accuracy_vs_x

    two = analyze_scaling(_frame(grid(methods=("dense", "edge_popup"), widths=(1, 2))))
    ax = plot_accuracy_vs_x(two).axes[0]
    assert "no law fitted" in ax.get_title() and "fitted law" not in [t.get_text() for t in ax.get_legend().get_texts()]
    assert two.fits["reason"].str.startswith("only 2 distinct width").all()
    one = _frame(grid(methods=("dense",), widths=(1,)))
    with pytest.raises(ConfigError, match=r"nothing to scale over$"):
        analyze_scaling(one)
    with pytest.raises(ConfigError, match=r"varying: depth.*try --x depth"):
        analyze_scaling(_frame(grid(methods=("dense",), widths=(1,), depths=(1, 2))))
