"""`make reproduce`: run the small reproduction sweeps (sweeps/repro/*.yaml; finished trials
are skipped by the sweep runner), then write REPRODUCTIONS.md and one figure and one per-seed
table per claim (docs/reproductions/) from the results store.

    python -m hidden_core.reproduce [--results results/repro] [--report-only] [--only KEY]

Per claim: a tuning sweep picks each cell's lr on validation (tuned specs), the reported
seeds run with it (5 seeds; 7, then 10 while a verdict straddles its threshold), and the claim
is decided three-way by its declared checks, each a per-seed quantity's 95% t-interval against
a fixed threshold (docs/methods.md, "Verdicts"). Every number in the report is read from the
store. This module imports neither torch nor Ray (the sweeps run in a subprocess)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from hidden_core import paths
from hidden_core.analysis.health import flagged_only, unhealthy_cells, worsening_baselines
from hidden_core.analysis.intervals import paired_interval
from hidden_core.analysis.lottery import lottery_points, lottery_seed_scores, plot_lottery
from hidden_core.analysis.metrics import best_by_validation
from hidden_core.analysis.plots import method_color
from hidden_core.config import make_config
from hidden_core.health import DEAD_UNITS
from hidden_core.records import (
    BEST_EPOCH,
    BEST_VAL_ACC,
    CHANGED_FRACTION,
    COMPLETED,
    DENSITY,
    DISABLED_FEATURES,
    HEALTH_FLAGS,
    TEST_ACC_AT_BEST_VAL,
    TRAIN_SECONDS,
    VAL_ACC,
)
from hidden_core.spec import load_spec, parse_spec
from hidden_core.store import ResultStore
from hidden_core.strict_yaml import load_yaml_file

ROOT = Path(__file__).resolve().parent.parent
REPRO_DIR = ROOT / "sweeps" / "repro"
FIGURE_DIR = ROOT / "docs" / "reproductions"
REPORT = ROOT / "REPRODUCTIONS.md"
TIMINGS = paths.REPRO_TIMINGS_FILE  # in the results folder: wall seconds of the runs that made each sweep's trials
METRIC = TEST_ACC_AT_BEST_VAL  # the one test metric: test accuracy at the best validation epoch
CHANCE = 0.1


# ---- decisions from seed-level intervals -------------------------------------------------------
# Every claim is decided by declared checks (Check below), each fixed before the run: a
# quantity computed per seed from cells paired by seed (a gap, a ratio, a difference), its
# 95% Student-t interval over the seeds (analysis.intervals.paired_interval; coverage
# measured in tests/test_analysis_coverage.py), a threshold and a direction. Three-way:
# the interval lies on the claim's side of the threshold -> reproduced; on the other side ->
# not reproduced; it straddles the threshold -> inconclusive.
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
CI = 0.95
# The sequential seed rule, fixed in advance: every reported cell starts with SEED_STEPS[0]
# seeds (0..4); while the claim is inconclusive because an interval straddles its threshold,
# the sweep runs again with the next step's seeds (finished trials are skipped) and the claim
# is re-decided on all of them; never beyond the last step. Each look is a 95% interval, so
# the chance of a decisive verdict at a true value on the threshold is about 5% per side over
# the three looks instead of 2.5% (measured by simulation: tests/test_reproduce.py,
# test_sequential_rule_error_rate) and stated in the report and docs/methods.md.
SEED_STEPS: tuple[int, ...] = (5, 7, 10)
# Learning rates are chosen per cell on validation, on a seed no reported trial uses.
TUNE_SEED = 100
LR_FACTORS: tuple[float, ...] = (1 / 3, 1.0, 3.0)
# The grid widens by a fixed rule: while a cell's chosen lr is the lowest or highest it tried,
# one more lr (x1/3 or x3 beyond it) is tried, at most LR_WIDEN_STEPS times per cell; the
# widened lrs run in the same tuning sweep (finished trials are skipped), so the store alone
# says how far each cell has widened. Before this rule 16 of 19 tuned cells chose an edge.
LR_WIDEN_STEP = 3.0
LR_WIDEN_STEPS = 2
SPECS = paths.REPRO_SPECS_DIR  # in the results folder: the specs as run (the chosen lr per cell, the seeds)


@dataclass(frozen=True)
class Check:
    """One decisive quantity of a claim, declared before the run.

    `cells` names each cell the quantity reads ({column: value} selectors over the sweep's
    trials); `formula` is an arithmetic expression over those names, evaluated per seed on
    the seeds every named cell holds (paired by seed); `metric` is the column read (the test
    metric unless said). Reproduced when the 95% interval over seeds lies above `threshold`
    (below it when `above` is False). `instead`: checks tried in order, fixed in advance, when
    a cell of this one is flagged unhealthy (analysis.health); `decides` False: shown with its
    interval, never part of the verdict (`note` says why)."""

    label: str
    sweep: str
    cells: Mapping[str, Mapping[str, Any]]
    formula: str
    threshold: float
    above: bool = True
    metric: str = METRIC
    unit: str = "points"  # "points": x100 in the text; "ratio": as is
    instead: tuple[Check, ...] = ()
    decides: bool = True
    note: str = ""
    # the cells that are baselines (their failure is the recipe's, not the claim's): a flagged
    # trial there gates the check. None: every dense cell and the dense level of a lottery.
    # A method's own cells are never gated (a low accuracy there may be the result itself,
    # e.g. edge-popup at k = 0.05); the section still lists every flagged cell.
    baselines: tuple[str, ...] | None = None

    def baseline_names(self) -> tuple[str, ...]:
        if self.baselines is not None:
            return self.baselines
        return tuple(n for n, sel in self.cells.items() if sel.get("method") == "dense" or (sel.get("branch") == "ticket" and sel.get("level") == 0))


@dataclass(frozen=True)
class Group:
    """Checks that must all hold (e.g. one architecture's, one method's)."""

    label: str
    checks: tuple[Check, ...]


@dataclass
class Outcome:
    check: Check  # the check that decided (the declared one, or the healthy one it fell back to)
    verdict: str
    values: np.ndarray  # the quantity per seed
    interval: tuple[float, float]
    straddles: bool  # inconclusive because the interval holds the threshold (more seeds may decide)
    note: str = ""  # baseline failures, fallbacks

    def text(self) -> str:
        c = self.check
        scale = 100.0 if c.unit == "points" else 1.0
        fmt = (lambda v: f"{scale * v:+.1f}") if c.unit == "points" else (lambda v: f"{v:.3f}")
        lo, hi = self.interval
        side = ">" if c.above else "<"
        n = len(self.values)
        interval = f"mean {fmt(float(np.mean(self.values)))}, 95% t-interval over {n} seeds [{fmt(lo)}, {fmt(hi)}]" if n > 1 else f"{n} seed(s): no interval"
        head = f"{c.label}: {self.verdict}" if c.decides else f"{c.label} (not decisive{': ' + c.note if c.note else ''})"
        return f"{head}; `{c.formula}` {interval} {c.unit if c.unit == 'points' else ''} (threshold {side} {fmt(c.threshold)})".replace("  ", " ") + (f". {self.note}" if self.note else "")


def three_way(interval: tuple[float, float], threshold: float, above: bool) -> str:
    lo, hi = interval
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if (lo > threshold) if above else (hi < threshold):
        return REPRODUCED
    if (hi < threshold) if above else (lo > threshold):
        return NOT_REPRODUCED
    return INCONCLUSIVE


_SAFE = re.compile(r"^[\w\s.+\-*/()]+$")


def per_seed(check: Check, frame: pd.DataFrame) -> np.ndarray:
    """The check's quantity for every seed that all its cells hold, in seed order."""
    if not _SAFE.match(check.formula):
        raise ValueError(f"check {check.label!r}: formula {check.formula!r} may hold only names, numbers and + - * / ( )")
    columns = {}
    for name, selector in check.cells.items():
        sel = select(frame, selector)
        columns[name] = sel.groupby("seed")[check.metric].mean()
    table = pd.DataFrame(columns).dropna()
    if table.empty:
        return np.array([])
    names = {n: table[n].to_numpy(float) for n in check.cells}
    value = eval(check.formula, {"__builtins__": {}}, {**names, "chance": CHANCE})  # noqa: S307 (checked: names and arithmetic only)
    return np.asarray(value, float)


def select(frame: pd.DataFrame, selector: Mapping[str, Any]) -> pd.DataFrame:
    mask = np.ones(len(frame), bool)
    for column, value in selector.items():
        col = frame[column]
        mask &= np.isclose(col.astype(float), float(value)) if isinstance(value, int | float) and not isinstance(value, bool) else (col == value).to_numpy()
    return frame[mask]


def cell_name(selector: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else f"{k} {v}" for k, v in selector.items())


