"""Bad user input and the words its messages are written in: ConfigError (every problem as a
'path: message' line), values cut short (clip, brief), near-miss suggestions, and pydantic
errors as one short line.

Nearly every module raises ConfigError, and most of them need nothing else of the trial
config, so this toolkit lives apart from it (hidden_core.config re-exports the names for
older imports). Imports nothing of the project, pydantic, Ray or torch.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """Bad user input. `problems` are 'path: message' lines, every one of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def clip(text: str, limit: int = 60) -> str:
    """`text` cut to a short prefix: error messages never repeat a huge value."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def brief(value: Any, limit: int = 40) -> str:
    """repr(value), cut to a short prefix."""
    return clip(repr(value), limit)


_TYPE_NAMES = {bool: "true/false", str: "text", int: "a whole number", float: "a float", type(None): "nothing"}
# pydantic error type -> what the field takes (strict: nothing is converted)
_EXPECTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
}


def error_message(e: Any) -> str:
    """One pydantic error as a short message naming the value (cut short) and what is allowed."""
    msg = e["msg"].removeprefix("Value error, ")
    kind, value = e["type"], e.get("input")
    if kind in _EXPECTED:
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        return f"{brief(value)} is {got}, not {_EXPECTED[kind]} (values are not converted: write it without quotes, or as the type the field takes)"
    if kind == "finite_number":
        return f"{brief(value)} is not a finite number"
    if kind == "literal_error":
        return f"{brief(value)} is not allowed; {msg[0].lower()}{msg[1:]}{suggestion(value, _literal_choices(e))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{brief(value)}: {msg[0].lower()}{msg[1:]}"
    return msg


def _literal_choices(e: Any) -> list[str]:
    expected = str((e.get("ctx") or {}).get("expected", ""))
    return re.findall(r"'([^']*)'", expected)


# Other libraries' names for our fields: a spelling difflib cannot see ('learning_rate' is
# closer to 'prune_rate' than to 'lr').
SYNONYMS = {"learning_rate": "lr", "optimiser": "optimizer", "k": "keep_fraction", "sparsity": "keep_fraction", "arch": "model", "wd": "weight_decay"}


def suggestion(value: Any, choices: Iterable[str]) -> str:
    """' (did you mean X?)' when `value` is a near miss of one of `choices`, else ''."""
    if not isinstance(value, str) or len(value) > 100:
        return ""
    choices = list(choices)
    if SYNONYMS.get(value) in choices:
        return f" (did you mean {SYNONYMS[value]!r}?)"
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
