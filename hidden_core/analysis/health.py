"""Training health in the analysis: which cells rest on an unhealthy run, and which lines get
worse as the network grows.

Training records per trial (records.HEALTH_FLAGS, results/README.md) the health flags it
raised: "" for a healthy trial, else the comma-separated sorted flag names (a layer dead
beyond its threshold, the loss stuck at ln(classes), train accuracy near chance, an early
loss spike). A store written before hidden recorded health has no value (null, or no column
at all): its health is unknown.

The cell health criterion (docs/methods.md, "Training health"): a cell (one value of each
cell column, e.g. method, width and the other grid fields; every seed) is unhealthy when at
least one of its judged trials carries a health flag or diverged. Judged: completed and
diverged trials (records.ANALYZED_STATUSES plus DIVERGED); a pruned trial was stopped early
by design and a failed one has no record. One seed of five that kills a layer is enough: the
recipe is fragile, and its other seeds' numbers are no fair baseline. The criterion acts on
whole cells and never on one trial's own accuracy: leaving out single seeds because their
own accuracy is low keeps the lucky ones and biases the mean upward (issue 20: the old
chance-level rule held the true gap in 1 of 18 intervals at the width near chance). A cell
with a judged trial whose health is unknown is reported as such, never as healthy.

Imports neither torch nor Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hidden_core.analysis.tables import require_columns
from hidden_core.health import parse_flags
from hidden_core.records import ANALYZED_STATUSES, DIVERGED, HEALTH_FLAGS

JUDGED_STATUSES: tuple[str, ...] = (*ANALYZED_STATUSES, DIVERGED)
UNKNOWN = "health unknown"  # the reason of a cell judged on trials without a health record
UNKNOWN_NOTE = "no health record: written before hidden recorded training health"
CELL_COLUMNS = ("n_trials", "n_flagged", "reasons")
WORSENING_COLUMNS = ("x_from", "x_to", "mean_change", "ci_low", "ci_high", "n_seeds")


def health_recorded(trials: pd.DataFrame) -> pd.Series:
    """True where a trial's health was recorded ("" counts: a healthy trial)."""
    if HEALTH_FLAGS not in trials.columns:
        return pd.Series(False, index=trials.index)
    return trials[HEALTH_FLAGS].notna()


def trial_flags(trials: pd.DataFrame) -> pd.Series:
    """Each trial's flag names as a tuple: () when healthy, None when unknown. A diverged
    trial carries 'diverged' besides whatever it recorded."""
    recorded = health_recorded(trials)
    values = trials[HEALTH_FLAGS] if HEALTH_FLAGS in trials.columns else pd.Series(None, index=trials.index, dtype=object)
    diverged = trials["status"].eq(DIVERGED) if "status" in trials.columns else pd.Series(False, index=trials.index)
    out = []
    for known, text, lost in zip(recorded, values, diverged, strict=True):
        flags = tuple(sorted(set(parse_flags(str(text))))) if known else None  # the store's one reading of the column
        if lost:
            flags = tuple(sorted({*(flags or ()), DIVERGED}))
        out.append(flags)
    return pd.Series(out, index=trials.index, dtype=object)