def falls_with_width(frame: pd.DataFrame, line: Mapping[str, Any], metric: str = METRIC) -> pd.DataFrame:
    """Where the line (a selector without width, e.g. {'method': 'dense'}) gets worse from one
    width to the next, paired by seed (analysis.health.worsening_baselines: the 95% paired
    t-interval of the change lies below 0). A baseline that loses accuracy as it widens has
    failed its recipe there (e.g. an lr too high for the wider layers): it is no fair measure
    of what that width can do."""
    rows = select(frame, line) if line else frame
    if rows.empty or "width" not in rows or rows["width"].nunique() < 2:
        return pd.DataFrame(columns=["x_from", "x_to", "mean_change", "ci_low", "ci_high", "n_seeds"])
    return worsening_baselines(rows.assign(line=0), "width", ["line"], metric).drop(columns="line")


def _falls_text(row: pd.Series) -> str:
    return (f"accuracy falls from width {row['x_from']:g} to {row['x_to']:g}: {100 * row['mean_change']:+.1f} points, "
            f"95% paired t-interval over {int(row['n_seeds'])} seeds [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]")


def unhealthy(check: Check, frame: pd.DataFrame) -> list[str]:
    """'cell (reasons)' for each of the check's baseline cells with a flagged trial
    (analysis.health), or whose accuracy is lower than at the next narrower width of its line
    (falls_with_width)."""
    out = []
    for selector in (check.cells[n] for n in check.baseline_names()):
        sel = select(frame, selector)
        if sel.empty:
            continue
        # health-unknown cells (an older store) are reported by health_line, not failed here
        bad = flagged_only(unhealthy_cells(sel, list(selector)))
        if len(bad):
            row = bad.iloc[0]
            out.append(f"{cell_name(selector)} ({row['reasons']})")
            continue
        if "width" in selector:
            falls = falls_with_width(frame, {k: v for k, v in selector.items() if k != "width"}, check.metric)
            falls = falls[np.isclose(falls["x_to"].astype(float), float(selector["width"]))]
            if len(falls):
                out.append(f"{cell_name(selector)} ({_falls_text(falls.iloc[0])})")
    return out


def decide(check: Check, data: Mapping[str, pd.DataFrame]) -> Outcome:
    """The check's outcome; a check whose cells hold a flagged trial falls back to its
    `instead` checks in order (the first with healthy cells decides, and says so), else it is
    inconclusive (baseline failed)."""
    frame = data.get(check.sweep, pd.DataFrame())
    if frame.empty:
        return Outcome(check, INCONCLUSIVE, np.array([]), (math.nan, math.nan), False, f"no trials of {check.sweep}")
    failed = unhealthy(check, frame)
    if failed:
        for other in check.instead:
            if not unhealthy(other, data.get(other.sweep, frame)):
                outcome = decide(other, data)
                outcome.note = (f"Decided on {other.label} instead of {check.label}: flagged baseline {'; '.join(failed)}. " + outcome.note).strip()
                return outcome
        values = per_seed(check, frame)
        interval = paired_interval(values, CI) if len(values) > 1 else (math.nan, math.nan)
        return Outcome(check, INCONCLUSIVE, values, interval, False, f"inconclusive (baseline failed: {'; '.join(failed)})")
    values = per_seed(check, frame)
    interval = paired_interval(values, CI) if len(values) > 1 else (math.nan, math.nan)
    verdict = three_way(interval, check.threshold, check.above)
    return Outcome(check, verdict, values, interval, verdict == INCONCLUSIVE and len(values) > 1)


def combine(verdicts: Sequence[str], how: str) -> str:
    """Three-valued AND ('all') / OR ('any') of verdicts."""
    if not verdicts:
        return INCONCLUSIVE
    if how == "all":
        return NOT_REPRODUCED if NOT_REPRODUCED in verdicts else REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE
    return REPRODUCED if REPRODUCED in verdicts else NOT_REPRODUCED if all(v == NOT_REPRODUCED for v in verdicts) else INCONCLUSIVE


@dataclass
class Decision:
    verdict: str
    lines: list[str]  # one per check, each quoting its interval
    straddles: bool  # more seeds could change the verdict

    def text(self, claim: Claim) -> str:
        how = "every group must hold" if claim.combine == "all" else "one group suffices"
        return f"**Verdict: {self.verdict}** (three-way, from 95% t-intervals over seeds; {how}).\n\n" + "\n".join(self.lines)


def decide_claim(claim: Claim, data: Mapping[str, pd.DataFrame]) -> Decision:
    lines, group_verdicts, straddles = [], [], False
    for group in claim.groups:
        outcomes = [decide(c, data) for c in group.checks]
        decisive = [o for o in outcomes if o.check.decides]
        verdict = combine([o.verdict for o in decisive], "all")
        baseline = [o.note for o in decisive if o.note.startswith("inconclusive (baseline failed")]
        group_verdicts.append(verdict)
        straddles |= any(o.straddles for o in decisive)
        lines.append(f"- **{group.label}: {verdict}**" + (f" ({'; '.join(baseline)})" if baseline and verdict == INCONCLUSIVE else ""))
        lines += [f"  - {o.text()}" for o in outcomes]
    verdict = combine(group_verdicts, claim.combine)
    # more seeds only help while the claim is undecided and some interval straddles
    return Decision(verdict, lines, verdict == INCONCLUSIVE and straddles)


