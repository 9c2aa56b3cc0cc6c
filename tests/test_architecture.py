"""The shape of the code: no import circle in hidden_core (module-level or lazy imports
alike), and one trial-record vocabulary that training, the store and the Tune side share."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hidden_core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks: annotations only, never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import submodule` depends on the submodule, not on the package's __init__
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_hidden_core_has_no_import_circle():
    graph = import_graph()
    assert "hidden_core.tune.runner" in graph and graph["hidden_core.tune.runner"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_process_global_runtime_registry():
    source = "\n".join(p.read_text() for p in (PACKAGE / "tune").glob("*.py"))
    assert "_RUNTIMES" not in source and "def get_runtime" not in source


def test_one_record_vocabulary():
    from hidden_core.records import EPOCH_FIELDS, METRIC_FIELDS, STATUSES
    from hidden_core.store import EPOCH_SCHEMA, TRIAL_SCHEMA
    from hidden_core.training import EpochRecord, TrialResult

    assert tuple(f.name for f in dataclasses.fields(EpochRecord)) == EPOCH_FIELDS
    assert set(METRIC_FIELDS) <= {f.name for f in dataclasses.fields(TrialResult)}
    assert set(METRIC_FIELDS) <= set(TRIAL_SCHEMA.names) and set(EPOCH_FIELDS) <= set(EPOCH_SCHEMA.names)
    assert set(STATUSES) == {"completed", "pruned", "failed", "diverged"}


def test_spec_and_subnet_import_nothing_from_tune():
    """DESIGN.md's layering: the spec (validated on a laptop, read by the CLI) and the subnet
    files (read by `hidden subnet eval` and analysis) sit below the Ray side. Lazy imports
    inside functions count too (import_graph walks every import statement)."""
    graph = import_graph()
    below = [name for name in graph if name.startswith(("hidden_core.spec", "hidden_core.subnet"))]
    assert "hidden_core.spec" in below and "hidden_core.subnet.state" in below
    offending = {name: sorted(t for t in graph[name] if t.startswith("hidden_core.tune")) for name in below}
    assert {name: targets for name, targets in offending.items() if targets} == {}
