"""The trial-record vocabulary (hidden_core/records.py): statuses, report kinds and metric names
are spelled there only; every other module of hidden_core names them through its constants."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from ast_scan import docstring_ids

from hidden_core import records
from hidden_core.records import EPOCH_FIELDS, METRIC_FIELDS, REPORT_KINDS, STATUSES

ROOT = Path(__file__).resolve().parents[1]
VOCABULARY = frozenset({*STATUSES, *REPORT_KINDS, *METRIC_FIELDS})

# Literals still to replace, per file (empty since issue 21 closed: every status, report kind
# and metric name outside records.py is its constant). A file listed here must hold exactly
# these: replacing one fails this test until the entry shrinks, adding one fails it too.
NOT_YET: dict[str, dict[str, int]] = {}



def vocabulary_literals(tree: ast.AST) -> list[ast.Constant]:
    """String literals equal to a status, report kind or metric name (docstrings aside)."""
    docs = docstring_ids(tree)
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in VOCABULARY and id(node) not in docs]


def literals_outside_records() -> dict[str, Counter]:
    found: dict[str, Counter] = {}
    for path in sorted((ROOT / "hidden_core").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "hidden_core/records.py":
            continue
        hits = vocabulary_literals(ast.parse(path.read_text()))
        if hits:
            found[rel] = Counter(node.value for node in hits)
    return found


def test_statuses_report_kinds_and_metric_names_are_spelled_only_in_records():
    found = literals_outside_records()
    new = {f: dict(c) for f, c in found.items() if f not in NOT_YET}
    assert new == {}, "use the records.py constant (records.COMPLETED, records.VAL_ACC, ...) instead of the literal"
    changed = {f: (dict(found.get(f, {})), left) for f, left in NOT_YET.items() if dict(found.get(f, {})) != left}
    assert changed == {}, "NOT_YET no longer matches (found, listed): shrink it as literals are replaced"


def test_the_scan_finds_a_planted_literal():
    tree = ast.parse('"""a docstring naming val_acc and completed is fine"""\n'
                     'done = frame[frame["status"] == "completed"]\n'
                     'best = row.get("best_val_acc")\n'
                     'if report["kind"] == "final_report":\n    pass\n'
                     'label = f"{row[\'val_acc\']:.3f} completed"\n')
    assert sorted(n.value for n in vocabulary_literals(tree)) == ["best_val_acc", "completed", "final_report", "val_acc"]


def test_report_kinds_share_no_value_with_another_word_of_the_records():
    """So a literal equal to a report kind is one: 'epoch' (a column) and 'final' (a lottery
    checkpoint key) were report kinds before, and a scan could not tell them apart."""
    assert not set(REPORT_KINDS) & {*STATUSES, *METRIC_FIELDS, *EPOCH_FIELDS}
    assert len(set(REPORT_KINDS)) == len(REPORT_KINDS)


def test_every_status_report_kind_and_metric_name_has_its_constant():
    constants = {value for name, value in vars(records).items() if name.isupper() and isinstance(value, str)}
    assert VOCABULARY <= constants, sorted(VOCABULARY - constants)
