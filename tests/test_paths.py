"""Every on-disk name lives in hidden_core/paths.py: no other module of hidden_core writes one
as a string literal (docstrings excluded: they may name files to explain them).

A name with a dot, dash or underscore ("checkpoint.pt", "segment-", ".controls.csv") is
found in any literal without whitespace (a name or a path: f"segment-{i}",
"x/checkpoint.pt"; prose such as a help text or an error message may name a file). A plain
word ("trials", "controls", "specs") is also ordinary vocabulary (a config field, a report
key, a command name), so it is found only where it is used as a name on disk: an operand
of `/`, an argument of a path-joining call, a '/'-separated part of a literal without
whitespace, or a module constant whose value is such names and nothing else (another
module's copy of the name).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ast_scan import docstring_ids

from hidden_core import paths

PACKAGE = Path(__file__).resolve().parents[1] / "hidden_core"
PATHS_MODULE = PACKAGE / "paths.py"

# Calls that take path parts as arguments (the last name of the called expression).
PATH_CALLS = frozenset({"join", "joinpath", "Path", "PurePath", "PurePosixPath", "open", "makedirs", "mkdir", "listdir",
                        "exists", "isdir", "isfile", "rmtree", "_dir"})

# Literals left in modules other engineers own this round (issue 21 splits store.py and
# changes tune/cells.py at the same time): (module path prefix under hidden_core/, name) ->
# what to do. Each entry must still be found (the test fails on a stale one), so the list
# only shrinks.
PENDING: dict[tuple[str, str], str] = {}


def disk_names() -> set[str]:
    """paths.py's names: its module-level string constants and the strings of its tuples."""
    names: set[str] = set()
    for key, value in vars(paths).items():
        if not key.isupper():
            continue
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            names.update(value)
    return names


def _plain(name: str) -> bool:
    return name.isalpha()



PATHISH = re.compile(r"DIR|FILE|TABLE|PATH|SUFFIX|FOLDER|PREFIX")


def _call_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _text(node: ast.expr) -> str | None:
    """A string literal's text; an f-string's with '\\0' for each value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "\0" for v in node.values)
    return None


def _all_names(value: ast.expr, names: set[str]) -> list[str]:
    """The names a module constant's value consists of ([] unless it is only names)."""
    items = value.elts if isinstance(value, (ast.Tuple, ast.List, ast.Set)) else [value]
    texts = [_text(item) if not isinstance(item, ast.JoinedStr) else None for item in items]
    return [t for t in texts if t is not None] if texts and all(t in names for t in texts) else []


def literal_names(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) for every on-disk name written as a literal in `source` (module docstring)."""
    tree = ast.parse(source)
    docstrings = docstring_ids(tree)
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    plain = {n for n in names if _plain(n)}
    marked = names - plain
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(parents.get(id(node)), ast.JoinedStr):
            continue  # an f-string's part: judged with its f-string
        text = _text(node)
        if text is None or id(node) in docstrings:
            continue
        if not any(c.isspace() for c in text):  # a name or a path, not prose
            found.update((node.lineno, n) for n in marked if n in text)
            found.update((node.lineno, n) for n in plain & set(text.split("/")) if "/" in text)
        if text in plain:
            parent = parents.get(id(node))
            in_path = (isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div)) or (
                isinstance(parent, ast.Call) and node in parent.args and _call_name(parent.func) in PATH_CALLS)
            if in_path:
                found.add((node.lineno, text))
    for node in tree.body:  # module constants that copy names: SPECS_DIR = "specs", TABLES = ("trials", "epochs")
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pathish = any(isinstance(t, ast.Name) and PATHISH.search(t.id) for t in targets)
            # one plain word (EPOCHS = "epochs") may be a report field or a config key: only a
            # constant named like a path, or a tuple of names, copies an on-disk name
            if pathish or isinstance(node.value, (ast.Tuple, ast.List, ast.Set)) or _text(node.value) in marked:
                found.update((node.lineno, n) for n in _all_names(node.value, names))
    return sorted(found)


def literals_in_package() -> dict[tuple[str, str], list[int]]:
    """{(module path under hidden_core/ without .py, name): lines} over hidden_core but paths.py."""
    names = disk_names()
    out: dict[tuple[str, str], list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PATHS_MODULE:
            continue
        module = path.relative_to(PACKAGE).with_suffix("").as_posix()
        for line, name in literal_names(path.read_text(), names):
            out.setdefault((module, name), []).append(line)
    return out


def _pending(module: str, name: str) -> bool:
    return any(name == n and (module == prefix or module.startswith(prefix + "/")) for prefix, n in PENDING)


def test_no_on_disk_name_is_written_outside_paths_py():
    found = literals_in_package()
    stray = {f"hidden_core/{module}.py:{lines} {name!r}": lines for (module, name), lines in found.items() if not _pending(module, name)}
    assert not stray, f"on-disk names written as literals outside hidden_core/paths.py (define them there, import them): {sorted(stray)}"
    stale = [(prefix, name) for prefix, name in PENDING
             if not any(n == name and (m == prefix or m.startswith(prefix + "/")) for m, n in found)]
    assert not stale, f"PENDING entries no longer found (remove them): {stale}"


def test_the_scan_finds_planted_names():
    names = disk_names()
    planted = '''"""Docstrings may say checkpoint.pt, lottery.pt and trials/."""
import os
from pathlib import Path

CHECKPOINT = "checkpoint.pt"
TABLES = ("trials", "epochs")


def f(folder, i, config):
    """segment-<i>/ is explained here."""
    sub = Path(folder) / f"segment-{i}"
    table = os.path.join(folder, "controls")
    other = folder / "subnets" / name
    url = f"{folder}/checkpoints/{i}"
    epochs = config["epochs"]  # a config field, not a folder
    help = "default <results>/<sweep>/analysis/, beside checkpoint.pt"  # prose
    return sub, table, other, url, "no trials here", epochs, help
'''
    assert literal_names(planted, names) == [
        (5, "checkpoint.pt"), (6, "epochs"), (6, "trials"), (11, "segment-"), (12, "controls"), (13, "subnets"), (14, "checkpoints")]


def test_paths_names_cover_the_checkpoint_folder():
    # what a trial's checkpoint folder holds is named in paths.py (the AST scan's source)
    names = disk_names()
    assert {"checkpoint.pt", "trial.json", "lottery.pt", "segment-", "pruned.json", "subnet.safetensors"} <= names
    assert paths.segment_dir_name(3) == "segment-3"
    assert paths.controls_table_path("a/b.safetensors") == "a/b.controls.csv"
    assert paths.controls_table_path("a/b.bin") == "a/b.bin.controls.csv"