# ---- tables ------------------------------------------------------------------------------------
@dataclass
class Cell:
    label: str
    values: list[float]  # METRIC per seed
    seeds: list[int]
    extra: dict[str, float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    def interval(self) -> tuple[float, float]:
        """95% Student-t interval of the mean over the seeds (seed-to-seed variation)."""
        return paired_interval(np.asarray(self.values, float), CI)

    def row(self) -> str:
        lo, hi = self.interval()
        per_seed_text = ", ".join(f"s{s}: {100 * v:.1f}" for s, v in zip(self.seeds, self.values, strict=True))
        extra = "".join(f" | {v:.3f}" if not math.isnan(v) else " | -" for v in self.extra.values())
        interval = f"[{100 * lo:.1f}, {100 * hi:.1f}]" if not math.isnan(lo) else "-"
        return f"| {self.label} | {100 * self.mean:.1f} | {interval} | {len(self.values)} | {per_seed_text}{extra} |"


def cells(frame: pd.DataFrame, by: list[str], label: Callable[[pd.Series], str], extra: tuple[str, ...] = ()) -> list[Cell]:
    out = []
    for _, group in frame.sort_values([*by, "seed"]).groupby(by, sort=True, dropna=False):
        first = group.iloc[0]
        out.append(Cell(label(first), group[METRIC].tolist(), group["seed"].astype(int).tolist(), {e: float(group[e].mean()) for e in extra}))
    return out


def table(rows: list[Cell], extra_names: tuple[str, ...] = ()) -> str:
    head = "| cell | mean test % | 95% t-interval over seeds | seeds | per seed" + "".join(f" | {n}" for n in extra_names) + " |"
    rule = "|" + " --- |" * (5 + len(extra_names))
    return "\n".join([head, rule, *(c.row() for c in rows)])


# ---- the claims --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One published claim, declared in full before any run: what it says (the abstract's
    words, docs/papers.md), the small specs that test it, the checks that decide it, which
    sweeps have their lr chosen per cell on a tuning seed, and the budget it runs at."""

    key: str
    title: str
    published: str  # the abstract sentence(s), quoted from docs/papers.md
    sweeps: tuple[str, ...]  # small specs in sweeps/repro (without .yaml)
    paper_spec: str
    # (trials per sweep, figure path[, epochs per sweep]) -> body (tables, figure, notes)
    analyse: Callable[..., str]
    groups: tuple[Group, ...]
    combine: str = "all"  # over the groups: "all" must hold, or "any" one suffices
    tuned: tuple[str, ...] = ()  # sweeps whose lr is chosen per cell (tuning_spec)
    budget: str = ""  # the budget, and where the fair one did not fit
    epochs: bool = False  # the analysis also reads the sweeps' epochs tables (passed as `epochs`)
    # derived frames the checks read (e.g. the lottery's per-level scores), from (data, epochs)
    derive: Callable[..., dict[str, pd.DataFrame]] | None = None
    fixed_seeds: tuple[str, ...] = ()  # descriptive sweeps whose seeds stay as in their file


def _figure(path: Path, draw: Callable[[object], None], xlabel: str, ylabel: str = "test accuracy at best val") -> None:
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot()
    draw(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _series(ax, frame: pd.DataFrame, x: str, label: str, style: str = "o-", method: str | None = None) -> None:
    """Every seed's point and the line of means, in the method's colour of every figure
    (analysis.plots.method_color: dense always black)."""
    color = method_color(method if method else frame["method"].iloc[0] if "method" in frame and len(frame) else None)
    ax.scatter(frame[x], frame[METRIC], s=12, alpha=0.5, color=color)
    means = frame.groupby(x)[METRIC].mean()
    ax.plot(means.index, means.values, style, label=label, color=color)


MLP_NO_BIAS = (
    "The MLP has no biases (hidden-networks' FC layers have none; docs/methods.md). Published MNIST-1D "
    "MLP reference points (Greydanus 2020, about 68%) use biases; the difference measured here is about 3 points."
)


def analyse_width(data, fig_path):
    bodies, panels = [], []
    for sweep, arch in (("repro_edge_popup_width", "MLP"), ("repro_edge_popup_width_conv", "1-D Conv2")):
        if sweep not in data:
            continue
        frame = data[sweep]
        rows = cells(frame, ["method", "width"], lambda r, arch=arch: f"{arch} {r['method']} width {r['width']:g}")
        bodies.append(table(rows))
        panels.append((arch, frame[frame.method == "edge_popup"], frame[frame.method == "dense"]))

    def draw(ax):
        for i, (arch, ep, dense) in enumerate(panels):
            _series(ax, ep, "width", f"{arch} edge_popup k=0.5", "o-" if i == 0 else "^-.", "edge_popup")
            _series(ax, dense, "width", f"{arch} dense", "s--" if i == 0 else "D:", "dense")
        ax.set_xscale("log", base=2)

    _figure(fig_path, draw, "width multiplier")
    return "\n\n".join([*bodies, MLP_NO_BIAS])


def analyse_k(data, fig_path):
    frame = data["repro_edge_popup_k"]
    rows = cells(frame, ["keep_fraction"], lambda r: f"k = {r['keep_fraction']:g}", (DENSITY,))
    _figure(fig_path, lambda ax: _series(ax, frame, "keep_fraction", "edge_popup, MLP width 2", method="edge_popup"), "keep fraction k")
    return table(rows, (DENSITY,)) + "\n\n" + MLP_NO_BIAS


def analyse_bn(data, fig_path):
    frame = data["repro_bn_only"]
    dense = data.get("repro_bn_only_dense", pd.DataFrame())
    both = pd.concat([frame, dense], ignore_index=True)
    rows = cells(both, ["method", "depth", "width"], lambda r: f"{r['method']} ResNet-{int(r['depth'])} width {r['width']:g}", (DISABLED_FEATURES,))
    trend = ""
    budget = data.get("repro_bn_only_budget")
    if budget is not None and not budget.empty:
        at_full = frame[(frame.depth == 8) & np.isclose(frame.width, 1)]
        points = pd.concat([budget, at_full], ignore_index=True).groupby("epochs")[DISABLED_FEATURES].agg(["mean", "count"])
        trend = ("\n\nDisabled features of BN-only ResNet-8 (width 1) over the training budget (epochs: mean fraction, seeds): "
                 + ", ".join(f"{int(e)}: {100 * r['mean']:.1f}% (n = {int(r['count'])})" for e, r in points.iterrows())
                 + " (the paper's count is after 160 epochs on CIFAR-10).")

    def draw(ax):
        deep = frame[frame.width == 1]
        _series(ax, deep, "depth", "bn_only, width 1 (x = depth)")
        wide = frame[frame.depth == 8].assign(depth=lambda f: 8 * f.width)
        _series(ax, wide, "depth", "bn_only, ResNet-8 (x = 8 x width)", "s--")

    _figure(fig_path, draw, "depth, or 8 x width")
    return table(rows, (DISABLED_FEATURES,)) + trend


def analyse_connectivity(data, fig_path):
    frame = data["repro_connectivity"]
    rows = cells(frame, ["method", "penalty"], lambda r: r["method"] + ("" if r["method"] == "dense" else f" penalty {r['penalty']:g}"), (CHANGED_FRACTION, DENSITY))
    dense = frame[frame.method == "dense"][METRIC].mean()

    def draw(ax):
        for (method, penalty), sel in frame[frame.method != "dense"].groupby(["method", "penalty"]):
            ax.scatter(sel[CHANGED_FRACTION], sel[METRIC], label=f"{method} penalty {penalty:g}", color=method_color(method),
                       marker="o" if penalty < 0 else "s", facecolors="none" if penalty >= 0 else None)  # the penalties of one method: filled vs open
        ax.axhline(dense, color="k", ls="--", label="dense")
        ax.axhline(0.9 * dense, color="k", ls=":", label="90% of dense")
        ax.axvline(0.1, color="grey", ls=":")

    _figure(fig_path, draw, "changed fraction (connections pruned or signs flipped)")
    return table(rows, (CHANGED_FRACTION, DENSITY)) + "\n\n" + MLP_NO_BIAS


def analyse_fraction(data, fig_path):
    frame = data["repro_learn_fraction"].copy()
    frame.loc[frame.method == "dense", "keep_fraction"] = 1.0
    rows = cells(frame, ["keep_fraction"], lambda r: "dense (k = 1)" if r["method"] == "dense" else f"learn_fraction k = {r['keep_fraction']:g}")
    _figure(fig_path, lambda ax: (_series(ax, frame, "keep_fraction", "learn_fraction (k = 1: dense)", method="learn_fraction"), ax.set_xscale("log")), "fraction of weights learned")
    return table(rows) + "\n\n" + MLP_NO_BIAS


def analyse_supermask(data, fig_path):
    frame = data["repro_supermask"]
    rows = cells(frame, ["method", "supermask_eval"], lambda r: "dense" if r["method"] == "dense" else f"supermask, {r['supermask_eval']} evaluation", (DENSITY,))

    def draw(ax):
        groups = list(frame.groupby(["method", "supermask_eval"], dropna=False))
        for i, ((method, how), sel) in enumerate(groups):
            ax.scatter([i] * len(sel), sel[METRIC], label="dense" if method == "dense" else f"{method}, {how} evaluation", color=method_color(method), marker="o" if i % 2 else "s")
        ax.set_xticks(range(len(groups)), ["dense" if method == "dense" else f"{method}\n{how}" for (method, how), _ in groups])
        ax.axhline(CHANCE, color="k", ls=":", label="chance")

    _figure(fig_path, draw, "cell")
    return table(rows, (DENSITY,)) + "\n\n" + MLP_NO_BIAS


# Claim (g), in the abstract's words: winning tickets at 10-20% of the size, which match the
# dense network (trained to convergence) and beat their controls. Prune rate 0.2 per level,
# 10 pruned levels (0.8^10 = 0.107, "about 10%").
LOTTERY_SPARSE = 0.21  # the levels at or below this density (0.21, 0.17, 0.13, 0.107): ticket beats both controls
MATCH_MARGIN = 0.01  # "matches": ticket - dense above -1 point, at every pruned level down to the last
CONTROLS = ("reinit", "random_prune")
LOTTERY_LEVELS = 10  # pruned levels of the repro spec (keep_fraction 0.1074 = 0.8^10)
PATIENCE = 10  # the dense network has converged when its best validation epoch is at least this many epochs before its last
# the two arms of claim (g): the small MLP (with edge_popup at the final k) and the paper's
# MNIST network, LeNet 300-100 (docs/lottery.md)
LOTTERY_ARMS: tuple[tuple[str, str], ...] = (("repro_lottery", "MLP 40-100-100"), ("repro_lottery_lenet", "LeNet 300-100"))


def levels_key(sweep: str) -> str:
    """The derived frame the checks of (g) read for one arm."""
    return f"{sweep}:levels"


LEVELS = levels_key("repro_lottery")


def _t(values: np.ndarray) -> tuple[float, float, float, int]:
    """Mean, 95% Student-t interval over the seeds (low, high; NaN for one seed) and n."""
    values = np.asarray(values, float)
    if not len(values):
        return math.nan, math.nan, math.nan, 0
    lo, hi = paired_interval(values, 0.95)
    return float(values.mean()), lo, hi, len(values)


def _pm(values: np.ndarray, signed: bool = False) -> str:
    mean, lo, hi, n = _t(values)
    if not n:
        return ""
    centre = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return f"{centre} ± {100 * (hi - lo) / 2:.1f}" if n > 1 else centre


def lottery_levels(scores: pd.DataFrame) -> pd.DataFrame:
    """Per level: density and, per branch and paired difference, the per-seed values (arrays
    in seed order). `scores` is analysis.lottery.lottery_seed_scores (one line per branch).
    Differences pair the ticket and a control (or the dense level 0) of the same seed."""
    if (scores["line"] != scores["branch"]).any():
        raise ValueError(f"claim (g) wants one line per branch; got {sorted(scores['line'].unique())}")
    wide = scores.pivot_table(index="seed", columns=["level", "branch"], values=METRIC, aggfunc="first")
    dense = wide[(0, "ticket")]
    rows = []
    for level in sorted(scores["level"].unique()):
        density = float(scores.loc[scores["level"] == level, DENSITY].iloc[0])
        row: dict[str, object] = {"level": int(level), DENSITY: density}
        for branch in ("ticket", "supermask", *CONTROLS):
            row[branch] = wide[(level, branch)].dropna().to_numpy() if (level, branch) in wide else np.array([])
        for other, ref in [*((c, wide.get((level, c))) for c in CONTROLS), ("dense", dense if level else None)]:
            diff = (wide[(level, "ticket")] - ref).dropna().to_numpy() if ref is not None else np.array([])
            row[f"ticket - {other}"] = diff
        rows.append(row)
    return pd.DataFrame(rows)


def dense_convergence(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per lottery trial: the dense training's (level 0) best-validation epoch, its last epoch,
    and whether it converged by the patience rule (best epoch <= last - PATIENCE)."""
    rows = epochs[(epochs["level"] == 0) & (epochs["branch"] == "ticket")].dropna(subset=[VAL_ACC])
    out = []
    for trial_id, g in rows.groupby("trial_id"):
        g = g.sort_values("epoch")
        at = g["level_epoch"] if "level_epoch" in g and g["level_epoch"].notna().all() else pd.Series(np.arange(1, len(g) + 1), index=g.index)
        best = int(at.loc[g[VAL_ACC].astype(float).idxmax()])
        last = int(at.max())
        out.append({"trial_id": trial_id, BEST_EPOCH: best, "last_epoch": last, "converged": best <= last - PATIENCE})
    return pd.DataFrame(out, columns=["trial_id", BEST_EPOCH, "last_epoch", "converged"])


