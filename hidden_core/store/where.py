"""The filter language of `load_trials(where=...)` and `hidden results --where`: a
pandas-query-like line translated to a pyarrow compute expression (pushed down to the
Parquet scan), type-checked against a schema, and column lists checked by name. Every bad
input is a ConfigError naming the problem and what is allowed, never a traceback.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hidden_core.errors import ConfigError, brief, clip, suggestion
from hidden_core.store.schema import _UTC_US, TRIAL_SCHEMA, _utc

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


def _check_columns(kind: str, columns: Sequence[str] | None, schema: pa.Schema) -> list[str]:
    if columns is None:
        return list(schema.names)
    if isinstance(columns, str):
        columns = [columns]
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise unknown_column_error(kind, unknown, schema)
    return list(dict.fromkeys(columns))