def judged(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials the criterion judges: completed and diverged (all rows without a status)."""
    return trials[trials["status"].isin(JUDGED_STATUSES)] if "status" in trials.columns else trials


def _unit(rows: pd.DataFrame) -> str:
    # 'seeds' when each trial of the cell is its own seed (the usual grid), else 'trials'
    return "seeds" if "seed" in rows.columns and rows["seed"].nunique() == len(rows) else "trials"


def unhealthy_cells(trials: pd.DataFrame, cell_columns: Sequence[str]) -> pd.DataFrame:
    """One row per cell (the distinct values of cell_columns) that fails the documented cell
    health criterion: at least one of its judged trials (completed or diverged) carries a
    health flag or diverged, or some judged trial's health is unknown (no record: a store
    written before hidden recorded it). Such a cell is listed with n_flagged = 0 and the
    reason 'health unknown ...': unknown is never healthy.

    Columns: *cell_columns, 'n_trials' (judged trials), 'n_flagged', 'reasons' (str:
    '; '-joined human-readable reasons, e.g. 'dead_units in 2 of 5 seeds'). Acts on whole
    cells, never on a trial's own accuracy."""
    cell_columns = list(cell_columns)
    require_columns(trials, cell_columns, "health cells")
    rows = judged(trials)
    columns = [*cell_columns, *CELL_COLUMNS]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(_flags=trial_flags(rows))
    out = []
    for key, cell in rows.groupby(cell_columns, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        flags = cell["_flags"]
        n, unit = len(cell), _unit(cell)
        flagged = flags.map(lambda f: bool(f))
        unknown = flags.isna()
        reasons = []
        counts: dict[str, int] = {}
        for f in flags[flagged & ~unknown]:
            for name in f:
                counts[name] = counts.get(name, 0) + 1
        reasons += [f"{name} in {count} of {n} {unit}" for name, count in sorted(counts.items())]
        if unknown.any():
            reasons.append(f"{UNKNOWN} for {int(unknown.sum())} of {n} {unit} ({UNKNOWN_NOTE})")
        if reasons:
            out.append({**dict(zip(cell_columns, key, strict=True)), "n_trials": n, "n_flagged": int((flagged & ~unknown).sum()), "reasons": "; ".join(reasons)})
    return pd.DataFrame(out, columns=columns)


def flagged_only(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of unhealthy_cells with at least one flagged trial (not only unknown)."""
    return cells[cells["n_flagged"] > 0]


def unknown_only(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of unhealthy_cells listed only because some health is unknown."""
    return cells[cells["n_flagged"] == 0]


def in_cells(trials: pd.DataFrame, cells: pd.DataFrame, cell_columns: Sequence[str]) -> pd.Series:
    """True for each trial that belongs to one of `cells` (rows of unhealthy_cells)."""
    cell_columns = list(cell_columns)
    if cells.empty:
        return pd.Series(False, index=trials.index)
    keys = set(cells[cell_columns].astype(str).itertuples(index=False, name=None))
    return pd.Series([k in keys for k in trials[cell_columns].astype(str).itertuples(index=False, name=None)], index=trials.index)


def worsening_baselines(trials: pd.DataFrame, x: str, by: Sequence[str], metric: str) -> pd.DataFrame:
    """Per line (by) and consecutive x values: flags where the metric gets worse as x grows
    beyond the seed spread, paired by seed.

    For each line and each pair of consecutive x values it was measured at, the change of
    the metric from x_from to x_to per seed (a seed's runs share their initial draws), and
    the 95% paired Student-t interval of its mean (intervals.paired_interval; at least 2
    shared seeds). Completed trials only when a status column is present; several rows of
    one line, x and seed are averaged (pass one row per seed, e.g. the scaling analysis's
    selected points). Columns: *by, 'x_from', 'x_to', 'mean_change', 'ci_low', 'ci_high',
    'n_seeds' (only rows where the paired 95% t-interval of the change lies below 0)."""
    # imported here: scipy loads only when asked (the sweep summary needs none of it)
    from hidden_core.analysis.intervals import paired_interval

    by = list(by)
    require_columns(trials, [*by, x, metric, "seed"], "worsening baselines")
    columns = [*by, *WORSENING_COLUMNS]
    rows = trials[trials["status"].isin(ANALYZED_STATUSES)] if "status" in trials.columns else trials
    rows = rows.dropna(subset=[x, metric])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for key, line in rows.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        per_seed = line.groupby([x, "seed"])[metric].mean().unstack("seed")  # x by seed
        xs = sorted(per_seed.index)
        for lo_x, hi_x in zip(xs, xs[1:], strict=False):
            change = (per_seed.loc[hi_x] - per_seed.loc[lo_x]).dropna().to_numpy(float)
            ci_low, ci_high = paired_interval(change, 0.95)
            if len(change) >= 2 and np.isfinite(ci_high) and ci_high < 0:
                out.append({**dict(zip(by, key, strict=True)), "x_from": float(lo_x), "x_to": float(hi_x), "mean_change": float(change.mean()),
                            "ci_low": float(ci_low), "ci_high": float(ci_high), "n_seeds": len(change)})
    return pd.DataFrame(out, columns=columns)


def describe_cells(cells: pd.DataFrame, cell_columns: Sequence[str], limit: int | None = None) -> list[str]:
    """'dense, width=4: dead_units in 2 of 5 seeds' per cell (at most `limit`, then '... and
    N more cells')."""
    cell_columns = list(cell_columns)
    lines = []
    for _, row in cells.iterrows():
        parts = [str(row[c]) if c in ("label", "group", "line", "cell", "method") else f"{c}={_fmt(row[c])}" for c in cell_columns]
        lines.append(f"{', '.join(parts)}: {row['reasons']}")
    if limit is not None and len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more cells"]
    return lines


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
