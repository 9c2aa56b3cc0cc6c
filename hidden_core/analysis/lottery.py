"""The lottery curve: test accuracy against density per lottery branch (ticket, supermask,
reinit, random_prune), beside edge_popup at its keep fractions and dense.

A lottery trial keeps one epochs row per trained epoch of every level and branch. Each
(trial, level, branch) is scored as a whole trial is (records.TEST_METRIC): the test accuracy
at that level's best-validation epoch (the earliest on ties, as training._result). A line is
a branch within one keep fraction (and any other config field that varies: ', width=2'):
trials of different k prune at different rates, so their levels are different networks.
A point is a level (its index, never its float density: one level's density can read 0.4998
in one trial and 0.5 in another) of a line; its density is the mean of its trials'. Where
several trials give a value for one level and seed (a searched hyperparameter: several
trials per cell and seed), the one with the best validation accuracy at that level is kept
(metrics.best_by_validation, the rule of every analysis: select on validation, report
test), so each seed counts once. Points are the mean over seeds with a Student-t interval
(intervals.paired_interval: the interval for a mean, n - 1 df; NaN for one seed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hidden_core.analysis.health import unhealthy_cells
from hidden_core.analysis.intervals import paired_interval
from hidden_core.analysis.metrics import best_by_validation, selection_column
from hidden_core.analysis.plots import _legend, _ticks_at, method_color, series_style, set_caption
from hidden_core.analysis.scaling import DENSE, _auto_split
from hidden_core.analysis.tables import require_columns
from hidden_core.catalog import CATALOG, LEVELS, TRAIN, methods_where
from hidden_core.errors import ConfigError
from hidden_core.records import (
    ANALYZED_STATUSES,
    BEST_EPOCH,
    DENSITY,
    RANDOM_PRUNE,
    REINIT,
    SELECTION_METRIC,
    SUPERMASK,
    TEST_ACC,
    TEST_METRIC,
    TICKET,
)

LOTTERY = next(iter(methods_where(runner=LEVELS)))  # the level-loop method whose branches the curve draws
# The untrained subnetworks drawn beside it at density = keep_fraction: the mask methods
# (controls "mask", one training) that read keep_fraction; edge_popup among today's.
AT_K: tuple[str, ...] = tuple(m for m in methods_where(controls="mask", runner=TRAIN) if "keep_fraction" in CATALOG[m].reads)
BRANCHES = (TICKET, REINIT, RANDOM_PRUNE, SUPERMASK)  # the drawing order: the ticket first, the supermask (dotted) last
DENSITY_DIGITS = 9  # a level's density is a ratio of whole counts: equal masks, equal floats to far more digits
POINT_COLUMNS = ["line", "source", "level", DENSITY, "n", "mean", "ci_low", "ci_high", "values", "seeds"]
LEVEL_SELECTION = selection_column(TEST_METRIC)  # a level's best validation accuracy, named as a trial's


def level_scores(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, level, branch): density, the level's best validation accuracy and
    the test accuracy at its epoch. Levels without a finite validation accuracy are left out."""
    require_columns(epochs, ["trial_id", "epoch", "level", "branch", DENSITY, SELECTION_METRIC, TEST_ACC], "lottery")
    rows = epochs.dropna(subset=["level", "branch", SELECTION_METRIC])
    rows = rows[np.isfinite(rows[SELECTION_METRIC].astype(float))].sort_values(["trial_id", "level", "branch", "epoch"])
    if rows.empty:
        return pd.DataFrame(columns=["trial_id", "level", "branch", DENSITY, BEST_EPOCH, LEVEL_SELECTION, TEST_METRIC])
    best = rows.loc[rows.groupby(["trial_id", "level", "branch"], sort=False)[SELECTION_METRIC].idxmax()]
    return pd.DataFrame(
        {
            "trial_id": best["trial_id"].to_numpy(),
            "level": best["level"].astype(int).to_numpy(),
            "branch": best["branch"].to_numpy(),
            DENSITY: best[DENSITY].astype(float).round(DENSITY_DIGITS).to_numpy(),
            BEST_EPOCH: best["epoch"].to_numpy(),
            LEVEL_SELECTION: best[SELECTION_METRIC].astype(float).to_numpy(),
            TEST_METRIC: best[TEST_ACC].astype(float).to_numpy(),
        }
    )


def _split_label(trials: pd.DataFrame, skip: Sequence[str]) -> tuple[pd.Series, list[str]]:
    """', width=2' per trial for the config fields that vary among these trials (besides
    seed and the axis), so one line never mixes two networks."""
    split = [c for c in _auto_split(trials, "seed", ["method"]) if c not in skip]
    suffix = trials[split].astype(str).apply(lambda r: "".join(f", {c}={v}" for c, v in r.items()), axis=1) if split and len(trials) else pd.Series("", index=trials.index)
    return suffix, split