def lottery_frames(data, epochs) -> dict[str, pd.DataFrame]:
    """Per arm, the frame the checks of (g) read: one row per (branch, level, seed), the
    trial's health flags carried over, and "not_converged" added to the dense level of a trial
    whose dense training had not converged (a baseline the claim cannot rest on)."""
    out = {}
    for sweep, _ in LOTTERY_ARMS:
        if sweep not in data:
            continue
        frame, sweep_epochs = data[sweep], epochs[sweep]
        scores = lottery_seed_scores(frame, sweep_epochs)
        flags = frame.set_index("trial_id")[HEALTH_FLAGS] if HEALTH_FLAGS in frame else pd.Series(dtype="string")
        scores[HEALTH_FLAGS] = scores["trial_id"].map(flags).astype("string")
        conv = dense_convergence(sweep_epochs[sweep_epochs["trial_id"].isin(frame["trial_id"])]).set_index("trial_id")["converged"]
        late = (scores["level"] == 0) & (scores["branch"] == "ticket") & scores["trial_id"].map(conv).eq(False)
        scores.loc[late, HEALTH_FLAGS] = [",".join(x for x in (f if isinstance(f, str) else "", "not_converged") if x) for f in scores.loc[late, HEALTH_FLAGS]]
        out[levels_key(sweep)] = scores
    return out


def lottery_groups(sweep: str = "repro_lottery", arch: str = "MLP 40-100-100", levels: int = LOTTERY_LEVELS, rate: float = 0.2) -> tuple[Group, ...]:
    key = levels_key(sweep)
    dense = {"branch": "ticket", "level": 0}
    sparse = [lv for lv in range(1, levels + 1) if (1 - rate) ** lv <= LOTTERY_SPARSE + 1e-3]
    beats = tuple(
        Check(f"{arch}: ticket - {c} at level {lv} (density {(1 - rate) ** lv:.3f})", key, {"t": {"branch": "ticket", "level": lv}, "c": {"branch": c, "level": lv}}, "t - c", 0.0)
        for lv in sparse for c in CONTROLS
    )
    matches = tuple(
        Check(f"{arch}: ticket - dense at level {lv} (density {(1 - rate) ** lv:.3f})", key, {"t": {"branch": "ticket", "level": lv}, "d": dense}, "t - d", -MATCH_MARGIN)
        for lv in range(1, levels + 1)
    )
    return (Group(f"{arch}: the ticket beats reinit and random pruning at every level of density <= {LOTTERY_SPARSE:g}", beats),
            Group(f"{arch}: the ticket matches the converged dense network (ticket - dense above -{100 * MATCH_MARGIN:g} point) at every pruned level, down to density {(1 - rate) ** levels:.3f}", matches))


def lottery_table(levels: pd.DataFrame) -> str:
    columns = ["ticket", "reinit", "random_prune", "supermask", "ticket - reinit", "ticket - random_prune", "ticket - dense"]
    head = "| level | density | " + " | ".join(columns) + " |"
    lines = [head, "|" + " --- |" * (2 + len(columns))]
    for _, r in levels.iterrows():
        cells = [_pm(r[c], signed=c.startswith("ticket -")) for c in columns]
        lines.append(f"| {r['level']} | {r[DENSITY]:.3f} | " + " | ".join(cells) + " |")
    ns = sorted({len(v) for c in columns for v in levels[c] if len(v)})
    return "\n".join(lines) + (
        f"\n\nTest accuracy % at each level's best-validation epoch: mean ± half-width of a 95% Student-t interval over the seeds "
        f"(n = {', '.join(map(str, ns))}; normality assumed: its coverage, measured on Gaussian seed noise, is in tests/test_analysis_coverage.py). "
        "Differences in points, paired by seed (the same data order; reinit: the same mask); level 0 is the dense network."
    )


def analyse_lottery(data, fig_path, epochs):
    parts = []
    for sweep, arch in LOTTERY_ARMS:
        if sweep not in data:
            parts.append(f"**{arch}.** Not run yet (no finished trials of {sweep}).")
            continue
        frame, sweep_epochs = data[sweep], epochs[sweep]
        scores = lottery_seed_scores(frame, sweep_epochs)
        levels = lottery_levels(scores)
        final = levels.iloc[-1]
        edge = frame[frame["method"] == "edge_popup"].sort_values("seed")
        at_k = edge[np.isclose(edge["keep_fraction"], final[DENSITY], atol=2e-3)][METRIC].to_numpy()
        k_line = (
            f"At k = {final[DENSITY]:.3f}: the supermask (the final mask on the initial weights, untrained; Zhou et al. 2019) {_pm(final['supermask'])}%, "
            + (f"edge_popup (scores trained on random weights) {_pm(at_k)}% (n = {len(at_k)}), " if len(at_k) else "")
            + f"the ticket (trained) {_pm(final['ticket'])}%; chance {100 * CHANCE:.0f}%."
        )
        conv = dense_convergence(sweep_epochs[sweep_epochs["trial_id"].isin(frame["trial_id"])])
        conv_line = (
            f"Dense network (level 0) trained to convergence by the patience rule (best validation epoch at least {PATIENCE} epochs before the last): "
            f"{int(conv['converged'].sum())} of {len(conv)} seeds (best epochs {', '.join(str(b) for b in conv[BEST_EPOCH])} of {', '.join(sorted({str(x) for x in conv['last_epoch']}))})."
            if len(conv) else "Dense convergence: no level-0 epochs stored."
        )
        suffix = "" if sweep == LOTTERY_ARMS[0][0] else "_lenet"
        path = fig_path.with_name(fig_path.stem + suffix + fig_path.suffix)
        fig = plot_lottery(lottery_points(frame, sweep_epochs, frame))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        per_seed = path.with_suffix(".csv")  # every seed's value of every point
        scores.to_csv(per_seed, index=False)
        image = "" if not suffix else f"\n\n![claim g, {arch}](docs/reproductions/{path.name})"
        parts.append(f"**{arch}.**\n\n" + lottery_table(levels) + f" Every seed's value: `docs/reproductions/{per_seed.name}`.\n\n" + k_line + "\n\n" + conv_line + image)
    return "\n\n".join([*parts, MLP_NO_BIAS])


def width_group(sweep: str, arch: str, widths: Sequence[float], ratio: float = 0.9) -> Group:
    """Claim (a) on one architecture: the dense - edge-popup gap shrinks from the narrowest to
    the widest width (paired by seed), and at the widest edge-popup reaches `ratio` of dense.
    Where a width's cells hold a flagged trial, the next pair of healthy widths decides (widest
    first), fixed here in advance, and the verdict says so."""

    def cell(method: str, w: float) -> dict[str, Any]:
        return {"method": method, "width": w}

    def gap(lo: float, hi: float) -> Check:
        return Check(f"{arch}: the gap shrinks from width {lo:g} to {hi:g}", sweep,
                     {"d0": cell("dense", lo), "e0": cell("edge_popup", lo), "d1": cell("dense", hi), "e1": cell("edge_popup", hi)},
                     "(d0 - e0) - (d1 - e1)", 0.0)

    def reach(w: float) -> Check:
        return Check(f"{arch}: edge-popup / dense at width {w:g}", sweep, {"e": cell("edge_popup", w), "d": cell("dense", w)}, "e / d", ratio, unit="ratio")

    pairs = sorted(((i, j) for i in range(len(widths)) for j in range(i + 1, len(widths))), key=lambda p: (-p[1], p[0]))
    gaps = [gap(widths[i], widths[j]) for i, j in pairs]
    reaches = [reach(w) for w in reversed(widths)]
    return Group(f"{arch}", (Check(**{**gaps[0].__dict__, "instead": tuple(gaps[1:])}), Check(**{**reaches[0].__dict__, "instead": tuple(reaches[1:])})))


