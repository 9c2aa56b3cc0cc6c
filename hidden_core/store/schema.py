"""What the store holds: the Parquet schemas of its tables (trials, epochs, controls), the
names hidden gives its files and sweeps (what is hidden's and what is foreign), and rows
checked and turned into tables of those schemas.

The trials columns come from their declarations: the config columns from TrialConfig's
fields, the metric columns from records.METRIC_FIELDS (training.TrialResult's fields; a test
checks they agree). Imports neither torch nor Ray.
"""

from __future__ import annotations

import re
import time
import types
import typing
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from hidden_core import paths
from hidden_core.config import TrialConfig
from hidden_core.errors import ConfigError, brief
from hidden_core.records import (
    CONTROL_COLUMNS,
    CONTROL_DRAWS_COLUMN,
    CONTROL_MEASURES,
    DENSITY,
    EPOCH_MEASURES,
    METRIC_TYPES,
    STATUSES,
    SUBNET_FILE,
)

TABLES = paths.TABLE_DIRS  # the trials and epochs tables (paths.py names the folders)
TRIALS_TABLE, EPOCHS_TABLE = TABLES  # defined before their uses below

_SWEEP_NAME = paths.SWEEP_NAME  # the one sweep-name rule (paths.py), matched whole
_UTC_US = pa.timestamp("us", tz="UTC")


def _arrow_type(annotation: Any) -> pa.DataType:
    """Parquet type of a TrialConfig field or a metric, from its annotation or type (None-able means nullable)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        if kinds <= {str}:
            return pa.string()
        if kinds <= {int}:
            return pa.int64()
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _arrow_type(inner[0])
    if origin in (tuple, list) and args:
        return pa.list_(_arrow_type(args[0]))
    # bool before int: bool is a subclass of int
    for python_type, arrow_type in ((bool, pa.bool_()), (int, pa.int64()), (float, pa.float64()), (str, pa.string())):
        if annotation is python_type:
            return arrow_type
    raise TypeError(f"no Parquet column type for the annotation {annotation!r}; extend _arrow_type in hidden_core/store/schema.py")


def _fields(spec: str, arrow_type: pa.DataType) -> list[pa.Field]:
    return [pa.field(name, arrow_type) for name in spec.split()]


def _trial_schema() -> pa.Schema:
    config = [pa.field(name, _arrow_type(f.annotation)) for name, f in TrialConfig.model_fields.items()]
    return pa.schema(
        _fields("sweep trial_id cell_id status", pa.string())
        + config
        + [pa.field(name, _arrow_type(kind)) for name, kind in METRIC_TYPES.items()]  # training health: null in older rows
        + _fields("device node", pa.string())
        + _fields(SUBNET_FILE, pa.string())  # the trial's subnet file, relative to the root (records.SUBNET_FILE)
        + _fields("started_at finished_at", _UTC_US)
        + _fields("hidden_version git_commit torch_version ray_version error write_id", pa.string())
    )


TRIAL_SCHEMA: pa.Schema = _trial_schema()
EPOCH_SCHEMA: pa.Schema = pa.schema(
    _fields("sweep trial_id", pa.string())
    + _fields("epoch", pa.int64())
    + _fields(" ".join(EPOCH_MEASURES), pa.float64())
    + _fields("level", pa.int64())  # lottery_ticket only (LEVEL_FIELDS): which training of the trial
    + _fields("branch", pa.string())
    + _fields("level_epoch", pa.int64())
    + _fields(DENSITY, pa.float64())  # the level's mask density (LEVEL_FIELDS)
    + _fields("write_id", pa.string())
)
# The controls pass (hidden_core/tune/controls_pass.py): one row per trial, control and draw,
# tied to the trial row (its write_id) whose subnet file it evaluated.
CONTROLS_TABLE = paths.CONTROLS_DIR
CONTROL_SCHEMA: pa.Schema = pa.schema(
    _fields("sweep trial_id trial_write_id control", pa.string())
    + _fields("draw", pa.int64())
    + _fields(" ".join(CONTROL_MEASURES), pa.float64())
    + _fields("device write_id", pa.string())
)
SCHEMAS = {TRIALS_TABLE: TRIAL_SCHEMA, EPOCHS_TABLE: EPOCH_SCHEMA, CONTROLS_TABLE: CONTROL_SCHEMA}
# What load_trials returns: the stored trial columns, then the controls' means over their
# draws joined from the controls table (null for a trial without controls).
JOINED_CONTROL_COLUMNS: tuple[str, ...] = (*CONTROL_COLUMNS, CONTROL_DRAWS_COLUMN)
TRIAL_READ_SCHEMA: pa.Schema = pa.schema([*TRIAL_SCHEMA, *_fields(" ".join(CONTROL_COLUMNS), pa.float64()), *_fields(CONTROL_DRAWS_COLUMN, pa.int64())])
CONFIG_COLUMNS: tuple[str, ...] = tuple(TrialConfig.model_fields)
_KEY_COLUMNS = ["trial_id", "status", "finished_at", "write_id"]
_SET_BY_STORE = frozenset({"sweep", "write_id"})


def _new_write_id() -> str:
    # time first, so write_ids sort in write order: the tie-break after finished_at
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _utc(value: Any) -> datetime | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


# The columns every file of a table that hidden wrote has; a file without them is foreign.
_KEYS_OF = {TRIALS_TABLE: ("sweep", "trial_id", "status", "finished_at", "write_id"), EPOCHS_TABLE: ("trial_id", "epoch", "write_id"),
            CONTROLS_TABLE: ("trial_id", "trial_write_id", "control", "draw", "write_id")}
# hidden's own file names inside a table folder (written by _put); others are foreign
_OWN_PART = re.compile(r"(part|compacted)-\d{20}-[0-9a-f]{8}\.parquet|\..+\.tmp|\.broken-.+")


def _own_top_file(name: str) -> bool:
    """A file directly in a sweep folder that hidden writes: the marker, the lease and its
    side files, the Optuna studies (SQLite adds -journal/-wal files), the marker's tmp."""
    return (name in (paths.SWEEP_MARKER, paths.LEASE_FILE, paths.STUDIES_FILE) or name.startswith(paths.LEASE_FILE + ".")
            or name.startswith(paths.STUDIES_FILE + "-") or (name.startswith(f".{paths.SWEEP_MARKER}.") and name.endswith(".tmp")))


