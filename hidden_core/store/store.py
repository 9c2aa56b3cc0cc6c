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

Imports neither torch nor Ray: a laptop with pandas and pyarrow reads a cluster's results.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import io
import json
import os
import re
import tempfile
import threading
import time
import tokenize
import types
import typing
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
from hidden_core.config import ConfigError, TrialConfig, brief, clip, suggestion
from hidden_core.records import (
    CONTROL_COLUMNS,
    CONTROL_DRAWS_COLUMN,
    CONTROL_MEASURES,
    CONTROLS,
    EPOCH_MEASURES,
    FINAL_STATUSES,
    FOUND,
    HEALTH_FLAGS,
    HEALTH_MEASURES,
    STATUSES,
    SUBNET_FILE,
    control_column,
)

RESULTS_ENV = "HIDDEN_RESULTS"
TABLES = ("trials", "epochs")

_SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,99}")  # matched whole
_UTC_US = pa.timestamp("us", tz="UTC")
# An epochs file whose trial row never appeared is a killed write once it is this old; a
# younger one may be a write in flight in another process, so compaction keeps it.
_ORPHAN_AGE_S = 24 * 3600
_STALE_TMP_AGE_S = 3600
_MAX_MERGED_FILES = 16  # beyond this many merged files, merge them all (reads open every file)


def default_results_root() -> str:
    return os.environ.get(RESULTS_ENV) or "results"


# ---- schema ----------------------------------------------------------------------------------
def _arrow_type(annotation: Any) -> pa.DataType:
    """Parquet type of a TrialConfig field, from its annotation (None-able means nullable)."""
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
    raise TypeError(f"no Parquet column type for TrialConfig annotation {annotation!r}; extend store._arrow_type")


def _fields(spec: str, arrow_type: pa.DataType) -> list[pa.Field]:
    return [pa.field(name, arrow_type) for name in spec.split()]


def _trial_schema() -> pa.Schema:
    config = [pa.field(name, _arrow_type(f.annotation)) for name, f in TrialConfig.model_fields.items()]
    return pa.schema(
        _fields("sweep trial_id cell_id status", pa.string())
        + config
        + _fields("val_acc test_acc best_val_acc", pa.float64())
        + _fields("best_epoch", pa.int64())
        + _fields("test_acc_at_best_val train_loss train_acc", pa.float64())
        + _fields("epochs_run diverged_epoch params_total params_active params_learned", pa.int64())
        + _fields("changed_fraction density train_seconds samples_per_second", pa.float64())
        + _fields("disabled_features", pa.float64())  # BN features with |gamma| < 0.01 (docs/methods.md)
        + _fields(" ".join(HEALTH_MEASURES), pa.float64())  # training health (records.HEALTH_FIELDS); null in older rows
        + _fields(HEALTH_FLAGS, pa.string())
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
    + _fields("density", pa.float64())
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
SCHEMAS = {"trials": TRIAL_SCHEMA, "epochs": EPOCH_SCHEMA, CONTROLS_TABLE: CONTROL_SCHEMA}
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


# ---- where expressions ----------------------------------------------------------------------
_COMPARISONS: dict[type, Any] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
}
_ARITHMETIC: dict[type, Any] = {
    ast.Add: pc.add, ast.Sub: pc.subtract, ast.Mult: pc.multiply, ast.Div: pc.divide, ast.Pow: pc.power,
}
WHERE_HELP = (
    "comparisons (== != < <= > >=, chained), and/or/not (or & | ~), `col in [...]`, "
    "arithmetic + - * / **, col.isna(), col.notna(), col.isin([...]), col.between(lo, hi)"
)


