"""`hidden results ...` and `hidden analyze scaling`: output, formats, and bad input (exit 2)."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest
from synthetic_store import grid, write_synthetic_sweep

import hidden_core.cli as cli
from hidden_core.store import ResultStore


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    store = ResultStore(root)
    write_synthetic_sweep(store, "demo", grid(methods=("dense", "edge_popup", "sign_flip"), widths=(0.5, 1, 2, 4), seeds=(0, 1)))
    write_synthetic_sweep(store, "tiny", grid(methods=("dense",), widths=(1,), seeds=(0,)))
    return root


@pytest.fixture
def hidden(results_dir, monkeypatch, capsys):
    """Runs `hidden ARGS` against the fixture store; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("results_cmd", "analyze_cmd"))
    monkeypatch.setenv("HIDDEN_RESULTS", str(results_dir))

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _columns_line_up(text: str) -> None:
    lines = text.rstrip("\n").splitlines()
    header, rule = lines[0], lines[1]
    assert set(rule) <= {"-", " "}
    starts = [i for i, c in enumerate(rule) if c == "-" and (i == 0 or rule[i - 1] == " ")]
    for name, start in zip(header.split(), starts, strict=True):
        assert header[start:].startswith(name)


def test_list_shows_counts_per_sweep(hidden):
    code, out, _ = hidden("results", "list")
    assert code == 0
    _columns_line_up(out)
    assert out.splitlines()[0].split() == ["sweep", "trials", "completed", "pruned", "failed", "diverged", "last_update"]
    assert out.splitlines()[2].split()[:3] == ["demo", "24", "24"]


def test_results_option_overrides_the_environment(hidden, tmp_path):
    (tmp_path / "empty").mkdir()
    code, out, _ = hidden("results", "list", "--results", str(tmp_path / "empty"))
    assert code == 0 and "no sweeps in" in out


def test_a_missing_store_folder_is_an_error(hidden, tmp_path):
    code, out, err = hidden("results", "list", "--results", str(tmp_path / "no" / "such"))
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: results: no results store at {tmp_path / 'no' / 'such'} (no such folder); give --results or set $HIDDEN_RESULTS"]


def test_show_lists_trials_with_the_columns_that_vary(hidden):
    code, out, _ = hidden("results", "show", "demo", "--where", "width >= 2 and method != 'dense'")
    assert code == 0
    _columns_line_up(out)
    header = out.splitlines()[0].split()
    assert header == ["trial_id", "status", "method", "width", "seed", "best_val_acc", "test_acc_at_best_val", "epochs_run", "train_seconds"]
    assert len(out.splitlines()) == 2 + 2 * 2 * 2


def test_show_group_by_gives_mean_std_count_over_seeds(hidden, results_dir):
    code, out, _ = hidden("results", "show", "demo", "--group-by", "method,width", "--columns", "test_acc", "--format", "csv")
    assert code == 0
    got = pd.read_csv(io.StringIO(out))
    trials = ResultStore(results_dir).load_trials("demo")
    expected = trials.groupby(["method", "width"])["test_acc"].agg(["mean", "std"]).reset_index()
    assert list(got.columns) == ["method", "width", "n", "seeds", "test_acc_mean", "test_acc_std"]
    assert (got["n"] == 2).all()
    pd.testing.assert_series_equal(got["test_acc_mean"], expected["mean"], check_names=False)
    pd.testing.assert_series_equal(got["test_acc_std"], expected["std"], check_names=False)