def _k(k: float) -> dict[str, Any]:
    return {"method": "learn_fraction", "keep_fraction": k}


CLAIMS: tuple[Claim, ...] = (
    Claim("a", "edge-popup: wider random networks hide subnetworks that approach dense accuracy",
          "Ramanujan et al. 2020 (abstract): \"We empirically show that as randomly weighted neural networks with fixed weights grow wider and deeper, "
          "an 'untrained subnetwork' approaches a network with learned weights in accuracy.\"",
          ("repro_edge_popup_width", "repro_edge_popup_width_conv"), "sweeps/edge_popup_width.yaml", analyse_width,
          (width_group("repro_edge_popup_width", "MLP", (0.5, 1, 2, 4)), width_group("repro_edge_popup_width_conv", "1-D Conv2", (0.25, 0.5, 1, 2, 4))),
          tuned=("repro_edge_popup_width", "repro_edge_popup_width_conv"),
          budget="MLP arm 100 epochs; 1-D Conv2 arm 15 epochs, the largest that fits about 45 minutes at 5 seeds with its lr tuning (estimated from measured per-epoch costs: about 40 min; 30 epochs would take about 75). If the sequential rule takes the claim to 10 seeds it runs about 60 min, over the limit."),
    Claim("b", "edge-popup: accuracy is hump-shaped in k",
          "Ramanujan et al. 2020, Conv2..Conv8 figure (not the abstract): best k between 0.3 and 0.7 (about 77.5 / 86 / 88 / 88.5% for Conv2 / 4 / 6 / 8 on CIFAR-10)",
          ("repro_edge_popup_k",), "sweeps/edge_popup_conv.yaml", analyse_k,
          (Group("k = 0.5 beats both ends", (
              Check("k = 0.5 minus k = 0.05", "repro_edge_popup_k", {"m": {"keep_fraction": 0.5}, "e": {"keep_fraction": 0.05}}, "m - e", 0.0),
              Check("k = 0.5 minus k = 0.9", "repro_edge_popup_k", {"m": {"keep_fraction": 0.5}, "e": {"keep_fraction": 0.9}}, "m - e", 0.0))),),
          tuned=("repro_edge_popup_k",), budget="100 epochs."),
    Claim("c", "BN-only: accuracy grows with depth and width; BatchNorm disables a sizeable fraction of features",
          "Frankle, Schwab & Morcos 2021 (abstract): \"sufficiently deep ResNets reach 82% (CIFAR-10) and 32% (ImageNet, top-5) accuracy in this configuration, "
          "far higher than when training an equivalent number of randomly chosen parameters elsewhere in the network. BatchNorm achieves this performance "
          "in part by naturally learning to disable around a third of the random features.\"",
          ("repro_bn_only", "repro_bn_only_dense", "repro_bn_only_budget"), "sweeps/bn_only_resnet.yaml", analyse_bn,
          (Group("accuracy grows with depth and width", (
              Check("BN-only ResNet-20 minus ResNet-8 (width 1)", "repro_bn_only", {"a": {"depth": 20, "width": 1}, "b": {"depth": 8, "width": 1}}, "a - b", 0.0),
              Check("BN-only ResNet-8 width 4 minus width 1", "repro_bn_only", {"a": {"depth": 8, "width": 4}, "b": {"depth": 8, "width": 1}}, "a - b", 0.0),
              Check("disabled features, BN-only ResNet-20", "repro_bn_only", {"x": {"depth": 20, "width": 1}}, "x", 1 / 3 - 0.1, metric=DISABLED_FEATURES, unit="ratio",
                    decides=False, note="untested at this budget: the paper counts after 160 epochs on CIFAR-10; 100 epochs on MNIST-1D is far from it (the trend over epochs is below)"))),),
          budget="100 epochs (open_lth trains 160; the step schedule is replaced by cosine): estimated 25 min at 5 seeds, about 47 min at 10.", fixed_seeds=("repro_bn_only_budget",)),
    Claim("d", "Ivan & Florian: changing < 10% of connections reaches > 90% of dense accuracy",
          "Ivan & Florian 2020 (abstract): \"If we try to minimize the number of changed connections, by changing less than 10% of the total it is already "
          "possible to reach more than 90% of the accuracy achieved by standard training.\"",
          ("repro_connectivity",), "sweeps/connectivity.yaml", analyse_connectivity,
          tuple(Group(f"{m} (penalty -1)", (
              Check(f"{m} / dense", "repro_connectivity", {"x": {"method": m, "penalty": -1.0}, "d": {"method": "dense"}}, "x / d", 0.9, unit="ratio"),
              Check(f"{m} changed fraction", "repro_connectivity", {"x": {"method": m, "penalty": -1.0}}, "x", 0.1, above=False, metric=CHANGED_FRACTION, unit="ratio")))
              for m in ("free_prune", "sign_flip")),
          combine="any", tuned=("repro_connectivity",), budget="50 epochs (the reference trains 20 by default)."),
    Claim("e", "Rosenfeld & Tsotsos: learning a small random fraction of the weights comes close to training all",
          "Rosenfeld & Tsotsos 2019 (abstract): \"As our experiments show, fixing even the majority of the parameters of the network often results in "
          "performance which is on par with the performance of learning all of them.\"",
          ("repro_learn_fraction",), "(none: none of the four reference repositories is Rosenfeld & Tsotsos'; the small spec is the only one)", analyse_fraction,
          (Group("k = 0.2 learned (the majority, 80%, fixed) is on par with dense", (
              Check("learn_fraction k = 0.2 / dense", "repro_learn_fraction", {"x": _k(0.2), "d": {"method": "dense"}}, "x / d", 0.9, unit="ratio"),
              Check("learn_fraction k = 0.05 / dense", "repro_learn_fraction", {"x": _k(0.05), "d": {"method": "dense"}}, "x / d", 0.9, unit="ratio", decides=False, note="descriptive"),
              Check("learn_fraction k = 0.5 / dense", "repro_learn_fraction", {"x": _k(0.5), "d": {"method": "dense"}}, "x / d", 0.9, unit="ratio", decides=False, note="descriptive"))),),
          tuned=("repro_learn_fraction",), budget="100 epochs."),
    Claim("f", "Zhou et al.: supermasks reach far above chance",
          "Zhou et al. 2019 (abstract): \"Finally, we discover the existence of Supermasks, or masks that can be applied to an untrained, randomly initialized network "
          "to produce a model with performance far better than chance (86% on MNIST, 41% on CIFAR-10).\"",
          ("repro_supermask",), "sweeps/supermask_mnist.yaml", analyse_supermask,
          (Group("chance-corrected accuracy relative to dense, (acc - chance) / (dense - chance), sampled evaluation (the reference's)", (
              Check("supermask (sampled) chance-corrected / dense", "repro_supermask", {"x": {"method": "supermask", "supermask_eval": "sampled"}, "d": {"method": "dense"}},
                    "(x - chance) / (d - chance)", 0.5, unit="ratio"),
              Check("supermask (deterministic) chance-corrected / dense", "repro_supermask", {"x": {"method": "supermask", "supermask_eval": "deterministic"}, "d": {"method": "dense"}},
                    "(x - chance) / (d - chance)", 0.5, unit="ratio", decides=False, note="descriptive"))),),
          tuned=("repro_supermask",), budget="100 epochs (Zhou: 2000)."),
    Claim("g", "Lottery tickets: a pruned, rewound subnetwork trains as well as the dense network and beats random reinitialization and random pruning",
          "Frankle & Carbin 2019 (abstract): \"We consistently find winning tickets that are less than 10-20% of the size of several fully-connected and "
          "convolutional feed-forward architectures for MNIST and CIFAR10. Above this size, the winning tickets that we find learn faster than the original "
          "network and reach higher test accuracy.\" (docs/lottery.md)",
          tuple(s for s, _ in LOTTERY_ARMS), "sweeps/lottery_conv_cifar10.yaml", analyse_lottery,
          tuple(g for sweep, arch in LOTTERY_ARMS for g in lottery_groups(sweep, arch)),
          budget="Epochs per level at a constant Adam rate 1.2e-3 until the dense network converges (patience 10): 100 for the MLP arm (best validation at epoch 79, seed 0), 50 for LeNet 300-100 (best at 26); 10 pruned levels (density 0.107). Estimated about 30 min at 5 seeds; if the sequential rule takes it to 10 seeds, about 60 min, over the 45-minute limit.", epochs=True, derive=lottery_frames),
)


