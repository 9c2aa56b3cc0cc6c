"""The store's upkeep: compaction (many part files merged into one, superseded rows and
copies dropped, unreadable files set aside), what in a sweep folder is foreign, and deleting
a sweep. Every step is safe to kill: a merged file is complete before its inputs go, and a
delete is one rename (local) or ends with the trials table and the marker (object stores).

`Maintenance` is the half of ResultStore (store.py) that changes what is already written;
it reads and writes through the store's own methods (_list, _scan, _put, ...).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from hidden_core import paths
from hidden_core.errors import ConfigError, suggestion
from hidden_core.store import storage
from hidden_core.store.schema import (
    _KEY_COLUMNS,
    _OWN_PART,
    CONTROL_SCHEMA,
    CONTROLS_TABLE,
    EPOCH_SCHEMA,
    EPOCHS_TABLE,
    TABLES,
    TRIAL_SCHEMA,
    TRIALS_TABLE,
    _check_sweep_name,
    _foreign_reason,
    _new_write_id,
    _own_top_file,
    _sorted,
)

# An epochs file whose trial row never appeared is a killed write once it is this old; a
# younger one may be a write in flight in another process, so compaction keeps it.
_ORPHAN_AGE_S = 24 * 3600
_STALE_TMP_AGE_S = 3600
_TOMBSTONE = ".deleted-"


class Maintenance:
    """Compaction, foreign files and deletion of a ResultStore (its base class)."""

    def compact_controls(self, sweep: str, bad: set[str] | None = None) -> int:
        """Merge the controls table's files into one (rows of replaced trial rows and
        copies dropped); returns the files merged. Safe to kill: the merged file is complete
        before its inputs go."""
        self._require_sweep(sweep)
        with self._lock:
            files = self._list(sweep, CONTROLS_TABLE)
            if len(files) < 2:
                return 0
            bad = set() if bad is None else bad
            frame = self._current_controls(sweep, files, None, bad)  # never delete what could not be read
            merged = pa.Table.from_pandas(frame, schema=CONTROL_SCHEMA, preserve_index=False)
            self._put(sweep, CONTROLS_TABLE, f"compacted-{_new_write_id()}.parquet", merged, small=False)
            for f in files:
                if f.path not in bad and self._own_part(f, CONTROLS_TABLE):
                    storage.delete_quietly(self.fs, f.path)
            return len(files)

    def compact(self, sweep: str, *, parts_only: bool = False) -> dict[str, Any]:
        """Merge part files (all files unless parts_only) into one deduped file per table.
        Safe to kill at any point: the merged file is complete before any input is deleted,
        and reads drop the duplicates a kill leaves behind.

        Only hidden's own files are merged and deleted: a file in a table folder that is
        not one (another name, or Parquet without the table's key columns) stays where it
        is and is named in stats["foreign"]. A file of hidden's name that cannot be read
        (truncated by a crash or a full disk) is renamed to `.broken-<name>` in its folder
        (readers skip it, so they stop warning; its bytes are kept for inspection) and named
        in stats["set_aside"]."""
        self._require_sweep(sweep)
        with self._lock:
            self._buffers.pop(sweep, None)  # its parts are merged here
            return self._compact(sweep, parts_only)

    def _compact(self, sweep: str, parts_only: bool) -> dict[str, Any]:
        bad: set[str] = set()
        stats: dict[str, Any] = {"files_merged": 0, "rows_dropped": 0}
        inputs: dict[str, tuple[list[pafs.FileInfo], pa.Table]] = {}
        trial_files = self._list(sweep, TRIALS_TABLE)
        chosen = [f for f in trial_files if not parts_only or f.base_name.startswith("part-")]
        inputs[TRIALS_TABLE] = (chosen, self._scan(chosen, TRIALS_TABLE, TRIAL_SCHEMA.names, None, bad))
        chosen_paths = {f.path for f in chosen}
        others = self._scan([f for f in trial_files if f.path not in chosen_paths], TRIALS_TABLE, _KEY_COLUMNS, None, bad)
        keys = pa.concat_tables([inputs[TRIALS_TABLE][1].select(_KEY_COLUMNS), others])
        losers = self._superseded(keys)
        known = set(keys["write_id"].to_pylist())
        epoch_files = [f for f in self._list(sweep, EPOCHS_TABLE) if not parts_only or f.base_name.startswith("part-")]
        inputs[EPOCHS_TABLE] = (epoch_files, self._scan(epoch_files, EPOCHS_TABLE, EPOCH_SCHEMA.names, None, bad))
        for table, (files, merged) in inputs.items():
            files = [f for f in files if f.path not in bad and self._own_part(f, table)]  # never delete what could not be read, or another's
            keep = _rows_to_keep(merged, table, losers, known)
            if len(files) < 2 and keep.all():
                continue
            stats["rows_dropped"] += merged.num_rows - int(keep.sum())
            self._put(sweep, table, f"compacted-{_new_write_id()}.parquet", _sorted(merged.filter(pa.array(keep)), table), small=False)
            for f in files:
                storage.delete_quietly(self.fs, f.path)
            stats["files_merged"] += len(files)
        stats["files_merged"] += self.compact_controls(sweep, bad)
        self._remove_stale_temporaries(sweep)
        stats["set_aside"] = self._set_aside_unreadable(sweep, bad)
        stats["foreign"] = self.foreign_files(sweep)
        return stats

    def _own_part(self, info: pafs.FileInfo, table: str) -> bool:
        """Whether compaction may delete this file: hidden's name and hidden's columns."""
        if not _OWN_PART.fullmatch(info.base_name) or info.base_name.startswith("."):
            return False
        try:
            return _foreign_reason(self._schema(info.path), table) is None
        except (pa.ArrowException, OSError):
            return False

    def set_aside_unreadable(self, sweep: str) -> list[str]:
        """Rename the sweep's hidden-named files that this store's reads found unreadable
        (truncated by a crash or a full disk) to `.broken-<name>`; returns them (relative to
        the sweep). A driver calls this under the sweep's lease, so reads stop warning."""
        with self._lock:
            return self._set_aside_unreadable(sweep, set())

    def _set_aside_unreadable(self, sweep: str, bad: set[str]) -> list[str]:
        """Rename hidden-named files of the sweep that could not be read to `.broken-<name>`."""
        moved = []
        folder = f"{self.root}/{sweep}/"
        for path in sorted(bad | self._unreadable):
            name = path.rsplit("/", 1)[-1]
            if not path.startswith(folder) or not _OWN_PART.fullmatch(name) or name.startswith("."):
                continue
            try:
                schema = self._schema(path)
            except (pa.ArrowException, OSError):
                schema = None
            if schema is not None:
                continue  # readable after all (foreign columns): left where it is
            target = f"{path.rsplit('/', 1)[0]}/.broken-{name}"
            try:
                self.fs.move(path, target)
            except (FileNotFoundError, OSError):
                continue
            self._unreadable.discard(path)
            moved.append(path[len(folder):])
        return moved

    def foreign_files(self, sweep: str) -> list[str]:
        """Files in the sweep folder that hidden did not write, relative to it: anything
        outside paths.SWEEP_ENTRIES (and the lease's and studies' side files), and files in
        a table folder that are not hidden's parts or not of its schema."""
        folder = f"{self.root}/{sweep}/"
        out = []
        tables = {*TABLES, CONTROLS_TABLE}
        for info in self.sweep_files(sweep):
            rel = info.path[len(folder):]
            top, _, rest = rel.partition("/")
            if not rest:
                if not _own_top_file(top):
                    out.append(rel)
                continue
            if top not in paths.SWEEP_ENTRIES:
                out.append(rel)
            elif top in tables and "/" not in rest:
                if not _OWN_PART.fullmatch(rest):
                    out.append(rel)
                elif not rest.startswith("."):
                    try:
                        schema = self._schema(info.path)
                    except (pa.ArrowException, OSError):
                        continue  # hidden's, damaged: set aside by compact
                    if _foreign_reason(schema, top) is not None:
                        out.append(rel)
            elif top in tables:
                out.append(rel)
        return sorted(out)

    def _remove_stale_temporaries(self, sweep: str) -> None:
        for table in (*TABLES, CONTROLS_TABLE):
            selector = pafs.FileSelector(self._dir(sweep, table), allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                old = info.mtime is not None and time.time() - info.mtime.timestamp() > _STALE_TMP_AGE_S
                if info.base_name.startswith(".") and info.base_name.endswith(".tmp") and old:
                    storage.delete_quietly(self.fs, info.path)


    # -- deleting --
    def sweep_folders(self) -> list[str]:
        """Sweeps `delete_sweep` can remove: the sweeps (`sweeps`: hidden's marker, or a
        trials/ table of hidden's schema), also one that never wrote a row (its driver wrote
        the marker with the lease). A folder that merely holds a checkpoints/ or trials/
        folder is not one."""
        return self.sweeps()

    def sweep_files(self, sweep: str) -> list[pafs.FileInfo]:
        """Every file under the sweep's folder."""
        _check_sweep_name(sweep)
        selector = pafs.FileSelector(f"{self.root}/{sweep}", allow_not_found=True, recursive=True)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]

    def delete_sweep(self, sweep: str) -> dict[str, Any]:
        """Remove a sweep: its rows (trials/, epochs/) and everything else hidden wrote in
        its folder (paths.SWEEP_ENTRIES: subnet files, checkpoints, lease, Optuna studies,
        analysis, the marker). Files hidden did not write (`foreign_files`) stay where they
        are, named in stats["kept"]. Other sweeps are untouched. Returns {"files": n,
        "bytes": b, "kept": [...]}.

        Crash-safe order. Local, nothing foreign: the folder is first renamed to a hidden
        tombstone (`.deleted-<sweep>-<id>`, one atomic rename: a reader sees the whole sweep
        or none of it, and a driver started afterwards begins a new sweep), then removed; a
        crash leaves only the tombstone, which no reader lists and the next delete removes.
        Otherwise (object stores have no folder rename; a folder with foreign files stays):
        file by file, the trials table and then the marker last, so until the end the sweep
        is still listed, and running the delete again finishes a crashed one. The caller
        checks the sweep's lease (the CLI)."""
        _check_sweep_name(sweep)
        if sweep not in self.sweep_folders():
            raise ConfigError([f"sweep: no sweep named {sweep!r} in {self.uri}{suggestion(sweep, self.sweep_folders())}; "
                               f"available sweeps: {', '.join(self.sweep_folders()) or '(none)'}"])
        with self._lock:
            self._buffers.pop(sweep, None)  # nothing of it is written or merged any more
            folder = f"{self.root}/{sweep}"
            self._made_dirs = {d for d in self._made_dirs if not d.startswith(folder + "/")}
            foreign = self.foreign_files(sweep)
            kept = {f"{folder}/{rel}" for rel in foreign}
            files = [f for f in self.sweep_files(sweep) if f.path not in kept]
            data = [f for f in files if f.path != f"{folder}/{paths.LEASE_FILE}"]  # a lease is no data (the CLI holds one while deleting)
            stats: dict[str, Any] = {"files": len(data), "bytes": sum(f.size or 0 for f in data), "kept": foreign}
            if self._local and not foreign:
                tombstone = f"{self.root}/{_TOMBSTONE}{sweep}-{uuid.uuid4().hex[:8]}"
                self.fs.move(folder, tombstone)
                self.fs.delete_dir(tombstone)
            else:
                trials, marker = self._dir(sweep, TRIALS_TABLE) + "/", self._marker(sweep)
                for info in sorted(files, key=lambda f: (f.path == marker, f.path.startswith(trials))):  # trials, then the marker, last
                    storage.delete_quietly(self.fs, info.path)
                if not foreign:
                    try:
                        self.fs.delete_dir(folder)  # folder markers, where the store keeps them
                    except (FileNotFoundError, OSError):
                        pass
                elif self._local:
                    for dirpath, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):  # deepest first, emptied ones only
                        with contextlib.suppress(OSError):
                            os.rmdir(dirpath)
            self._marked.discard(sweep)
            self.remove_tombstones()
        return stats

    def remove_tombstones(self) -> None:
        """Finish local deletes that a crash interrupted (their tombstone folders)."""
        if not self._local:
            return
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith(_TOMBSTONE):
                try:
                    self.fs.delete_dir(info.path)
                except (FileNotFoundError, OSError):
                    pass  # another delete is removing it


def _rows_to_keep(merged: pa.Table, table: str, losers: set[str], known: set[str]) -> np.ndarray:
    """Drop superseded rows, identical copies, and epochs of writes that never got a trial
    row (a killed write) once they are old enough not to be a write in flight."""
    write_ids = merged["write_id"]
    keep = np.ones(merged.num_rows, dtype=bool)
    if losers:
        keep &= ~pc.is_in(write_ids, value_set=pa.array(sorted(losers), pa.string())).to_numpy(zero_copy_only=False)
    key = ["trial_id", "write_id"] if table == TRIALS_TABLE else ["trial_id", "epoch", "write_id"]
    keep &= ~pd.DataFrame({k: merged[k].to_numpy(zero_copy_only=False) for k in key}).duplicated().to_numpy()
    if table == EPOCHS_TABLE and merged.num_rows:
        orphan = ~pc.is_in(write_ids, value_set=pa.array(sorted(known), pa.string())).to_numpy(zero_copy_only=False)
        born = pc.cast(pc.utf8_slice_codeunits(write_ids, 0, 20), pa.int64()).to_numpy(zero_copy_only=False) / 1e9
        keep &= ~(orphan & (time.time() - born > _ORPHAN_AGE_S))
    return keep
