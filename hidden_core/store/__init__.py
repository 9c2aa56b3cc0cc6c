"""The Parquet results store: one folder per sweep, append-only part files, deduped reads.

Layout (documented for outside readers in results/README.md)::

    <root>/<sweep>/trials/part-<write_id>.parquet       one write_trial() call
    <root>/<sweep>/trials/compacted-<write_id>.parquet  many parts merged (flush, compact)
    <root>/<sweep>/epochs/...                            the same, one row per trial epoch

Why this shape:
- A file is never modified after it appears, so a reader never sees half a write, and a
  crash can only leave a stray temporary file (names start with '.', which every reader
  skips). Local writes go to a temporary file and are renamed; on object stores one PUT is
  already atomic.
- A re-run trial gets a new part file instead of editing the old one. Readers keep, per
  trial_id, a final row (completed, pruned, diverged) over a failed one, then the row with
  the newest finished_at (then the newest write_id), and epochs only from that row's
  write, so re-runs replace without any in-place update.
- Many one-row files make reads slow (1-2 ms per file), so every `compact_every` writes
  the writer merges the parts it wrote from the rows it still holds in memory (flush),
  and merges everything once merged files pile up (compact). A merged file is complete
  before its inputs are deleted, so a kill leaves duplicates (reads drop them) but never
  loses a row.

One job per module:
- schema.py       the tables' Parquet schemas, hidden's file and sweep names, rows -> tables
- where.py        the filter language (`where=`) and column checks
- store.py        ResultStore: marker, writes, the writer's merges, reads, the controls join
- maintenance.py  compaction, foreign files, deleting a sweep (ResultStore's base class)
- storage.py      the file system: opened by URL, quiet deletes, a full disk named

Imports neither torch nor Ray: a laptop with pandas and pyarrow reads a cluster's results.
"""

from hidden_core.store.schema import (
    CONFIG_COLUMNS,
    CONTROL_SCHEMA,
    CONTROLS_TABLE,
    EPOCH_SCHEMA,
    JOINED_CONTROL_COLUMNS,
    SCHEMAS,
    TABLES,
    TRIAL_READ_SCHEMA,
    TRIAL_SCHEMA,
    _check_sweep_name,
)
from hidden_core.store.store import (
    RESULTS_ENV,
    ResultStore,
    default_results_root,
    require_existing,
    require_writable,
)
from hidden_core.store.where import (
    MAX_WHERE_CHARS,
    MAX_WHERE_NODES,
    WHERE_HELP,
    unknown_column_error,
    where_expression,
)

__all__ = [
    "CONFIG_COLUMNS",
    "CONTROLS_TABLE",
    "CONTROL_SCHEMA",
    "EPOCH_SCHEMA",
    "JOINED_CONTROL_COLUMNS",
    "MAX_WHERE_CHARS",
    "MAX_WHERE_NODES",
    "RESULTS_ENV",
    "SCHEMAS",
    "TABLES",
    "TRIAL_READ_SCHEMA",
    "TRIAL_SCHEMA",
    "WHERE_HELP",
    "ResultStore",
    "_check_sweep_name",
    "default_results_root",
    "require_existing",
    "require_writable",
    "unknown_column_error",
    "where_expression",
]