# ---- specs as run: the lr chosen per cell, the seeds of the current step -------------------------
def spec_file(sweep: str) -> Path:
    return REPRO_DIR / f"{sweep.removeprefix('repro_')}.yaml"


def raw_spec(sweep: str) -> dict[str, Any]:
    return load_yaml_file(spec_file(sweep), "spec")


def grid_cells(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The spec's grid crossed without its seed axis: one dict of fields per cell (a mapping
    entry gives its axis' field and its companions), in the grid's order."""
    out: list[dict[str, Any]] = [{}]
    for axis, values in raw.get("grid", {}).items():
        if axis == "seed":
            continue
        out = [{**c, **(dict(v) if isinstance(v, Mapping) else {axis: v})} for c in out for v in values]
    return out


def _round(lr: float) -> float:
    return float(f"{lr:.3g}")


def tuning_spec(raw: Mapping[str, Any], store: ResultStore | None = None) -> dict[str, Any]:
    """The tuning sweep of a spec: every cell at lr x LR_FACTORS (its own lr, or the base lr),
    plus the widened lrs its finished trials in `store` call for (tuned_cells), on TUNE_SEED
    only (a seed no reported trial uses). lr is the grid axis; each entry carries its cell's
    fields as companions, so the spec's own grid machinery runs it."""
    entries = [{**t["cell"], "lr": lr} for t in tuned_cells(raw, store) for lr in t["lrs"]]
    return {**{k: v for k, v in raw.items() if k != "grid"}, "name": f"{raw['name']}_tune", "grid": {"lr": entries, "seed": [TUNE_SEED]},
            "description": f"lr tuning of {raw['name']}: lr x {{1/3, 1, 3}} per cell on seed {TUNE_SEED}, "
                           f"widened x{LR_WIDEN_STEP:g} beyond an edge choice at most {LR_WIDEN_STEPS} times"}


def _trial_id(raw: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    return make_config({**raw["base"], **fields}).normalized().trial_id


def _excluding(cell: Mapping[str, Any], flags: str) -> str:
    """The flags of a tuning trial that rule its lr out. `dead_units` does not in a method's
    own cells: there it is mostly the subnetwork found (edge-popup prunes whole units: 57-68%
    of a layer dead at k 0.3-0.5 with accuracy still rising; at k 0.05 about 13% of a layer has
    no kept input at all; docs/methods.md, "Dead units in a method's own cells"); in a
    baseline (dense) cell it is the recipe failing."""
    names = [f for f in flags.split(",") if f]
    if cell.get("method") != "dense":
        names = [f for f in names if f != DEAD_UNITS]
    return ",".join(names)


def tuned_cells(raw: Mapping[str, Any], store: ResultStore | None) -> list[dict[str, Any]]:
    """Per cell (grid_cells order): `lrs`, every lr the widening rule asks for so far. Once
    each of them has a completed tuning trial: `tried` (lr -> best validation accuracy),
    `flagged` (lr -> its flags), the chosen `lr` (metrics.best_by_validation among the lrs
    whose flags do not rule them out, _excluding; ties keep the order 1, 1/3, 3, then the
    widened ones) and `all_flagged` (every lr ruled out: the best of them is chosen, and the
    report says so); `lr` is None while a trial is missing. An lr that kills half a dense layer
    or leaves the loss at ln(classes) is no fair recipe, however its validation accuracy reads
    (claim e's dense baseline at 0.009: dead_units in 4 of 5 reported seeds)."""
    name = f"{raw['name']}_tune"
    trials = None
    if store is not None and name in store.sweeps():
        trials = store.load_trials(name)
        trials = trials[trials["status"] == COMPLETED].set_index("trial_id")
    out = []
    for cell in grid_cells(raw):
        lr0 = cell.get("lr", raw["base"].get("lr"))
        if lr0 is None:
            raise ValueError(f"{raw['name']}: a tuned cell needs an lr (base or grid) to scale; cell {cell}")
        factors = list(LR_FACTORS)
        while True:
            rows = []
            for order, f in enumerate(sorted(factors, key=lambda f: abs(math.log(f)))):  # 1 first: a tie keeps the spec's lr
                lr = _round(lr0 * f)
                tid = _trial_id(raw, {**cell, "lr": lr, "seed": TUNE_SEED})
                if trials is None or tid not in trials.index:
                    break
                flags = trials.loc[tid, HEALTH_FLAGS] if HEALTH_FLAGS in trials.columns else None
                flags = flags if isinstance(flags, str) else ""
                rows.append({"cell": 0, "lr": lr, "factor": f, "order": order, BEST_VAL_ACC: float(trials.loc[tid, BEST_VAL_ACC]),
                             "flags": flags, "excluding": _excluding(cell, flags)})
            lrs = sorted(_round(lr0 * f) for f in factors)
            if len(rows) < len(factors):
                out.append({"cell": cell, "lrs": lrs, "lr": None})
                break
            tried = pd.DataFrame(rows)
            healthy = tried[tried["excluding"] == ""]
            best = best_by_validation(healthy if len(healthy) else tried, ["cell"], BEST_VAL_ACC).iloc[0]
            edge = best["factor"] in (min(factors), max(factors))
            if edge and len(factors) - len(LR_FACTORS) < LR_WIDEN_STEPS:
                factors.append(best["factor"] / LR_WIDEN_STEP if best["factor"] == min(factors) else best["factor"] * LR_WIDEN_STEP)
                continue
            out.append({"cell": cell, "lrs": lrs, "tried": dict(zip(tried["lr"], tried[BEST_VAL_ACC], strict=True)), "lr": float(best["lr"]),
                        "flagged": {lr: f for lr, f in zip(tried["lr"], tried["flags"], strict=True) if f}, "all_flagged": healthy.empty,
                        "edge": bool(edge)})
            break
    return out


def chosen_lrs(raw: Mapping[str, Any], store: ResultStore) -> list[dict[str, Any]] | None:
    """tuned_cells once every cell has chosen its lr; None until then."""
    cells = tuned_cells(raw, store)
    return None if any(c["lr"] is None for c in cells) else cells


def reported_spec(raw: Mapping[str, Any], seeds: Sequence[int], chosen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The spec as run for the report: its seeds replaced by `seeds`; with `chosen` (tuned
    sweeps), one grid entry per cell carrying its chosen lr."""
    spec = {**raw, "grid": {**raw.get("grid", {}), "seed": list(seeds)}}
    if chosen is not None:
        spec["grid"] = {"lr": [{**c["cell"], "lr": c["lr"]} for c in chosen], "seed": list(seeds)}
    return spec


def claim_seeds(claim: Claim, sweep: str, n: int) -> list[int]:
    return list(raw_spec(sweep)["grid"]["seed"]) if sweep in claim.fixed_seeds else list(range(n))


def resolved(claim: Claim, sweep: str, store: ResultStore, n: int) -> dict[str, Any] | None:
    """The spec of `sweep` as reported at n seeds; None while its lr tuning is not finished."""
    raw = raw_spec(sweep)
    chosen = None
    if sweep in claim.tuned:
        chosen = chosen_lrs(raw, store)
        if chosen is None:
            return None
    return reported_spec(raw, claim_seeds(claim, sweep, n), chosen)


def write_spec(spec: Mapping[str, Any], results: str) -> Path:
    path = Path(results) / SPECS / f"{spec['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by hidden_core.reproduce: the spec as run (do not edit)\n" + yaml.safe_dump(dict(spec), sort_keys=False))
    return path


# ---- running -------------------------------------------------------------------------------------
def run_spec(spec: Mapping[str, Any], results: str, timings: dict, timings_path: Path, key: str) -> None:
    """Run one spec unless every planned trial is already final. Its wall time is added to
    the sweep's timings when the run finished trials (a rerun that skips everything adds
    nothing); a changed spec file (its `key`) starts the count again."""
    store = ResultStore(results)
    planned = sorted(parse_spec(dict(spec)).plan().by_id)
    name = spec["name"]
    before = _done(store, name, planned)
    if before == len(planned):
        print(f"reproduce: {name}: all {before} trials already final in {results}", flush=True)
        return
    path = write_spec(spec, results)
    started = time.monotonic()
    cmd = [sys.executable, "-m", "hidden_core.cli", "sweep", "run", str(path), "--results", results, "--quiet"]
    print(f"reproduce: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True)
    seconds = time.monotonic() - started
    after = _done(ResultStore(results), name, planned)
    entry = timings.get(name, {})
    if entry.get("plan") != key:
        entry = {"plan": key, "seconds": 0.0}
    if after > before:
        entry["seconds"] = round(entry["seconds"] + seconds, 1)
    timings[name] = entry
    timings_path.write_text(json.dumps(timings, indent=1))


def run_claim(claim: Claim, results: str, timings: dict, timings_path: Path) -> None:
    """Tune (where declared), then run the reported sweeps at each seed step while the
    sequential rule asks for more seeds (SEED_STEPS)."""
    for sweep in claim.tuned:
        raw = raw_spec(sweep)
        for _ in range(1 + LR_WIDEN_STEPS):  # each round runs the lrs the previous one asked for
            if chosen_lrs(raw, ResultStore(results)) is not None:
                break
            run_spec(tuning_spec(raw, ResultStore(results)), results, timings, timings_path, _file_key(sweep))
    for n in SEED_STEPS:
        store = ResultStore(results)
        for sweep in claim.sweeps:
            spec = resolved(claim, sweep, store, n)
            if spec is None:
                raise RuntimeError(f"reproduce: {sweep}: its lr tuning did not finish every trial; rerun to retry the failed ones")
            run_spec(spec, results, timings, timings_path, _file_key(sweep))
        report = claim_data(claim, ResultStore(results), n)
        decision = decide_claim(claim, report.checked)
        chosen = ", ".join(f"{s}: " + "; ".join(f"{cell_name({k: v for k, v in c['cell'].items() if k != 'lr'})} -> lr {c['lr']:.3g}" for c in (chosen_lrs(raw_spec(s), store) or [])) for s in claim.tuned)
        if chosen:
            print(f"reproduce: ({claim.key}) lr chosen on seed {TUNE_SEED}: {chosen}", flush=True)
        print(f"reproduce: ({claim.key}) at {n} seeds: {decision.verdict}", flush=True)
        if not decision.straddles:
            break


def run_sweeps(results: str, timings_path: Path, only: Sequence[str] | None = None) -> None:
    """Run each claim (or the claims in `only`) one after another."""
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for claim in CLAIMS:
        if not only or claim.key in only:
            run_claim(claim, results, timings, timings_path)


def _file_key(sweep: str) -> str:
    return hashlib.sha256(spec_file(sweep).read_bytes()).hexdigest()[:16]


def _done(store: ResultStore, sweep: str, planned: list[str]) -> int:
    return len(store.final_trial_ids(sweep) & set(planned)) if sweep in store.sweeps() else 0


@dataclass
class ClaimData:
    n: int  # the seed step the data is read at
    frames: dict[str, pd.DataFrame]  # completed trials of each reported sweep's spec as run
    checked: dict[str, pd.DataFrame]  # what the checks read (frames plus derived frames)
    complete: bool  # every planned trial of every sweep is final
    untuned: list[str]  # tuned sweeps whose tuning has not finished
    epochs: dict[str, pd.DataFrame] = field(default_factory=dict)


def claim_data(claim: Claim, store: ResultStore, n: int) -> ClaimData:
    known = set(store.sweeps())
    frames, complete, untuned = {}, True, []
    for sweep in claim.sweeps:
        spec = resolved(claim, sweep, store, n)
        if spec is None:
            untuned.append(sweep)
            complete = False
            continue
        planned = set(parse_spec(spec).plan().by_id)
        if sweep not in known:
            complete = False
            continue
        frame = store.load_trials(sweep)
        complete &= planned <= store.final_trial_ids(sweep)
        frame = frame[(frame["status"] == COMPLETED) & frame["trial_id"].isin(planned)].reset_index(drop=True)
        if not frame.empty:
            frames[sweep] = frame
    epochs = {s: store.load_epochs(s, trial_ids=d["trial_id"]) for s, d in frames.items()} if claim.epochs else {}
    checked = dict(frames)
    if claim.derive is not None and frames:
        checked.update(claim.derive(frames, epochs))
    return ClaimData(n, frames, checked, complete, untuned, epochs)


def reported_data(claim: Claim, store: ResultStore) -> tuple[ClaimData, Decision, list[str]]:
    """The sequential rule replayed on the store: decide at each seed step whose trials are
    all final, go on while the decision straddles; returns the last step's data, its decision
    and what the rule did (one line per step)."""
    steps: list[str] = []
    data = claim_data(claim, store, SEED_STEPS[0])
    decision = decide_claim(claim, data.checked)
    steps.append(f"{SEED_STEPS[0]} seeds: {decision.verdict}" + ("" if data.complete else " (not every planned trial final)"))
    for n in SEED_STEPS[1:]:
        if not decision.straddles:
            break
        more = claim_data(claim, store, n)
        if not more.complete:
            steps.append(f"the rule asks for {n} seeds; not run yet")
            break
        data, decision = more, decide_claim(claim, more.checked)
        steps.append(f"{n} seeds: {decision.verdict}")
    else:
        if decision.straddles:
            steps.append(f"still straddling at {SEED_STEPS[-1]} seeds, the rule's last step: inconclusive")
    return data, decision, steps


HEADER = [
    "# Reproductions",
    "",
    "Regenerated by `make reproduce` (python -m hidden_core.reproduce): it runs the small specs in",
    "`sweeps/repro/` (a sweep skips trials already final in the store) and rewrites this file and",
    "the figures and per-seed values in `docs/reproductions/` from the store (`--only KEY` runs and",
    "rewrites one claim's section and keeps the others). Every number is MNIST-1D (4000 training",
    "signals, 10% held out for validation, 1000 test signals), on this machine's CPUs.",
    "",
    f"Metric: `{METRIC}`, test accuracy at the epoch of best validation accuracy. Each cell lists",
    "every seed and a 95% Student-t interval of its mean over the seeds.",
    "",
    "**How a claim is decided** (docs/methods.md, \"Verdicts\"). Each claim declares its decisive",
    "quantities in hidden_core/reproduce.py (CLAIMS) before any run: a gap, ratio or difference",
    "computed per seed from cells paired by seed, a threshold and a direction. The verdict is",
    "three-way from the 95% paired t-interval over seeds: **reproduced** (the interval lies on the",
    "claim's side), **not reproduced** (on the other side), **inconclusive** (it straddles the",
    "threshold). Every verdict line quotes its interval. Seeds: 5 per cell; while a claim is",
    f"inconclusive because an interval straddles, the sweeps run again with {' then '.join(map(str, SEED_STEPS[1:]))} seeds and",
    "the claim is re-decided (a sequential rule fixed in advance; over its three looks the rate of",
    "decisive verdicts at a true value exactly on the threshold is about 5% per side instead of",
    "2.5%, measured in tests/test_reproduce.py). A cell holding a trial flagged unhealthy",
    "(analysis.health: dead units, a loss stuck at ln(classes), train accuracy near chance) in a",
    "baseline cell, or a dense baseline whose accuracy falls as the network widens (paired over seeds),",
    "never decides silently: the check falls back to the healthy cells its declaration names, else the",
    "claim says \"inconclusive (baseline failed: ...)\". Learning rates (claims a, b, d, e, f) are chosen per cell on",
    f"validation from lr x {{1/3, 1, 3}} on seed {TUNE_SEED} (a seed no reported trial uses), widened x{LR_WIDEN_STEP:g} beyond",
    f"an edge choice at most {LR_WIDEN_STEPS} times; each",
    "section lists the lr chosen per cell.",
    "",
]
# a section's last line of numbers; --only reads the kept sections' times back from it
SECTION_TIMES = re.compile(r"^\d+ trials, ([\d.]+) min of training in total; wall time of the sweep run\(s\) that made them: (unknown|[\d.]+ min)\.$", re.M)


@dataclass
class Section:
    lines: list[str]
    train_seconds: float  # 0 when not run
    wall_seconds: float  # 0 when not run, NaN when unknown


def _lr_table(claim: Claim, store: ResultStore) -> list[str]:
    lines = []
    for sweep in claim.tuned:
        chosen = chosen_lrs(raw_spec(sweep), store)
        if chosen is None:
            continue
        lines += [f"Learning rate chosen per cell of `{sweep}` (best validation accuracy on seed {TUNE_SEED}, lr x {{1/3, 1, 3}} of the spec's lr, "
                  f"widened x{LR_WIDEN_STEP:g} beyond an edge choice at most {LR_WIDEN_STEPS} times; an lr whose tuning trial raised a health flag "
                  "is not chosen while the cell has a healthy one, `dead_units` in a method's own cells excepted, where it can be structural):", "",
                  "| cell | best val % per lr tried | chosen lr |", "| --- | --- | --- |"]
        for c in chosen:
            tried = ", ".join(f"{lr:.3g}: {100 * v:.1f}" + (f" (flagged: {c['flagged'][lr]})" if lr in c.get("flagged", {}) else "") for lr, v in sorted(c["tried"].items()))
            note = (" (grid edge after widening)" if c["edge"] else "") + (" (every lr flagged)" if c.get("all_flagged") else "")
            lines.append(f"| {cell_name({k: v for k, v in c['cell'].items() if k != 'lr'})} | {tried} | {c['lr']:.3g}{note} |")
        edges = sum(c["edge"] for c in chosen)
        lines += ["", f"{edges} of {len(chosen)} cells still chose an lr at the edge of the widened grid: a wider grid might do better there."] if edges else []
        lines.append("")
    return lines


def _tuning_frames(claim: Claim, store: ResultStore) -> list[pd.DataFrame]:
    names = [tuning_spec(raw_spec(s))["name"] for s in claim.tuned]
    return [store.load_trials(n) for n in names if n in store.sweeps()]


CELL_COLUMNS = ("method", "width", "depth", "keep_fraction", "penalty", "supermask_eval", "epochs")


def health_line(frames: Mapping[str, pd.DataFrame]) -> str:
    """Every cell of the claim's sweeps holding a flagged trial (analysis.health) and every
    dense line whose accuracy falls as it widens (falls_with_width), or that none does, or
    that the store predates the health record (unknown)."""
    known, bad = [], []
    for sweep, frame in frames.items():
        by = [c for c in CELL_COLUMNS if c in frame and frame[c].nunique(dropna=False) > 1] or ["method"]
        if HEALTH_FLAGS in frame and not frame[HEALTH_FLAGS].isna().all():
            known.append(sweep)
            for _, row in flagged_only(unhealthy_cells(frame, by)).iterrows():
                bad.append(f"{sweep} {cell_name({c: row[c] for c in by})}: {row['reasons']}")
        if "method" in frame:  # read from the accuracies themselves: needs no health record
            others = [c for c in by if c not in ("method", "width")]
            dense = frame[frame["method"] == "dense"]
            for key, line in dense.groupby(others, dropna=False, sort=True) if others else [((), dense)]:
                name = cell_name({"method": "dense", **dict(zip(others, key if isinstance(key, tuple) else (key,), strict=True))})
                for _, row in falls_with_width(line, {}).iterrows():
                    bad.append(f"{sweep} {name}: {_falls_text(row)}")
    unknown = [s for s in frames if s not in known]
    text = "**Training health** (analysis.health): " + ("; ".join(bad) + " flagged." if bad else "no flagged trial." if known else "")
    if unknown:
        text += f" Unknown for {', '.join(unknown)} (trials written before the health record)."
    return text


def claim_section(claim: Claim, store: ResultStore, known: set[str], timings: dict) -> Section:
    lines = [f"## ({claim.key}) {claim.title}", "", f"**Published.** {claim.published} (abstracts: docs/papers.md)", ""]
    specs = ", ".join(f"`sweeps/repro/{s.removeprefix('repro_')}.yaml` ({load_spec(spec_file(s)).description})" for s in claim.sweeps)
    paper = claim.paper_spec if claim.paper_spec.startswith("(") else f"`{claim.paper_spec}`"
    lines += [f"**Small spec.** {specs}. **Paper-scale spec.** {paper}.", "", f"**Budget.** {claim.budget}", ""]
    groups = "; ".join(f"{g.label}: " + ", ".join(f"`{c.formula}` {'>' if c.above else '<'} {c.threshold:.3g}" for c in g.checks if c.decides) for g in claim.groups)
    lines += [f"**Criterion (fixed before the run).** {groups}" + (" (one group suffices)." if claim.combine == "any" else "."), ""]
    data, decision, steps = reported_data(claim, store)
    if not data.frames or claim.sweeps[0] not in data.frames:
        why = f"the lr tuning of {', '.join(data.untuned)} has not finished" if data.untuned else f"no finished trials of {claim.sweeps[0]}"
        return Section([*lines, f"**Result.** Not run yet ({why}).", ""], 0.0, 0.0)
    missing = [s for s in claim.sweeps if s not in data.frames]
    if missing:
        lines += [f"(Not run yet: {', '.join(missing)}; the result below is without it.)", ""]
    tuning = _tuning_frames(claim, store)
    seconds = sum(float(d[TRAIN_SECONDS].sum()) for d in [*data.frames.values(), *tuning])
    wall = sum(timings.get(s, {}).get("seconds", math.nan) for s in claim.sweeps) + sum(timings.get(tuning_spec(raw_spec(s))["name"], {}).get("seconds", 0.0) for s in claim.tuned)
    fig = FIGURE_DIR / f"claim_{claim.key}.png"
    body = claim.analyse(data.frames, fig, **({"epochs": data.epochs} if claim.epochs else {}))
    per_seed = FIGURE_DIR / f"claim_{claim.key}_trials.csv"
    keep = ["method", "width", "depth", "keep_fraction", "penalty", "supermask_eval", "epochs", "lr", "seed", METRIC, BEST_VAL_ACC, CHANGED_FRACTION, DENSITY, DISABLED_FEATURES, HEALTH_FLAGS]
    pd.concat([d.assign(sweep=s)[["sweep", *(c for c in keep if c in d)]] for s, d in data.frames.items()], ignore_index=True).to_csv(per_seed, index=False)
    trials = sum(len(d) for d in data.frames.values()) + sum(len(t) for t in tuning)
    lines += [
        f"**Result.** {decision.text(claim)}",
        "",
        health_line(data.frames),
        "",
        f"Sequential seed rule: {'; '.join(steps)}.",
        "",
        *_lr_table(claim, store),
        body,
        "",
        f"Every reported trial's values: `docs/reproductions/{per_seed.name}`.",
        "",
        f"{trials} trials, {seconds / 60:.1f} min of training in total; wall time of the sweep run(s) that made them: {_minutes(wall)}.",
        "",
        f"![claim {claim.key}](docs/reproductions/{fig.name})",
        "",
    ]
    return Section(lines, seconds, wall)


def kept_sections(previous: str) -> dict[str, Section]:
    """The claim sections of an earlier report, by key, with their times read back."""
    out: dict[str, Section] = {}
    for block in re.split(r"^(?=## )", previous, flags=re.M):
        head = re.match(r"## \((\w+)\) ", block)
        if not head:
            continue
        times = SECTION_TIMES.search(block)
        train, wall = (float(times[1]) * 60, math.nan if times[2] == "unknown" else float(times[2].split()[0]) * 60) if times else (0.0, 0.0)
        out[head[1]] = Section(block.rstrip("\n").split("\n") + [""], train, wall)
    return out


def write_report(results: str, wall_seconds: float | None, only: Sequence[str] | None = None, previous: str | None = None) -> str:
    """The whole report from the store; with `only`, the sections of the other claims are
    kept from `previous` (the report as it was), and the totals add up every section."""
    store = ResultStore(results)
    known = set(store.sweeps())
    timings_path = Path(results) / TIMINGS
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    kept = kept_sections(previous) if only and previous else {}
    sections = [kept[c.key] if only and c.key not in only and c.key in kept else claim_section(c, store, known, timings) for c in CLAIMS]
    lines = [*HEADER, *(line for section in sections for line in section.lines), "## Time", ""]
    total = sum(section.train_seconds for section in sections)
    walls = [section.wall_seconds for section in sections if section.wall_seconds]
    lines.append(f"Training time summed over all trials: {total / 60:.1f} min (trials run two at a time on 2 shared cores).")
    if walls:
        unknown = sum(math.isnan(w) for w in walls)
        known_wall = sum(w for w in walls if not math.isnan(w))
        lines.append(f"Wall time of the sweep runs that made the trials, one after another: {_minutes(known_wall)}" + (f" (unknown for {unknown} claim(s), not counted)." if unknown else "."))
    if wall_seconds is not None:
        scope = f"`--only {' '.join(only)}`" if only else "`make reproduce`"
        lines.append(f"This {scope} invocation: {_minutes(wall_seconds)} (finished trials are skipped, so a rerun takes only the sweeps' start-up and the report).")
    return "\n".join(lines) + "\n"


def _minutes(seconds: float) -> str:
    return "unknown" if seconds is None or math.isnan(seconds) else f"{seconds / 60:.1f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hidden_core.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results/repro", help="results store of the reproduction sweeps (default results/repro)")
    parser.add_argument("--report-only", action="store_true", help="do not run the sweeps; only rewrite the report from the store")
    parser.add_argument("--out", default=str(REPORT), help="report file (default REPRODUCTIONS.md at the repository root)")
    parser.add_argument("--only", action="append", choices=[c.key for c in CLAIMS], metavar="KEY",
                        help=f"run and rewrite only this claim's section (repeatable; one of {', '.join(c.key for c in CLAIMS)}); the other sections are kept from --out")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if not args.report_only:
        Path(args.results).mkdir(parents=True, exist_ok=True)
        run_sweeps(args.results, Path(args.results) / TIMINGS, args.only)
    previous = Path(args.out).read_text() if args.only and Path(args.out).exists() else None
    text = write_report(args.results, None if args.report_only else time.monotonic() - started, args.only, previous)
    Path(args.out).write_text(text)
    print(f"reproduce: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