def _summarize(rows: pd.DataFrame, source: str, ci: float, point: str = "level") -> pd.DataFrame:
    """Mean and interval over the seeds of each (line, `point`): a lottery level, or the
    density of a method without levels; `rows` has one row per seed and point."""
    out = []
    for (line, at), group in rows.sort_values("seed", kind="stable").groupby(["line", point], sort=True):
        values = group[TEST_METRIC].to_numpy(float)
        lo, hi = paired_interval(values, ci)
        seeds = " ".join(str(int(s)) for s in group["seed"])
        level = int(at) if point == "level" else None
        density = round(float(group[DENSITY].mean()), DENSITY_DIGITS) if point == "level" else float(at)
        out.append({"line": line, "source": source, "level": level, DENSITY: density, "n": len(values), "mean": float(values.mean()), "ci_low": lo, "ci_high": hi, "values": " ".join(f"{v:.6g}" for v in values), "seeds": seeds})
    return pd.DataFrame(out, columns=POINT_COLUMNS)


def lottery_seed_scores(lottery_trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per (line, level, seed) of the lottery branches: the level score of the trial
    with the best validation accuracy there (line = branch plus the config fields that split
    lines, e.g. ', keep_fraction=0.3, width=2'). Columns: line, branch, level, density, seed,
    trial_id, best_epoch, best_val_acc, test_acc_at_best_val."""
    usable = lottery_trials[(lottery_trials["method"] == LOTTERY) & lottery_trials["status"].isin(ANALYZED_STATUSES)]
    scores = level_scores(epochs[epochs["trial_id"].isin(usable["trial_id"])])
    suffix, _ = _split_label(usable, [])  # keep_fraction included: each k prunes at its own rate
    scores = scores.merge(pd.DataFrame({"trial_id": usable["trial_id"], "seed": usable["seed"], "suffix": suffix}), on="trial_id")
    scores["line"] = scores["branch"] + scores["suffix"]
    chosen = best_by_validation(scores, ["line", "level", "seed"], LEVEL_SELECTION)
    columns = ["line", "branch", "level", DENSITY, "seed", "trial_id", BEST_EPOCH, LEVEL_SELECTION, TEST_METRIC]
    return chosen[columns].sort_values(["line", "level", "seed"]).reset_index(drop=True)


def lottery_points(lottery_trials: pd.DataFrame, epochs: pd.DataFrame, others: pd.DataFrame | None = None, ci: float = 0.95) -> pd.DataFrame:
    """Points of the lottery figure, one row per (line, density): the lottery branches from
    the epochs table of the lottery_ticket trials, edge_popup trials at density =
    keep_fraction and dense (density 1) from `others` (a trials table; may be the same)."""
    scores = lottery_seed_scores(lottery_trials, epochs)
    order = {b: i for i, b in enumerate(BRANCHES)}
    frames = [_summarize(scores, LOTTERY, ci).sort_values(["line", DENSITY], key=lambda c: c.map(lambda v: (order.get(v.split(",")[0], len(order)), v)) if c.name == "line" else c, kind="stable")]
    if others is not None and len(others):
        for method, axis in (*((m, "keep_fraction") for m in AT_K), (DENSE, None)):
            rows = others[(others["method"] == method) & others["status"].isin(ANALYZED_STATUSES)].dropna(subset=[TEST_METRIC])
            if rows.empty:
                continue
            suffix, _ = _split_label(rows, [axis] if axis else [])
            rows = rows.assign(line=method + suffix, density=rows[axis].astype(float).round(DENSITY_DIGITS) if axis else 1.0)
            frames.append(_summarize(best_by_validation(rows, ["line", DENSITY, "seed"], LEVEL_SELECTION), method, ci, DENSITY))
    points = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else pd.DataFrame(columns=POINT_COLUMNS)
    return points


def lottery_health(lottery_trials: pd.DataFrame, others: pd.DataFrame | None = None) -> pd.DataFrame:
    """The unhealthy cells (health.unhealthy_cells) behind the lottery figure's lines, one
    column `cell`: a lottery_ticket trial's health covers all its levels and branches, so its
    cell is its line's config ('lottery_ticket, width=2'); edge_popup's is its line at one
    keep fraction; dense's its line."""
    frames = []
    lottery = lottery_trials[lottery_trials["method"] == LOTTERY]
    if len(lottery):
        suffix, _ = _split_label(lottery, ["keep_fraction"])
        frames.append(lottery.assign(cell=(LOTTERY + suffix).to_numpy()))
    if others is not None and len(others):
        for method, axis in (*((m, "keep_fraction") for m in AT_K), (DENSE, None)):
            rows = others[others["method"] == method]
            if rows.empty:
                continue
            suffix, _ = _split_label(rows, [axis] if axis else [])
            at = (f", {axis}=" + rows[axis].map("{:g}".format)) if axis else ""
            frames.append(rows.assign(cell=(method + suffix + at).to_numpy()))
    rows = pd.concat(frames, ignore_index=True) if frames else lottery_trials.iloc[0:0].assign(cell=pd.Series(dtype=str))
    return unhealthy_cells(rows, ["cell"])


def require_lottery(trials: pd.DataFrame, sweep: str) -> None:
    """A clear error when the sweep holds no lottery_ticket trial to draw."""
    methods = sorted(trials["method"].dropna().unique())
    if LOTTERY not in methods:
        raise ConfigError([f"sweep: {sweep!r} has no {LOTTERY} trials in the selection (methods: {', '.join(methods) or 'none'}); run one, e.g. sweeps/lottery_*.yaml"])


def _line_style(line: str, source: str, index: int) -> dict:
    """Every line in its method's colour (the branches are lottery_ticket's); lines of one
    method differ by marker, dense is a dashed horizontal line."""
    if source == LOTTERY:
        branch = line.split(",")[0]
        style = series_style(BRANCHES.index(branch) if branch in BRANCHES else len(BRANCHES) + index)
        style["linestyle"] = ":" if branch == SUPERMASK else "-"
    else:
        style = {**series_style(index), "linestyle": "-"}
    return {"color": method_color(source), **style}


def plot_lottery(points: pd.DataFrame, ci: float = 0.95) -> Figure:
    """Test accuracy (%) against density (log x): one line per branch with its interval band,
    edge_popup as another line, dense as a horizontal line with its band."""
    fig = Figure(figsize=(8.5, 5), layout="constrained")
    ax = fig.add_subplot()
    per_source: dict[str, int] = {}
    for line, group in points.groupby("line", sort=False):
        source = group["source"].iloc[0]
        style = _line_style(line, source, per_source.get(source, 0))
        per_source[source] = per_source.get(source, 0) + 1
        color = style.pop("color")
        n = f"n={group['n'].min()}" if group["n"].nunique() == 1 else f"n={group['n'].min()}-{group['n'].max()}"
        lo, hi = 100 * group["ci_low"].fillna(group["mean"]), 100 * group["ci_high"].fillna(group["mean"])
        if source == DENSE:
            ax.axhline(100 * group["mean"].iloc[0], color=color, linestyle="--", linewidth=1.2, label=f"{line} ({n})")
            ax.axhspan(lo.iloc[0], hi.iloc[0], color=color, alpha=0.1, linewidth=0)
            continue
        ax.fill_between(group[DENSITY], lo, hi, color=color, alpha=0.12, linewidth=0)
        ax.plot(group[DENSITY], 100 * group["mean"], color=color, markersize=3.5, linewidth=1.5, label=f"{line} ({n})", **style)
    ax.set_xscale("log")
    _ticks_at(ax, points[DENSITY].to_numpy(float))
    ax.invert_xaxis()  # pruning goes right: from dense to sparse
    at_k = [m for m in AT_K if (points["source"] == m).any()]
    k_note = f"; {', '.join(at_k)}: keep fraction k" if at_k else ""
    ax.set_xlabel(f"density (fraction of weights kept{k_note}) (log scale)")
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), min(100.0, ax.get_ylim()[1]))  # an interval past 0 or 100% says little
    ax.set_ylabel("test accuracy at best validation (%)")
    others = [s for s in (*AT_K, DENSE) if (points["source"] == s).any()]
    ax.set_title(fontsize=10, label=f"lottery tickets and controls{' vs ' + ' and '.join(others) if others else ''}\nmean over seeds, band: {ci:.0%} Student-t interval, n: seeds per point")
    _legend(ax)
    ax.grid(True, alpha=0.25, which="both")
    set_caption(fig, caption(points, "", None, ci))
    return fig