def _pandas_boolean_ops(text: str) -> str:
    """pandas.query gives & | ~ the precedence of and/or/not; Python binds & tighter than ==."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.OP and tok.string in ("&", "|", "~"):
            tok = tok._replace(type=tokenize.NAME, string={"&": "and", "|": "or", "~": "not"}[tok.string])
        out.append((tok.type, tok.string))
    return tokenize.untokenize(out)


def unknown_column_error(kind: str, names: Iterable[str], schema: pa.Schema, hint: str = "") -> ConfigError:
    names = list(names)
    wrong = ", ".join(brief(n) + suggestion(n, schema.names) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return ConfigError([f"{kind}: unknown column {wrong}{hint}; available columns: {', '.join(schema.names)}"])


def _quote_hint(tree: ast.AST, schema: pa.Schema) -> str:
    """' (text is quoted: method == 'edge_popup')' when an unknown name is compared with a
    column, as in `method == edge_popup`: the user meant the text, not a column."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        terms = [node.left, *node.comparators]
        for (left, right), op in zip(zip(terms, terms[1:], strict=False), node.ops, strict=True):
            names = [t.id if isinstance(t, ast.Name) else None for t in (left, right)]
            if None in names or (names[0] in schema.names) == (names[1] in schema.names):
                continue
            column, text = (names[0], names[1]) if names[0] in schema.names else (names[1], names[0])
            symbol = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}.get(type(op), "==")
            return f" (text is quoted: {column} {symbol} {text!r})"
    return ""


MAX_WHERE_CHARS = 2000  # a filter is a line typed by a person; 2000 characters is 20 lines of it
MAX_WHERE_NODES = 500  # terms and operators; deeper or longer expressions are refused, not evaluated
_WHERE_CONSTANTS = (bool, int, float, str, type(None))
_INT64 = (-(2**63), 2**63 - 1)


