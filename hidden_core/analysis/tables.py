"""Summaries of trial tables and their text rendering (terminal and Markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from hidden_core.analysis.metrics import best_by_validation, selection_column
from hidden_core.config import TrialConfig
from hidden_core.errors import ConfigError
from hidden_core.records import TEST_METRIC

# what a summary averages by default: the selection metric and the one test metric
SUMMARY_METRICS = (selection_column(TEST_METRIC), TEST_METRIC)
CONFIG_FIELDS: tuple[str, ...] = tuple(TrialConfig.model_fields)


def cell_axes(trials: pd.DataFrame, skip: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(grid axes, searched axes): the config fields (seed and `skip` aside) whose values
    differ among `trials`. A field that differs inside one cell (same cell_id: every config
    axis but seed and the searched ones) was searched: its values belong to the trial that
    validation chooses, never a group of their own."""
    skip = {"seed", *skip}
    columns = [c for c in CONFIG_FIELDS if c in trials.columns and c not in skip]
    values = {c: comparable(trials[c]) for c in columns}
    varying = [c for c in columns if values[c].nunique(dropna=False) > 1]
    if "cell_id" not in trials.columns or not trials["cell_id"].notna().all() or trials.empty:
        return varying, []
    cells = trials["cell_id"]
    searched = [c for c in varying if (values[c].groupby(cells).nunique(dropna=False) > 1).any()]
    return [c for c in varying if c not in searched], searched


def comparable(column: pd.Series) -> pd.Series:
    """`column` with values that compare and hash as they read: a list or array (a list
    column such as step_milestones) as a tuple; the rest as they are (a missing value is one
    value of its own). What tells configs apart without writing every value as text (about
    0.4 s for `hidden sweep status` on 5,000 trials). A list comprehension, not Series.map
    (a third of the time: cell_axes makes each list column comparable, three times a status)."""
    if column.dtype != object:
        return column
    return pd.Series([_hashable(v) for v in column.tolist()], index=column.index, name=column.name, dtype=object)


def _hashable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def cell_keys(trials: pd.DataFrame) -> list[str]:
    """The columns that tell cells apart: cell_id where every row has one, else every
    varying config field but seed."""
    if "cell_id" in trials.columns and trials["cell_id"].notna().all():
        return ["cell_id"]
    return cell_axes(trials)[0] or []


def one_per_seed(trials: pd.DataFrame, select_by: str = SUMMARY_METRICS[0]) -> pd.DataFrame:
    """Per cell and seed the one trial validation chooses (metrics.best_by_validation): where a
    search ran several samples for a seed, the sample of best `select_by`; so every mean over
    "seeds" counts each seed once, as `hidden analyze` does. Without a search: unchanged."""
    if trials.empty:
        return trials
    keys = [*cell_keys(trials), "seed"]
    return best_by_validation(trials, keys, select_by).sort_index()


def describe_pooled(trials: pd.DataFrame, by: Sequence[str]) -> str:
    """'pooled over depth; seeds: 3; searched (best by validation per seed): lr' for the
    header of a summary grouped by `by`: the grid axes that vary but are not shown, so a
    reader knows what one number covers."""
    grid, searched = cell_axes(trials)
    pooled = [c for c in grid if c not in by]
    parts = [f"pooled over {', '.join(pooled)}" if pooled else "no axis pooled (n = seeds)"]
    if searched:
        parts.append(f"searched {', '.join(searched)}: per seed the sample of best validation")
    return "; ".join(parts)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError([f"{what}: unknown column {', '.join(map(repr, missing))}; available columns: {', '.join(map(str, frame.columns))}"])