def test_show_formats(hidden, tmp_path):
    code, out, _ = hidden("results", "show", "demo", "--columns", "trial_id", "test_acc", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 24 and set(json.loads(out)[0]) == {"trial_id", "test_acc"}
    target = tmp_path / "out.parquet"
    code, _, _ = hidden("results", "show", "demo", "--format", "parquet", "--output", str(target), "--where", "method == 'dense'")
    assert code == 0 and len(pd.read_parquet(target)) == 8


def test_best_picks_by_validation_and_reports_test(hidden, results_dir):
    code, out, _ = hidden("results", "best", "demo", "--by", "method", "--format", "csv")
    assert code == 0
    best = pd.read_csv(io.StringIO(out)).set_index("method")
    trials = ResultStore(results_dir).load_trials("demo")
    for method, rows in trials.groupby("method"):
        top = rows.loc[rows["best_val_acc"].idxmax()]
        assert best.loc[method, "trial_id"] == top["trial_id"]
        assert best.loc[method, "test_acc_at_best_val"] == pytest.approx(top["test_acc_at_best_val"])
    assert {"n_in_group", "cell_test_acc_at_best_val_mean", "cell_seeds"} <= set(best.columns)


def test_analyze_scaling_writes_the_report(hidden, results_dir, tmp_path):
    out_dir = tmp_path / "analysis"
    code, out, _ = hidden("analyze", "scaling", "demo", "--x", "width", "--by", "method", "--out", str(out_dir))
    assert code == 0
    assert f"report: {out_dir / 'report.md'}" in out
    assert "edge_popup" in out and "sign_flip" in out
    assert {"report.md", "fits.csv", "gaps.csv", "accuracy_vs_width.png", "accuracy_vs_width.svg", "gap_vs_width.png"} <= {p.name for p in out_dir.iterdir()}
    code, out, _ = hidden("analyze", "scaling", "demo")
    assert code == 0 and (results_dir / "demo" / "analysis" / "width" / "report.md").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("results", "show", "nosuch"), "no sweep named 'nosuch'.*available sweeps: demo, tiny"),
        (("results", "show", "demo", "--where", "colour == 'red'"), "where: unknown column 'colour'; available columns: sweep, trial_id"),
        (("results", "show", "demo", "--columns", "acc"), "columns: unknown column 'acc'.*; available columns"),
        (("results", "show", "demo", "--group-by", "colour"), "group-by: unknown column 'colour'; available columns"),
        (("results", "show", "demo", "--where", "width > 100"), "selection: no trials match --where 'width > 100'.*24 trials"),
        (("results", "best", "demo", "--by", "colour"), "by: unknown column 'colour'"),
        (("analyze", "scaling", "nosuch"), "no sweep named 'nosuch'.*available sweeps: demo, tiny"),
        (("analyze", "scaling", "demo", "--by", "colour"), "by: unknown column 'colour'; available columns"),
        (("analyze", "scaling", "demo", "--where", "method == 'none'"), "selection: no trials match"),
        (("analyze", "scaling", "tiny"), "nothing to scale over"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(hidden, args, message):
    code, out, err = hidden(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]


# ---- one metric, cells told apart, seeds counted once (issue 22, points 1 and 2) ----------
def _searched_store(root):
    """2 methods x 2 depths x 2 seeds, lr searched: 3 samples per cell and seed (one cell_id
    for all samples of a cell, as the runner writes them)."""
    import numpy as np
    from synthetic_store import make_trial

    store = ResultStore(root)
    rng = np.random.default_rng(7)
    rows, epochs = [], []
    for i, (method, depth, seed, lr) in enumerate((m, d, s, lr) for m in ("dense", "edge_popup") for d in (2, 3) for s in (0, 1) for lr in (0.1, 0.03, 0.01)):
        row, history = make_trial({"method": method, "depth": depth, "seed": seed, "lr": lr}, noise=0.05, rng=rng, index=i, cell_id=f"{method}-{depth}")
        rows.append(row)
        epochs += [{"trial_id": row["trial_id"], **e} for e in history]
    store.write_trials("searched", rows, epochs)
    return store.load_trials("searched")


def test_show_prints_the_selection_metric_unless_asked_and_names_it(hidden):
    code, out, err = hidden("results", "show", "demo")
    header = out.splitlines()[0].split()
    assert code == 0 and "test_acc_at_best_val" in header and "best_val_acc" in header
    assert "test_acc" not in header and "val_acc" not in header  # the final epoch's: only with --metric
    assert "metric: test_acc_at_best_val = test accuracy at the best-validation epoch" in err
    code, out, err = hidden("results", "show", "demo", "--group-by", "method", "width")
    assert code == 0 and out.splitlines()[0].split() == ["method", "width", "n", "seeds", "best_val_acc_mean", "best_val_acc_std",
                                                         "test_acc_at_best_val_mean", "test_acc_at_best_val_std"]
    assert "metric: test_acc_at_best_val" in err
    code, out, err = hidden("results", "show", "demo", "--metric", "test_acc")
    assert code == 0 and {"val_acc", "test_acc"} <= set(out.splitlines()[0].split()) and "test_acc_at_best_val" not in out
    assert "metric: test_acc = test accuracy at the final epoch" in err
    code, _, err = hidden("results", "show", "demo", "--metric", "train_acc")
    assert code == 2 and "metric: 'train_acc' is not a test metric; allowed: test_acc_at_best_val" in err


def test_group_by_counts_seeds_names_pooled_axes_and_selects_one_sample_per_seed(hidden, tmp_path):
    trials = _searched_store(tmp_path)
    code, out, err = hidden("results", "show", "searched", "--group-by", "method", "--format", "csv", "--results", str(tmp_path))
    got = pd.read_csv(io.StringIO(out)).set_index("method")
    # per (cell, seed) the lr sample of best validation; then 2 depths x 2 seeds per method
    chosen = trials.sort_values("best_val_acc", ascending=False).drop_duplicates(["cell_id", "seed"])
    assert code == 0 and (got["n"] == 4).all() and (got["seeds"] == 2).all()
    for method, rows in chosen.groupby("method"):
        assert got.loc[method, "test_acc_at_best_val_mean"] == pytest.approx(rows["test_acc_at_best_val"].mean())
    code, out, err = hidden("results", "show", "searched", "--group-by", "method", "--results", str(tmp_path))
    assert "pooled over depth" in err and "searched lr" in err
    code, out, err = hidden("results", "show", "searched", "--group-by", "method", "depth", "--results", str(tmp_path))
    assert "no axis pooled (n = seeds)" in err and all(line.split()[2] == line.split()[3] == "2" for line in out.splitlines()[2:])


def test_best_cell_mean_takes_per_seed_the_sample_validation_chooses(hidden, tmp_path):
    trials = _searched_store(tmp_path)
    code, out, _ = hidden("results", "best", "searched", "--by", "method", "depth", "--format", "csv", "--results", str(tmp_path))
    best = pd.read_csv(io.StringIO(out))
    assert code == 0 and (best["cell_seeds"] == 2).all() and (best["n_in_group"] == 6).all()
    for _, row in best.iterrows():
        cell = trials[(trials["method"] == row["method"]) & (trials["depth"] == row["depth"])]
        per_seed = cell.loc[cell.groupby("seed")["best_val_acc"].idxmax()]
        assert row["cell_test_acc_at_best_val_mean"] == pytest.approx(per_seed["test_acc_at_best_val"].mean())
        assert row["cell_test_acc_at_best_val_mean"] != pytest.approx(cell["test_acc_at_best_val"].mean())  # never the samples' mean


def test_subnet_export_best_picks_the_trial_results_best_picks(tmp_path, capsys):
    """One selection rule (issue 22, point 7): the final epoch's val_acc favours another trial
    than best_val_acc does; `subnet export --best` follows `results best` (best_val_acc)."""
    import numpy as np
    from synthetic_store import make_trial

    rng = np.random.default_rng(3)
    rows = [make_trial(c, noise=0.01, rng=rng, index=i)[0] for i, c in enumerate(grid(methods=("dense",), widths=(1, 2), seeds=(0, 1)))]
    by_best = max(rows, key=lambda r: r["best_val_acc"])["trial_id"]
    other = next(r for r in rows if r["trial_id"] != by_best)
    other["val_acc"] = 0.999  # the final epoch's best, not the best epoch's
    store = ResultStore(tmp_path)
    store.write_trials("pick", rows)
    assert cli.main(["results", "best", "pick", "--by", "sweep", "--format", "csv", "--results", str(tmp_path)]) == 0
    chosen = pd.read_csv(io.StringIO(capsys.readouterr().out))["trial_id"].iloc[0]
    assert chosen == by_best
    # no subnet files in a synthetic store: the refusal names the trial --best chose
    assert cli.main(["subnet", "export", "pick", "--best", "-o", str(tmp_path / "x.safetensors"), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"trial {by_best} " in err and other["trial_id"] not in err


def test_show_best_status_and_analyze_agree_on_each_cell(hidden, tmp_path):
    """One number per cell whichever command prints it (issue 22, point 1): the mean over
    seeds of the test metric, each seed's searched sample chosen by validation."""
    from hidden_core.analysis import analyze_scaling
    from hidden_core.tune.progress import width_table

    trials = _searched_store(tmp_path)
    _, out, _ = hidden("results", "show", "searched", "--group-by", "method", "depth", "--format", "csv", "--results", str(tmp_path))
    shown = pd.read_csv(io.StringIO(out)).set_index(["method", "depth"])["test_acc_at_best_val_mean"]
    _, out, _ = hidden("results", "best", "searched", "--by", "method", "depth", "--format", "csv", "--results", str(tmp_path))
    best = pd.read_csv(io.StringIO(out)).set_index(["method", "depth"])["cell_test_acc_at_best_val_mean"]
    status = width_table(trials)["w=1"].map(lambda cell: float(cell.split("±")[0]))
    points = analyze_scaling(trials, x="depth", by=["method"]).points
    analyzed = points.groupby(["method", "depth"])["test_acc_at_best_val"].mean()
    for key in shown.index:
        assert best[key] == pytest.approx(shown[key]) and analyzed[key] == pytest.approx(shown[key])
        assert status[key] == pytest.approx(shown[key], abs=5e-4)  # printed to 3 decimals