class _WhereTranslator:
    """A pandas-query-like expression string -> pyarrow compute expression (for pushdown).

    Hostile input gets a ConfigError naming the problem, never a traceback: text longer than
    MAX_WHERE_CHARS or with more than MAX_WHERE_NODES terms, comments, integers beyond 64
    bits, constants other than numbers, text, booleans and None (`...`, b'', 1j),
    arithmetic on text, and dates that do not parse."""

    def __init__(self, text: str, schema: pa.Schema):
        self.text, self.schema = text, schema
        self.unknown: list[str] = []
        self.shown = clip(repr(text), 80)

    def translate(self) -> pc.Expression:
        if len(self.text) > MAX_WHERE_CHARS:
            raise ConfigError([f"where: {len(self.text):,} characters; a filter may have at most {MAX_WHERE_CHARS:,}"])
        try:
            source = _pandas_boolean_ops(self.text).strip()
            tree = ast.parse(source, mode="eval")
        except (SyntaxError, tokenize.TokenError, ValueError, MemoryError, RecursionError) as err:
            raise ConfigError([f"where: cannot parse {self.shown} ({clip(str(getattr(err, 'msg', err)), 100)}); use {WHERE_HELP}"]) from None
        if any(t.type == tokenize.COMMENT for t in tokenize.generate_tokens(io.StringIO(self.text).readline)):
            raise self.unsupported("a comment ('#')")
        if sum(1 for _ in ast.walk(tree)) > MAX_WHERE_NODES:
            raise ConfigError([f"where: {self.shown} has more than {MAX_WHERE_NODES} terms; split the selection"])
        try:
            expr = self.visit(tree.body)
        except ConfigError:
            raise
        except RecursionError:
            raise ConfigError([f"where: {self.shown} is nested too deeply"]) from None
        except (pa.ArrowException, TypeError, ValueError, OverflowError, ZeroDivisionError) as err:
            raise ConfigError([f"where: cannot evaluate {self.shown}: {clip(str(err).splitlines()[0] if str(err) else type(err).__name__, 150)}"]) from None
        if self.unknown:
            raise unknown_column_error("where", dict.fromkeys(self.unknown), self.schema, _quote_hint(tree, self.schema))
        if not isinstance(expr, pc.Expression):
            raise self.unsupported("a constant")
        return expr

    def unsupported(self, what: str) -> ConfigError:
        return ConfigError([f"where: {what} is not supported in {self.shown}; use {WHERE_HELP}"])

    def visit(self, node: ast.AST) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.unsupported(f"'{clip(ast.unparse(node), 60)}'")
        return method(node)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id not in self.schema.names:
            self.unknown.append(node.id)
        return pc.field(node.id)

    def visit_Constant(self, node: ast.Constant) -> Any:
        value = node.value
        if not isinstance(value, _WHERE_CONSTANTS):
            raise self.unsupported(f"the constant {clip(ast.unparse(node), 40)} ({type(value).__name__})")
        if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
            raise self.unsupported(f"the integer {clip(str(value), 30)} (beyond 64 bits)")
        return value

    def visit_List(self, node: ast.List | ast.Tuple | ast.Set) -> list[Any]:
        values = [self.visit(e) for e in node.elts]
        if any(isinstance(v, pc.Expression) for v in values):
            raise self.unsupported("a list of columns")
        return values

    visit_Tuple = visit_Set = visit_List

    def visit_BoolOp(self, node: ast.BoolOp) -> pc.Expression:
        values = [self.visit(v) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = (out & v) if isinstance(node.op, ast.And) else (out | v)
        return out

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return ~operand
        if isinstance(node.op, ast.USub):
            return pc.negate(operand) if isinstance(operand, pc.Expression) else -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        raise self.unsupported(f"'{clip(ast.unparse(node), 60)}'")

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        func = _ARITHMETIC.get(type(node.op))
        if func is None:
            raise self.unsupported(f"'{clip(ast.unparse(node), 60)}'")
        left, right = self.visit(node.left), self.visit(node.right)
        for operand in (left, right):
            if isinstance(operand, str | bool | list) or operand is None:
                raise self.unsupported(f"arithmetic on {brief(operand)}")
        if not (isinstance(left, pc.Expression) or isinstance(right, pc.Expression)):
            return self.fold(node, left, right)
        return func(left, right)

    def fold(self, node: ast.BinOp, left: Any, right: Any) -> int | float:
        """Arithmetic on two numbers, done here, bounded: no 10**10**10, results in int64 or finite."""
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 2**32):
            raise self.unsupported(f"the power '{clip(ast.unparse(node), 40)}' (exponents up to 64, bases up to 2**32)")
        try:
            value = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
                     ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b}[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError) as err:
            raise ConfigError([f"where: cannot compute '{clip(ast.unparse(node), 40)}' ({err})"]) from None
        if isinstance(value, complex) or (isinstance(value, float) and not np.isfinite(value)):
            raise self.unsupported(f"the result of '{clip(ast.unparse(node), 40)}' (not a finite number)")
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            raise self.unsupported(f"the result of '{clip(ast.unparse(node), 40)}' (beyond 64 bits)")
        return value

    def visit_Compare(self, node: ast.Compare) -> pc.Expression:
        parts, left = [], self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.visit(right_node)
            parts.append(self.compare(op, left, right))
            left = right
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def compare(self, op: ast.cmpop, left: Any, right: Any) -> pc.Expression:
        if isinstance(op, ast.In | ast.NotIn):
            if not isinstance(left, pc.Expression) or not isinstance(right, list):
                raise self.unsupported("'in' other than `column in [values]`")
            test = left.isin(self.literals(left, right))
            return ~test if isinstance(op, ast.NotIn) else test
        if right is None or left is None:
            column = left if right is None else right
            if isinstance(op, ast.Eq | ast.NotEq) and isinstance(column, pc.Expression):
                return column.is_null() if isinstance(op, ast.Eq) else column.is_valid()
            raise self.unsupported("ordering against None")
        if not (isinstance(left, pc.Expression) or isinstance(right, pc.Expression)):
            raise self.unsupported("comparing two constants")
        compare = _COMPARISONS.get(type(op))
        if compare is None:
            raise self.unsupported(f"operator {type(op).__name__}")
        if isinstance(left, pc.Expression):
            right = self.literal_for(left, right)
        else:
            left = self.literal_for(right, left)
        return compare(left, right)

    def literal_for(self, column: pc.Expression, value: Any) -> Any:
        """Timestamp columns accept ISO strings, as pandas.query does."""
        name = _field_name(column)
        if name in self.schema.names and pa.types.is_timestamp(self.schema.field(name).type) and isinstance(value, str):
            try:
                return pa.scalar(_utc(value), type=_UTC_US)
            except (ValueError, OverflowError, TypeError, pa.ArrowException):
                raise ConfigError([f"where: {brief(value)} is not a date/time for {name} (write e.g. '2026-01-31' or '2026-01-31T12:00Z')"]) from None
        return value

    def literals(self, column: pc.Expression, values: list[Any]) -> list[Any]:
        return [self.literal_for(column, v) for v in values]

    def visit_Call(self, node: ast.Call) -> pc.Expression:
        if not isinstance(node.func, ast.Attribute) or node.keywords:
            raise self.unsupported(f"'{clip(ast.unparse(node), 60)}'")
        column = self.visit(node.func.value)
        args = [self.visit(a) for a in node.args]
        name = node.func.attr
        if not isinstance(column, pc.Expression):
            raise self.unsupported(f"'{clip(ast.unparse(node), 60)}'")
        if name in ("isna", "isnull") and not args:
            return column.is_null()
        if name in ("notna", "notnull") and not args:
            return column.is_valid()
        if name == "isin" and len(args) == 1 and isinstance(args[0], list):
            return column.isin(self.literals(column, args[0]))
        if name == "between" and len(args) == 2:
            low, high = self.literals(column, args)
            return (column >= low) & (column <= high)
        raise self.unsupported(f"'{clip(ast.unparse(node), 60)}'")