def summarize(trials: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Mean, standard deviation and count over the rows of each group: `n` rows, `seeds`
    distinct seeds among them (n > seeds where the group pools other axes; see
    describe_pooled). Pass the rows through one_per_seed first so a search's samples are
    not averaged."""
    by, metrics = list(by), [m for m in metrics if m not in by]
    require_columns(trials, [*by, *metrics], "group-by")
    non_numeric = [m for m in metrics if not pd.api.types.is_numeric_dtype(trials[m]) or pd.api.types.is_bool_dtype(trials[m])]
    if non_numeric:
        raise ConfigError([f"columns: {', '.join(map(repr, non_numeric))} not numeric; with --group-by, --columns names the metrics to average (e.g. val_acc, test_acc, train_seconds)"])
    grouped = trials.groupby(by, dropna=False, sort=True)
    out = grouped.size().rename("n").to_frame()
    if "seed" in trials.columns and "seed" not in by:
        out["seeds"] = grouped["seed"].nunique()
    for m in metrics:
        stats = grouped[m].agg(["mean", "std", "count"])
        out[f"{m}_mean"], out[f"{m}_std"] = stats["mean"], stats["std"]
        if (stats["count"] != out["n"]).any():  # only worth a column when some values are missing
            out[f"{m}_count"] = stats["count"]
    return out.reset_index()


def best_per_group(trials: pd.DataFrame, by: Sequence[str], select_by: str = SUMMARY_METRICS[0], report: Sequence[str] = (TEST_METRIC,)) -> pd.DataFrame:
    """The trial with the highest `select_by` in each group (metrics.best_by_validation: the
    rule of every selection, `subnet export --best` included), with the mean of the reported
    metrics over its grid cell's seeds next to it, so one lucky seed is visible as such.

    A cell is every config axis but seed and the searched ones (cell_id). Its mean takes one
    value per seed: the trial validation chooses among that seed's samples (one_per_seed), so
    `cell_seeds` counts seeds and a search's poor samples never pull the mean down.
    `n_in_group` counts every trial of the group, including those without a `select_by` value
    (they cannot be chosen, but they were run). Reported columns that are config fields (seed,
    width, ...) are shown for the chosen trial, never averaged."""
    by = list(by)
    require_columns(trials, [*by, select_by, *report], "best")
    rows = trials[trials[select_by].notna()]
    if rows.empty:
        reason = f"best: none of the {len(trials)} selected trials has a {select_by} value, so none can be chosen"
        if "val_fraction" in trials.columns and (trials["val_fraction"] == 0).all():
            reason += " (the sweep has no validation split: val_fraction 0; selecting on test would bias the result)"
        raise ConfigError([reason])
    best = best_by_validation(rows, by, select_by)
    columns = [*by, "trial_id", "seed", select_by, *report]
    out = best[[c for c in dict.fromkeys(columns) if c in best.columns]].copy()
    group_sizes = trials.groupby(by, dropna=False).size().rename("n").reset_index()
    out.insert(len(by), "n_in_group", best[by].merge(group_sizes, on=by, how="left")["n"].to_numpy())
    missing = trials[select_by].isna().groupby([trials[c] for c in by], dropna=False).sum().rename("m").reset_index()
    n_missing = best[by].merge(missing, on=by, how="left")["m"].to_numpy()
    if n_missing.any():
        out.insert(len(by) + 1, f"n_without_{select_by}", n_missing)
    averaged = [m for m in report if m not in TrialConfig.model_fields and m not in by and pd.api.types.is_numeric_dtype(trials[m]) and not pd.api.types.is_bool_dtype(trials[m])]
    if "cell_id" in trials.columns and trials["cell_id"].notna().all():
        # the chosen trial's cell, one value per seed: where a search ran several samples
        # for a seed, the sample that validation chooses for that seed (the searched values
        # are that seed's search's choice), never the mean over samples
        per_cell = one_per_seed(trials, select_by).groupby("cell_id")
        for m in averaged:
            out[f"cell_{m}_mean"] = best["cell_id"].map(per_cell[m].mean()).to_numpy()
        out["cell_seeds"] = best["cell_id"].map(per_cell["seed"].nunique()).to_numpy()
    return out.sort_values(by).reset_index(drop=True)


def format_value(value: object) -> str:
    if value is None or value is pd.NaT:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.5g}"
    if isinstance(value, datetime | pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple | np.ndarray):
        return ",".join(format_value(v) for v in value)
    return str(value)


def format_table(frame: pd.DataFrame, *, markdown: bool = False) -> str:
    """Columns as wide as their longest cell; numbers right-aligned."""
    if frame.empty:
        return "(no rows)"
    headers = [str(c) for c in frame.columns]
    cells = [[format_value(v) for v in frame[c].tolist()] for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns]
    widths = [max(len(h), *(len(v) for v in col)) for h, col in zip(headers, cells, strict=True)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    rule = ["-" * w if not num else "-" * (w - 1) + ":" for w, num in zip(widths, numeric, strict=True)]
    head = [line(headers), line(rule) if markdown else "  ".join("-" * w for w in widths)]
    return "\n".join(head + [line(row) for row in zip(*cells, strict=True)])