def _foreign_reason(schema: pa.Schema, table: str) -> str | None:
    """Why a Parquet file's schema is not one hidden wrote for `table`, or None."""
    missing = [c for c in _KEYS_OF[table] if c not in schema.names]
    if missing:
        return f"no column {', '.join(repr(c) for c in missing[:3])}"
    expected = SCHEMAS[table]
    for name in _KEYS_OF[table]:
        have, want = schema.field(name).type, expected.field(name).type
        if have != want and not (pa.types.is_timestamp(have) and pa.types.is_timestamp(want)) and not (pa.types.is_string(want) and pa.types.is_large_string(have)):
            return f"column {name!r} is {have}, not {want}"
    return None


def _sorted(table: pa.Table, name: str) -> pa.Table:
    # clustered by the usual filter columns, so row-group statistics let scans skip groups
    keys = ["method", "model", "dataset", "width", "depth", "trial_id"] if name == TRIALS_TABLE else ["trial_id", "epoch"]
    return table.sort_by([(k, "ascending") for k in keys])


def _check_sweep_name(sweep: str) -> None:
    if (problem := paths.sweep_name_problem(sweep)) is not None:
        raise ConfigError([f"sweep: {brief(sweep)} {problem}"])


def _records(rows: Sequence[dict[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")
    return [dict(r) for r in rows]


def _trial_problems(sweep: str, columns: Iterable[str], sweeps: Iterable[Any], trial_ids: Iterable[Any], statuses: Iterable[Any]) -> list[str]:
    allowed = [n for n in TRIAL_SCHEMA.names if n not in _SET_BY_STORE]
    unknown = sorted(set(columns) - set(allowed) - {"sweep"})
    problems = [f"trial_row: unknown column {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"] if unknown else []
    for i, (row_sweep, trial_id, status) in enumerate(zip(sweeps, trial_ids, statuses, strict=True)):
        if row_sweep is not None and row_sweep == row_sweep and row_sweep != sweep:
            problems.append(f"trial_row[{i}].sweep: {row_sweep!r} differs from the sweep written to, {sweep!r}")
        if not isinstance(trial_id, str) or not trial_id:
            problems.append(f"trial_row[{i}].trial_id: missing")
        if status not in STATUSES:
            problems.append(f"trial_row[{i}].status: {status!r} is not one of {', '.join(STATUSES)}")
        if len(problems) >= 10:
            break
    return problems


def _trial_table(sweep: str, rows: list[dict[str, Any]] | pd.DataFrame, write_ids: list[str]) -> pa.Table:
    now = datetime.now(timezone.utc)
    if isinstance(rows, pd.DataFrame):  # bulk path: columnar all the way
        n = len(rows)
        problems = _trial_problems(sweep, rows.columns, rows.get("sweep", [None] * n), rows.get("trial_id", [None] * n), rows.get("status", [None] * n))
        if problems:
            raise ConfigError(problems)
        frame = rows.assign(sweep=sweep, write_id=write_ids)
        for name in ("started_at", "finished_at"):
            frame[name] = pd.to_datetime(frame[name], utc=True) if name in frame else pd.NaT
        frame["finished_at"] = frame["finished_at"].fillna(pd.Timestamp(now))
        missing = {n: pa.nulls(len(frame), TRIAL_SCHEMA.field(n).type) for n in TRIAL_SCHEMA.names if n not in frame}
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for name, column in missing.items():
            table = table.append_column(name, column)
        return table.select(TRIAL_SCHEMA.names).cast(TRIAL_SCHEMA)
    problems = _trial_problems(sweep, {k for r in rows for k in r}, (r.get("sweep") for r in rows), (r.get("trial_id") for r in rows), (r.get("status") for r in rows))
    if problems:
        raise ConfigError(problems)
    for row, write_id in zip(rows, write_ids, strict=True):
        row["sweep"], row["write_id"] = sweep, write_id
        row["started_at"] = _utc(row.get("started_at"))
        row["finished_at"] = _utc(row.get("finished_at")) or now
    return pa.Table.from_pylist(rows, schema=TRIAL_SCHEMA)


def _epoch_table(sweep: str, rows: list[dict[str, Any]], write_ids: dict[str, str]) -> pa.Table:
    allowed = set(EPOCH_SCHEMA.names) - _SET_BY_STORE
    unknown = sorted({k for r in rows for k in r} - allowed - {"sweep"})
    problems = [f"epoch_row: unknown column {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}"] if unknown else []
    for i, row in enumerate(rows):
        if row.get("trial_id") not in write_ids:
            problems.append(f"epoch_row[{i}].trial_id: {row.get('trial_id')!r} is not a trial of this write")
            continue
        row["sweep"], row["write_id"] = sweep, write_ids[row["trial_id"]]
    if problems:
        raise ConfigError(problems)
    return pa.Table.from_pylist(rows, schema=EPOCH_SCHEMA)