def _field_name(expr: pc.Expression) -> str | None:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)", str(expr))
    return match.group(1) if match else None


def where_expression(where: str | pc.Expression | None, schema: pa.Schema = TRIAL_SCHEMA) -> pc.Expression | None:
    """Parse and type-check a filter against `schema` (ConfigError naming the problem)."""
    if where is None or (isinstance(where, str) and not where.strip()):
        return None
    expr = _WhereTranslator(where, schema).translate() if isinstance(where, str) else where
    if not isinstance(expr, pc.Expression):
        raise ConfigError([f"where: expected a string or a pyarrow compute expression, got {type(where).__name__}"])
    try:
        schema.empty_table().filter(expr)
    except pa.ArrowInvalid as err:
        missing = re.findall(r"FieldRef\.Name\((\w+)\)", str(err))
        if missing:
            raise unknown_column_error("where", missing, schema) from None
        raise ConfigError([f"where: cannot evaluate {clip(str(where), 80)}: {clip(str(err).splitlines()[0], 150)}"]) from None
    except (pa.ArrowException, TypeError, ValueError, OverflowError, RecursionError) as err:
        raise ConfigError([f"where: cannot evaluate {clip(str(where), 80)}: {clip(str(err).splitlines()[0] if str(err) else type(err).__name__, 150)}"]) from None
    return expr


# ---- the store -------------------------------------------------------------------------------
def _open_filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in root and not root.startswith("mock:"):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(root))
    try:
        return pafs.FileSystem.from_uri(root)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as arrow_err:
        try:  # any fsspec backend (memory://, az://, ...) through pyarrow's adapter
            import fsspec

            fs, path = fsspec.core.url_to_fs(root)
        except (ImportError, ValueError) as err:
            raise ConfigError([f"results: cannot open {root!r}: {arrow_err}; {err}"]) from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path.rstrip("/")


