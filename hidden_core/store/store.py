"""ResultStore: the results of many sweeps under one root (a local folder or an object-store
URL): the sweep marker, atomic writes, the writer's merging of its own parts, and reads that
keep one row per trial (newest final write wins) with the controls joined. Its upkeep
(compaction, foreign files, deletion) is its base class, maintenance.Maintenance.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hidden_core import paths
from hidden_core.errors import ConfigError, clip, suggestion
from hidden_core.records import (
    CONTROL_DRAWS_COLUMN,
    CONTROL_MEASURES,
    CONTROLS,
    FINAL_STATUSES,
    FOUND,
    STATUSES,
    control_column,
)
from hidden_core.store import storage
from hidden_core.store.maintenance import Maintenance
from hidden_core.store.schema import (
    _KEY_COLUMNS,
    _SET_BY_STORE,
    _SWEEP_NAME,
    CONTROL_SCHEMA,
    CONTROLS_TABLE,
    EPOCH_SCHEMA,
    EPOCHS_TABLE,
    JOINED_CONTROL_COLUMNS,
    SCHEMAS,
    TABLES,
    TRIAL_READ_SCHEMA,
    TRIAL_SCHEMA,
    TRIALS_TABLE,
    _check_sweep_name,
    _epoch_table,
    _foreign_reason,
    _new_write_id,
    _records,
    _sorted,
    _trial_table,
)
from hidden_core.store.where import _check_columns, where_expression

RESULTS_ENV = "HIDDEN_RESULTS"
_MAX_MERGED_FILES = 16  # beyond this many merged files, merge them all (reads open every file)
# Columns every row hidden writes has a value in (any table): a row without one is foreign.
_NEVER_NULL = ("trial_id", "write_id")


def default_results_root() -> str:
    return os.environ.get(RESULTS_ENV) or "results"


class ResultStore(Maintenance):
    """Results of many sweeps under one root: a local folder or an object-store URL."""

    def __init__(self, root: str | os.PathLike[str], *, filesystem: pafs.FileSystem | None = None, compact_every: int | None = 100):
        root = os.fspath(root)
        if filesystem is None:
            self.fs, self.root = storage.open_filesystem(root)
        else:
            self.fs, self.root = filesystem, root.rstrip("/")
        self.uri = root
        self.compact_every = compact_every
        self._local = isinstance(self.fs, pafs.LocalFileSystem)
        self._buffers: dict[str, dict[str, list[tuple[str, pa.Table]]]] = {}
        self._made_dirs: set[str] = set()
        self._marked: set[str] = set()  # sweeps whose marker this store has seen or written
        self._unreadable: set[str] = set()  # hidden-named files its reads found unreadable (set aside by compact)
        self._lock = threading.RLock()  # callbacks of a sweep driver may write from several threads

    def __getstate__(self) -> dict[str, Any]:
        # a copy sent to another process starts with nothing to merge: its parts are on disk
        return {**self.__dict__, "_buffers": {}, "_made_dirs": set(), "_marked": set(), "_unreadable": set(), "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"ResultStore({self.uri!r})"

    # -- paths and listing --
    def _dir(self, sweep: str, table: str) -> str:
        return f"{self.root}/{sweep}/{table}"

    def _list(self, sweep: str, table: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._dir(sweep, table), allow_not_found=True)
        infos = [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        return sorted((i for i in infos if i.base_name.endswith(".parquet") and not i.base_name.startswith((".", "_"))), key=lambda i: i.base_name)

    def subnet_path(self, sweep: str, trial_id: str) -> str:
        """A trial's subnet file as a path of `self.fs` (for an object store: 'bucket/...',
        no scheme; paths.trial_subnet_path gives the URL)."""
        return f"{self.root}/{paths.subnet_file_name(sweep, trial_id)}"

    def subnets_folder(self, sweep: str) -> str:
        return f"{self.root}/{sweep}/{paths.SUBNETS_DIR}"

    @contextlib.contextmanager
    def local_copy(self, path: str, suffix: str = "") -> Iterator[str]:
        """A local file with the contents of the store's file `path` (a path of `self.fs`):
        the file itself in a local store, else a temporary copy (streamed in 8 MiB pieces)
        removed afterwards. For readers that need a local file (safetensors)."""
        if self._local:
            yield path
            return
        fd, tmp = tempfile.mkstemp(prefix=".hidden-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as dst, self.fs.open_input_stream(path) as src:
                while chunk := src.read(8 << 20):
                    dst.write(chunk)
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def sweeps(self) -> list[str]:
        """Sweeps of the store: folders holding hidden's marker (paths.SWEEP_MARKER), or,
        written before the marker existed, a trials/ table of hidden's schema. A folder
        name alone never makes a sweep."""
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        dirs = [i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory and not i.base_name.startswith((".", "_"))]
        return sorted(d for d in dirs if _SWEEP_NAME.fullmatch(d) and self._is_sweep(d))

    def _is_sweep(self, sweep: str) -> bool:
        if self.fs.get_file_info(self._marker(sweep)).type == pafs.FileType.File:  # asked each time: another process may delete it
            return True
        return self._legacy_sweep(sweep)

    def _marker(self, sweep: str) -> str:
        return f"{self.root}/{sweep}/{paths.SWEEP_MARKER}"

    def _legacy_sweep(self, sweep: str) -> bool:
        """A sweep written before the marker: one of its first trials/ files (by name) has
        hidden's key columns. Its marker is written by the next write (`mark_sweep`)."""
        for info in self._list(sweep, TRIALS_TABLE)[:3]:
            try:
                schema = self._schema(info.path)
            except (pa.ArrowException, OSError):
                continue
            if _foreign_reason(schema, TRIALS_TABLE) is None:
                return True
        return False

    def _schema(self, path: str) -> pa.Schema:
        """A Parquet file's schema (its footer only)."""
        with self.fs.open_input_file(path) as f:
            return pq.read_schema(f)

    def mark_sweep(self, sweep: str) -> None:
        """Write the sweep's marker unless it is there (the first write to a sweep, and a
        driver taking its lease, call this): from then on the folder is a sweep."""
        _check_sweep_name(sweep)
        if sweep in self._marked:
            return
        path = self._marker(sweep)
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            data = json.dumps({"format": "hidden-sweep", "version": 1, "sweep": sweep,
                               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode()
            self.fs.create_dir(f"{self.root}/{sweep}", recursive=True)
            if self._local:  # tmp + rename: a reader never sees half of it
                tmp = f"{self.root}/{sweep}/.{paths.SWEEP_MARKER}.{uuid.uuid4().hex[:8]}.tmp"
                with self.fs.open_output_stream(tmp) as f:
                    f.write(data)
                self.fs.move(tmp, path)
            else:
                with self.fs.open_output_stream(path) as f:
                    f.write(data)
        self._marked.add(sweep)

    def _require_sweep(self, sweep: str) -> None:
        _check_sweep_name(sweep)
        if not self._is_sweep(sweep):
            sweeps = self.sweeps()
            available = ", ".join(sweeps) or "(none)"
            raise ConfigError([f"sweep: no sweep named {sweep!r} in {self.uri}{suggestion(sweep, sweeps)}; available sweeps: {available}"])

    # -- writing --
    def write_trial(self, sweep: str, trial_row: dict[str, Any], epoch_rows: Sequence[dict[str, Any]] = ()) -> str:
        """Store one finished trial (replacing any earlier row of its trial_id); returns its write_id."""
        epochs = [{"trial_id": trial_row.get("trial_id"), **e} for e in epoch_rows]
        return self.write_trials(sweep, [trial_row], epochs)[0]

    def write_trials(self, sweep: str, trial_rows: Sequence[dict[str, Any]] | pd.DataFrame, epoch_rows: Sequence[dict[str, Any]] | pd.DataFrame = ()) -> list[str]:
        """Store many trials in one part file (bulk imports, tests); returns their write_ids."""
        _check_sweep_name(sweep)
        trials = trial_rows if isinstance(trial_rows, pd.DataFrame) else [dict(r) for r in trial_rows]
        if len(trials) == 0:
            return []
        base = _new_write_id()
        write_ids = [f"{base}-{i:06d}" for i in range(len(trials))]
        written = {TRIALS_TABLE: _trial_table(sweep, trials, write_ids)}
        epochs = _records(epoch_rows)
        if epochs:
            written[EPOCHS_TABLE] = _epoch_table(sweep, epochs, dict(zip(written[TRIALS_TABLE]["trial_id"].to_pylist(), write_ids, strict=True)))
        with self._lock:
            self.mark_sweep(sweep)
            buffer = self._buffer_for(sweep)
            # epochs first: a trial row never points at epochs that are not there yet
            for table in (EPOCHS_TABLE, TRIALS_TABLE):
                if table in written:
                    path = self._put(sweep, table, f"part-{base}.parquet", written[table], small=len(trials) == 1)
                    buffer[table].append((path, written[table]))
            if self.compact_every and len(buffer[TRIALS_TABLE]) >= self.compact_every:
                self.flush(sweep)
        return write_ids

    def _buffer_for(self, sweep: str) -> dict[str, list[tuple[str, pa.Table]]]:
        if sweep not in self._buffers:
            leftover = sum(i.base_name.startswith("part-") for i in self._list(sweep, TRIALS_TABLE))
            if self.compact_every and leftover >= self.compact_every:  # parts of a killed earlier run
                self.compact(sweep, parts_only=True)
            self._buffers[sweep] = {t: [] for t in TABLES}
        return self._buffers[sweep]

    def flush(self, sweep: str | None = None) -> None:
        """Merge the part files this store wrote since the last flush into one file per table.

        The rows are still in memory, so nothing is read back: reading a thousand one-row
        files costs ~1-2 ms each, writing them again as one file costs almost nothing. The
        merged file is complete before the parts are deleted (a kill leaves duplicates,
        which reads drop). Called every `compact_every` writes; call it when a sweep ends.
        """
        with self._lock:
            for name in [sweep] if sweep else list(self._buffers):
                self._flush_one(name)

    def _flush_one(self, name: str) -> None:
        buffer = self._buffers.get(name)
        if not buffer or not buffer[TRIALS_TABLE]:
            return
        for table in (EPOCHS_TABLE, TRIALS_TABLE):
            if len(buffer[table]) > 1:
                merged = pa.concat_tables([t for _, t in buffer[table]])
                self._put(name, table, f"compacted-{_new_write_id()}.parquet", _sorted(merged, table), small=False)
                for path, _ in buffer[table]:
                    storage.delete_quietly(self.fs, path)
            buffer[table].clear()
        merged_files = sum(i.base_name.startswith("compacted-") for i in self._list(name, TRIALS_TABLE))
        if merged_files > _MAX_MERGED_FILES:
            self.compact(name)

    def _put(self, sweep: str, table: str, name: str, data: pa.Table, *, small: bool) -> str:
        folder = self._dir(sweep, table)
        path = f"{folder}/{name}"
        # one-row files are all overhead: no compression, dictionaries or embedded Arrow
        # schema (the Parquet types alone read back identically)
        options = {"compression": "none", "use_dictionary": False, "store_schema": False} if small else {"compression": "zstd", "row_group_size": 65536}
        if folder not in self._made_dirs:  # object stores need no folders, but mock:// and HDFS do
            self.fs.create_dir(folder, recursive=True)
            self._made_dirs.add(folder)
        try:
            if self._local:
                tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
                try:
                    pq.write_table(data, tmp, filesystem=self.fs, **options)
                except BaseException:
                    storage.delete_quietly(self.fs, tmp)  # a full disk leaves no half file behind
                    raise
                self.fs.move(tmp, path)
            else:
                pq.write_table(data, path, filesystem=self.fs, **options)
        except OSError as err:
            if storage.no_space(err):  # pyarrow's message hides the errno and the path: give both
                raise OSError(errno.ENOSPC, "No space left on device (ENOSPC)", path) from None
            raise
        return path

    # -- reading --
    def _scan(self, files: list[pafs.FileInfo], table: str, columns: list[str], filter: pc.Expression | None, bad: set[str]) -> pa.Table:
        """Read `columns` of `files`. A file that cannot be read, or that is not one of
        hidden's (rows without the keys hidden always writes: trial_id, write_id), is
        skipped with a warning naming it and added to `bad`: never merged, never counted,
        never deleted. The check rides on the scan itself (`__filename`), no extra read."""
        schema = SCHEMAS[table]
        paths = [f.path for f in files if f.path not in bad]
        if not paths:
            return schema.empty_table().select(columns)
        wanted = list(dict.fromkeys([*columns, *_NEVER_NULL, "__filename"]))
        try:
            scanned = ds.dataset(paths, schema=schema, format="parquet", filesystem=self.fs).to_table(columns=wanted, filter=filter)
            return self._without_foreign(scanned, table, bad).select(columns)
        except (pa.ArrowException, OSError):
            pass
        pieces = []
        for path in paths:  # slow path: find the broken file(s), keep the rest
            try:
                scanned = ds.dataset([path], schema=schema, format="parquet", filesystem=self.fs).to_table(columns=wanted, filter=filter)
                pieces.append(self._without_foreign(scanned, table, bad).select(columns))
            except (pa.ArrowException, OSError) as err:
                bad.add(path)
                self._unreadable.add(path)
                reason = str(err).splitlines()[0].replace(f" '{path}'", "")
                warnings.warn(f"skipping unreadable part file {path}: {reason}", stacklevel=3)
        return pa.concat_tables(pieces) if pieces else schema.empty_table().select(columns)

    def _without_foreign(self, scanned: pa.Table, table: str, bad: set[str]) -> pa.Table:
        """`scanned` without the rows of files that are not hidden's (a row of hidden's always
        has its keys), each such file warned about once and added to `bad`."""
        missing = None
        for name in _NEVER_NULL:
            column = pc.is_null(scanned[name])
            missing = column if missing is None else pc.or_(missing, column)
        if missing is None or not pc.any(missing).as_py():
            return scanned
        foreign = set(pc.unique(scanned["__filename"].filter(missing)).to_pylist())
        for path in sorted(foreign - bad):
            warnings.warn(f"skipping {path}: not a file of hidden's {table} table (rows without trial_id or write_id); it is left where it is", stacklevel=4)
        bad.update(foreign)
        return scanned.filter(pc.invert(pc.is_in(scanned["__filename"], value_set=pa.array(sorted(foreign), pa.string()))))

    def _superseded(self, keys: pa.Table) -> set[str]:
        """write_ids of rows that another row of the same trial replaces: a final row beats a
        failed one whatever their timestamps (a failed re-run, or a second driver's failure
        written after the first driver's result, must not hide a result), then the newest
        finished_at, then the newest write_id."""
        n = keys.num_rows
        if n == 0 or pc.count_distinct(keys["trial_id"]).as_py() == n:
            return set()
        final = pc.is_in(keys["status"], value_set=pa.array(sorted(FINAL_STATUSES), pa.string()))
        keys = keys.append_column("final", pc.fill_null(final, False))
        order = pc.sort_indices(keys, sort_keys=[("trial_id", "ascending"), ("final", "descending"), ("finished_at", "descending"), ("write_id", "descending")])
        ranked = keys.take(order)
        trial_ids = ranked["trial_id"].to_numpy(zero_copy_only=False)
        write_ids = ranked["write_id"].to_numpy(zero_copy_only=False)
        first = np.ones(n, dtype=bool)
        first[1:] = trial_ids[1:] != trial_ids[:-1]
        return set(write_ids[~first]) - set(write_ids[first])

    def _read_trials(self, sweep: str, columns: list[str], filter: pc.Expression | None, bad: set[str]) -> pa.Table:
        files = self._list(sweep, TRIALS_TABLE)
        losers = self._superseded(self._scan(files, TRIALS_TABLE, _KEY_COLUMNS, None, bad))
        wanted = list(dict.fromkeys([*columns, "trial_id"]))
        if losers:
            drop = ~pc.field("write_id").isin(pa.array(sorted(losers), pa.string()))
            filter = drop if filter is None else filter & drop
        table = self._scan(files, TRIALS_TABLE, wanted, filter, bad)
        if pc.count_distinct(table["trial_id"]).as_py() != table.num_rows:
            # identical copies: a compaction killed between writing its file and deleting inputs
            keep = pd.Index(table["trial_id"].to_numpy(zero_copy_only=False)).duplicated()
            table = table.filter(pa.array(~keep))
        return table.select(columns)

    def load_trials(self, sweep: str, where: str | pc.Expression | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per trial (newest write wins), `where` pushed down to the Parquet scan.
        The control columns (TRIAL_READ_SCHEMA) are joined from the controls table; a
        `where` that names one is applied after the join."""
        self._require_sweep(sweep)
        columns = _check_columns("columns", columns, TRIAL_READ_SCHEMA)
        expr = where_expression(where, TRIAL_READ_SCHEMA)
        named = set(re.findall(r"\w+", str(expr))) if expr is not None else set()
        on_controls = bool(named & set(JOINED_CONTROL_COLUMNS))
        if not on_controls and not set(columns) & set(JOINED_CONTROL_COLUMNS):
            return self._read_trials(sweep, columns, expr, set()).to_pandas()
        stored = list(dict.fromkeys([*(c for c in TRIAL_SCHEMA.names if c in columns or (on_controls and c in named)), "trial_id", "write_id"]))
        table = self._with_controls(sweep, self._read_trials(sweep, stored, None if on_controls else expr, set()))
        return (table.filter(expr) if on_controls else table).select(columns).to_pandas()

    def load_epochs(self, sweep: str, trial_ids: Iterable[str] | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-epoch rows of each trial's current write (epochs of replaced runs are hidden)."""
        self._require_sweep(sweep)
        columns = _check_columns("columns", columns, EPOCH_SCHEMA)
        bad: set[str] = set()
        keys = self._read_trials(sweep, ["trial_id", "write_id"], None, bad)
        if trial_ids is not None:
            keys = keys.filter(pc.field("trial_id").isin(pa.array(list(trial_ids), pa.string())))
        current = pc.field("write_id").isin(keys["write_id"].combine_chunks())
        wanted = list(dict.fromkeys([*columns, "trial_id", "epoch"]))
        table = self._scan(self._list(sweep, EPOCHS_TABLE), EPOCHS_TABLE, wanted, current, bad)
        frame = table.to_pandas().drop_duplicates(["trial_id", "epoch"])
        return frame.sort_values(["trial_id", "epoch"], kind="stable")[columns].reset_index(drop=True)

    def final_trial_ids(self, sweep: str) -> set[str]:
        """trial_ids a re-run skips (completed, pruned, diverged); empty for a new sweep."""
        _check_sweep_name(sweep)
        table = self._read_trials(sweep, ["trial_id", "status"], None, set())
        final = table.filter(pc.field("status").isin(sorted(FINAL_STATUSES)))
        return set(final["trial_id"].to_pylist())

    # -- controls (the spec's subnet_controls; hidden_core/tune/controls_pass.py) --
    def write_controls(self, sweep: str, rows: Sequence[dict[str, Any]]) -> str | None:
        """Store the control rows of one trial (trial_id, trial_write_id, control, draw,
        val_acc, test_acc, device) in one part file, so a trial has all of them or none."""
        self._require_sweep(sweep)
        rows = [dict(r) for r in rows]
        if not rows:
            return None
        self.mark_sweep(sweep)  # a sweep written before the marker gets it now
        allowed = set(CONTROL_SCHEMA.names) - _SET_BY_STORE
        problems = []
        for i, row in enumerate(rows):
            unknown = sorted(set(row) - allowed)
            if unknown:
                problems.append(f"control_row[{i}]: unknown column {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")
            if row.get("control") not in (FOUND, *CONTROLS):
                problems.append(f"control_row[{i}].control: {row.get('control')!r} is not one of {', '.join((FOUND, *CONTROLS))}")
            if not isinstance(row.get("trial_id"), str) or not isinstance(row.get("trial_write_id"), str):
                problems.append(f"control_row[{i}]: trial_id and trial_write_id are required")
            if len(problems) >= 10:
                break
        if problems:
            raise ConfigError(problems)
        write_id = _new_write_id()
        for row in rows:
            row["sweep"], row["write_id"] = sweep, write_id
        with self._lock:
            self._put(sweep, CONTROLS_TABLE, f"part-{write_id}.parquet", pa.Table.from_pylist(rows, schema=CONTROL_SCHEMA), small=True)
        return write_id

    def load_controls(self, sweep: str, trial_write_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Control rows of each trial's current row (rows computed for a replaced trial row
        are hidden), one per (trial_id, control, draw). `trial_write_ids`: the trials'
        current write_ids, when the caller has read them already."""
        self._require_sweep(sweep)
        return self._current_controls(sweep, self._list(sweep, CONTROLS_TABLE), trial_write_ids, set())

    def _current_controls(self, sweep: str, files: list[pafs.FileInfo], trial_write_ids: Iterable[str] | None, bad: set[str]) -> pd.DataFrame:
        if not files:
            return CONTROL_SCHEMA.empty_table().to_pandas()
        if trial_write_ids is None:
            trial_write_ids = self._read_trials(sweep, ["write_id"], None, set())["write_id"].to_pylist()
        current = pc.field("trial_write_id").isin(pa.array(list(trial_write_ids), pa.string()))
        frame = self._scan(files, CONTROLS_TABLE, CONTROL_SCHEMA.names, current, bad).to_pandas()
        # copies (two drivers, or a merge killed before deleting its inputs) are identical draws: keep one
        frame = frame.sort_values("write_id", kind="stable").drop_duplicates(["trial_id", "control", "draw"], keep="last")
        return frame.sort_values(["trial_id", "control", "draw"], kind="stable").reset_index(drop=True)

    def _with_controls(self, sweep: str, table: pa.Table) -> pa.Table:
        """`table` (trial rows with trial_id and write_id) with the joined control columns:
        each control's mean over its draws, and the number of draws."""
        n = table.num_rows
        controls = self.load_controls(sweep, table["write_id"].to_pylist()) if n else None
        if controls is None or controls.empty:
            for name in JOINED_CONTROL_COLUMNS:
                table = table.append_column(TRIAL_READ_SCHEMA.field(name), pa.nulls(n, TRIAL_READ_SCHEMA.field(name).type))
            return table
        means = controls.groupby(["trial_id", "control"])[list(CONTROL_MEASURES)].mean()
        ids = pd.Index(table["trial_id"].to_numpy(zero_copy_only=False))
        for control in (FOUND, *CONTROLS):
            for measure in CONTROL_MEASURES:
                values = means[measure].xs(control, level="control") if control in means.index.get_level_values("control") else pd.Series(dtype=float)
                table = table.append_column(TRIAL_READ_SCHEMA.field(control_column(control, measure)), pa.array(values.reindex(ids).to_numpy(dtype=float), pa.float64(), from_pandas=True))
        draws = controls[controls["control"] != FOUND].groupby("trial_id")["draw"].nunique().reindex(ids)
        return table.append_column(TRIAL_READ_SCHEMA.field(CONTROL_DRAWS_COLUMN), pa.array(draws.to_numpy(dtype=float), pa.float64(), from_pandas=True).cast(pa.int64()))
    def list_sweeps(self) -> pd.DataFrame:
        """Every sweep with its trial counts by status and the time of its last finished trial."""
        rows = []
        for sweep in self.sweeps():
            table = self._read_trials(sweep, ["status", "finished_at"], None, set())
            counts = pd.Series(table["status"].to_numpy(zero_copy_only=False)).value_counts()
            last = pc.max(table["finished_at"]).as_py() if table.num_rows else None
            rows.append({"sweep": sweep, TRIALS_TABLE: table.num_rows, **{s: int(counts.get(s, 0)) for s in STATUSES}, "last_update": last})
        frame = pd.DataFrame(rows, columns=["sweep", TRIALS_TABLE, *STATUSES, "last_update"])
        frame["last_update"] = pd.to_datetime(frame["last_update"], utc=True)
        return frame


def require_writable(store: ResultStore) -> None:
    """ConfigError unless a local store can take new files, checked before a sweep starts
    anything (a read-only store would otherwise fail after Ray started, or lose a trial).
    Probes the store folder, or the nearest folder above it that exists, with a temporary
    file it removes at once. Object stores show their permissions on the first write."""
    if not store._local:
        return
    folder = Path(store.root)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError([f"results: {clip(store.uri, 200)} cannot be created: {folder} is a file, not a folder"])
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hidden-write-check-"):
            pass
    except OSError as err:
        raise ConfigError([f"results: {clip(store.uri, 200)} is not writable ({folder}: {err.strerror or err}); choose another --results"]) from None


def require_existing(store: ResultStore) -> None:
    """ConfigError when a local store folder is not there (reading it would find nothing)."""
    if store._local and not Path(store.root).is_dir():
        raise ConfigError([f"results: no results store at {clip(store.uri, 200)} (no such folder); give --results or set $HIDDEN_RESULTS"])