def caption(points: pd.DataFrame, sweep: str, with_sweep: str | None, ci: float = 0.95) -> str:
    """Describes the lines in `points` (what plot_lottery draws) and nothing else."""
    ns = points.groupby("line", sort=False)["n"].agg(["min", "max"])
    per_line = "; ".join(f"{line}: n={r['min']}" + (f"-{r['max']}" if r["max"] != r["min"] else "") for line, r in ns.iterrows())
    sources = set(points["source"])
    branches = [b for b in BRANCHES if any(str(line).split(",")[0] == b for line in points.loc[points["source"] == LOTTERY, "line"])]
    drawn_others = [s for s in (*AT_K, DENSE) if s in sources]
    where = (f"sweep `{sweep}`" if sweep else "the lottery sweep") + (f", {' and '.join(drawn_others)} from `{with_sweep}`" if with_sweep and drawn_others else "")
    lines = [f"Lottery lines (lottery_ticket's colour; {', '.join(branches)}{'; dotted: ' + SUPERMASK if SUPERMASK in branches else ''}): per level and branch, "
             "the test accuracy at that level's best-validation epoch"]
    lines += [f"{m} at density = its keep fraction k" for m in AT_K if m in sources]
    if DENSE in sources:
        lines.append("dashed: dense, unpruned, with its band")
    return (
        f"Test accuracy at the best-validation epoch against density (log scale, from unpruned on the left to sparse on the right), {where}. "
        f"Lottery lines: one per branch and keep fraction, a point per pruning level (its mean density). {'; '.join(lines)}. One value per seed: where several trials give one "
        f"(a searched hyperparameter), the trial of best validation accuracy there. Points are the mean over seeds, "
        f"bands a {ci:.0%} Student-t interval (none for one seed). Seeds per point: {per_line}."
    )