class ResultStore:
    """Results of many sweeps under one root: a local folder or an object-store URL."""

    def __init__(self, root: str | os.PathLike[str], *, filesystem: pafs.FileSystem | None = None, compact_every: int | None = 100):
        root = os.fspath(root)
        if filesystem is None:
            self.fs, self.root = _open_filesystem(root)
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
        for info in self._list(sweep, "trials")[:3]:
            try:
                schema = self._schema(info.path)
            except (pa.ArrowException, OSError):
                continue
            if _foreign_reason(schema, "trials") is None:
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
        written = {"trials": _trial_table(sweep, trials, write_ids)}
        epochs = _records(epoch_rows)
        if epochs:
            written["epochs"] = _epoch_table(sweep, epochs, dict(zip(written["trials"]["trial_id"].to_pylist(), write_ids, strict=True)))
        with self._lock:
            self.mark_sweep(sweep)
            buffer = self._buffer_for(sweep)
            # epochs first: a trial row never points at epochs that are not there yet
            for table in ("epochs", "trials"):
                if table in written:
                    path = self._put(sweep, table, f"part-{base}.parquet", written[table], small=len(trials) == 1)
                    buffer[table].append((path, written[table]))
            if self.compact_every and len(buffer["trials"]) >= self.compact_every:
                self.flush(sweep)
        return write_ids

    def _buffer_for(self, sweep: str) -> dict[str, list[tuple[str, pa.Table]]]:
        if sweep not in self._buffers:
            leftover = sum(i.base_name.startswith("part-") for i in self._list(sweep, "trials"))
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
        if not buffer or not buffer["trials"]:
            return
        for table in ("epochs", "trials"):
            if len(buffer[table]) > 1:
                merged = pa.concat_tables([t for _, t in buffer[table]])
                self._put(name, table, f"compacted-{_new_write_id()}.parquet", _sorted(merged, table), small=False)
                for path, _ in buffer[table]:
                    _delete_quietly(self.fs, path)
            buffer[table].clear()
        merged_files = sum(i.base_name.startswith("compacted-") for i in self._list(name, "trials"))
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
                    _delete_quietly(self.fs, tmp)  # a full disk leaves no half file behind
                    raise
                self.fs.move(tmp, path)
            else:
                pq.write_table(data, path, filesystem=self.fs, **options)
        except OSError as err:
            if _no_space(err):  # pyarrow's message hides the errno and the path: give both
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
        files = self._list(sweep, "trials")
        losers = self._superseded(self._scan(files, "trials", _KEY_COLUMNS, None, bad))
        wanted = list(dict.fromkeys([*columns, "trial_id"]))
        if losers:
            drop = ~pc.field("write_id").isin(pa.array(sorted(losers), pa.string()))
            filter = drop if filter is None else filter & drop
        table = self._scan(files, "trials", wanted, filter, bad)
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
        table = self._scan(self._list(sweep, "epochs"), "epochs", wanted, current, bad)
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
                    _delete_quietly(self.fs, f.path)
            return len(files)

    def list_sweeps(self) -> pd.DataFrame:
        """Every sweep with its trial counts by status and the time of its last finished trial."""
        rows = []
        for sweep in self.sweeps():
            table = self._read_trials(sweep, ["status", "finished_at"], None, set())
            counts = pd.Series(table["status"].to_numpy(zero_copy_only=False)).value_counts()
            last = pc.max(table["finished_at"]).as_py() if table.num_rows else None
            rows.append({"sweep": sweep, "trials": table.num_rows, **{s: int(counts.get(s, 0)) for s in STATUSES}, "last_update": last})
        frame = pd.DataFrame(rows, columns=["sweep", "trials", *STATUSES, "last_update"])
        frame["last_update"] = pd.to_datetime(frame["last_update"], utc=True)
        return frame

    # -- compaction --
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
        trial_files = self._list(sweep, "trials")
        chosen = [f for f in trial_files if not parts_only or f.base_name.startswith("part-")]
        inputs["trials"] = (chosen, self._scan(chosen, "trials", TRIAL_SCHEMA.names, None, bad))
        chosen_paths = {f.path for f in chosen}
        others = self._scan([f for f in trial_files if f.path not in chosen_paths], "trials", _KEY_COLUMNS, None, bad)
        keys = pa.concat_tables([inputs["trials"][1].select(_KEY_COLUMNS), others])
        losers = self._superseded(keys)
        known = set(keys["write_id"].to_pylist())
        epoch_files = [f for f in self._list(sweep, "epochs") if not parts_only or f.base_name.startswith("part-")]
        inputs["epochs"] = (epoch_files, self._scan(epoch_files, "epochs", EPOCH_SCHEMA.names, None, bad))
        for table, (files, merged) in inputs.items():
            files = [f for f in files if f.path not in bad and self._own_part(f, table)]  # never delete what could not be read, or another's
            keep = _rows_to_keep(merged, table, losers, known)
            if len(files) < 2 and keep.all():
                continue
            stats["rows_dropped"] += merged.num_rows - int(keep.sum())
            self._put(sweep, table, f"compacted-{_new_write_id()}.parquet", _sorted(merged.filter(pa.array(keep)), table), small=False)
            for f in files:
                _delete_quietly(self.fs, f.path)
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
                    _delete_quietly(self.fs, info.path)


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
                trials, marker = self._dir(sweep, "trials") + "/", self._marker(sweep)
                for info in sorted(files, key=lambda f: (f.path == marker, f.path.startswith(trials))):  # trials, then the marker, last
                    _delete_quietly(self.fs, info.path)
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


