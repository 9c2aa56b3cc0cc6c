"""Which cells of a sweep hold a trial whose training was flagged unhealthy.

A trial's `health_flags` (records.HEALTH_FLAGS) is "" when healthy, a comma-separated list of
flag names when not, and missing/null on stores written before the column existed (unknown:
neither healthy nor flagged). A leave-out rule acts on whole cells, never on single seeds by
their own accuracy (that censors by outcome). Imports neither torch nor Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from hidden_core.records import HEALTH_FLAGS


def unhealthy_cells(trials: pd.DataFrame, cell_columns: Sequence[str]) -> pd.DataFrame:
    """One row per cell (the distinct values of `cell_columns`) in which at least one trial has
    a non-empty health_flags string: the cell's columns, 'n_trials' (trials of the cell),
    'n_flagged' (those flagged) and 'reasons' (the distinct flag names, sorted, comma-joined).
    No rows when nothing is flagged or the column is absent."""
    columns = [*cell_columns, "n_trials", "n_flagged", "reasons"]
    missing = [c for c in cell_columns if c not in trials.columns]
    if missing:
        raise KeyError(f"unhealthy_cells: cell column(s) {missing} not in the trials table")
    if HEALTH_FLAGS not in trials.columns or trials.empty:
        return pd.DataFrame(columns=columns)
    flags = trials[HEALTH_FLAGS].astype("string").fillna("").str.strip()
    frame = trials[list(cell_columns)].assign(_flags=flags, _flagged=flags != "")
    rows = []
    for key, group in frame.groupby(list(cell_columns), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        flagged = group[group["_flagged"]]
        if flagged.empty:
            continue
        names = sorted({n.strip() for s in flagged["_flags"] for n in s.split(",") if n.strip()})
        rows.append({**dict(zip(cell_columns, key, strict=True)), "n_trials": len(group), "n_flagged": len(flagged), "reasons": ",".join(names)})
    return pd.DataFrame(rows, columns=columns)