_TOMBSTONE = ".deleted-"


# Columns every row hidden writes has a value in (any table): a row without one is foreign.
_NEVER_NULL = ("trial_id", "write_id")
# The columns every file of a table that hidden wrote has; a file without them is foreign.
_KEYS_OF = {"trials": ("sweep", "trial_id", "status", "finished_at", "write_id"), "epochs": ("trial_id", "epoch", "write_id"),
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
    keys = ["method", "model", "dataset", "width", "depth", "trial_id"] if name == "trials" else ["trial_id", "epoch"]
    return table.sort_by([(k, "ascending") for k in keys])


def _rows_to_keep(merged: pa.Table, table: str, losers: set[str], known: set[str]) -> np.ndarray:
    """Drop superseded rows, identical copies, and epochs of writes that never got a trial
    row (a killed write) once they are old enough not to be a write in flight."""
    write_ids = merged["write_id"]
    keep = np.ones(merged.num_rows, dtype=bool)
    if losers:
        keep &= ~pc.is_in(write_ids, value_set=pa.array(sorted(losers), pa.string())).to_numpy(zero_copy_only=False)
    key = ["trial_id", "write_id"] if table == "trials" else ["trial_id", "epoch", "write_id"]
    keep &= ~pd.DataFrame({k: merged[k].to_numpy(zero_copy_only=False) for k in key}).duplicated().to_numpy()
    if table == "epochs" and merged.num_rows:
        orphan = ~pc.is_in(write_ids, value_set=pa.array(sorted(known), pa.string())).to_numpy(zero_copy_only=False)
        born = pc.cast(pc.utf8_slice_codeunits(write_ids, 0, 20), pa.int64()).to_numpy(zero_copy_only=False) / 1e9
        keep &= ~(orphan & (time.time() - born > _ORPHAN_AGE_S))
    return keep


def _no_space(err: OSError) -> bool:
    return err.errno == errno.ENOSPC or "No space left on device" in str(err) or "errno 28" in str(err)


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass  # a concurrent compaction took it first; its rows are in that one's output


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


def _check_sweep_name(sweep: str) -> None:
    if not isinstance(sweep, str) or not _SWEEP_NAME.fullmatch(sweep):
        raise ConfigError([f"sweep: {brief(sweep)} is not a valid sweep name (1-100 letters, digits, '_', '-', '.', '='; not starting with '.' or '_')"])


def _check_columns(kind: str, columns: Sequence[str] | None, schema: pa.Schema) -> list[str]:
    if columns is None:
        return list(schema.names)
    if isinstance(columns, str):
        columns = [columns]
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise unknown_column_error(kind, unknown, schema)
    return list(dict.fromkeys(columns))


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
