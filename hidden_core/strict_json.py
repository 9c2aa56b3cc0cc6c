"""Strict JSON for everything the `hidden` command prints as JSON: NaN and +-infinity become
null, so every parser reads it (Python's json writes a bare NaN by default, which JavaScript's
JSON.parse, jq and most other parsers reject).

One encoder, used by every `--json` and `--format json` output; tests/test_json_strict.py
runs each of them and parses the output with a parser that refuses NaN and Infinity.
Imports nothing of the project, Ray or torch (numpy and pandas only when given their values).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any


def plain(value: Any) -> Any:
    """`value` with every non-finite float as None, numpy scalars and arrays as Python
    numbers and lists, timestamps as ISO strings, mappings and sequences walked."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    module = type(value).__module__
    if module.startswith(("numpy", "pandas")):
        import pandas as pd

        if value is pd.NaT or value is pd.NA:
            return None
        if isinstance(value, pd.Timestamp | pd.Timedelta):
            return value.isoformat()
        if hasattr(value, "tolist"):  # numpy scalar or array
            return plain(value.tolist())
    if hasattr(value, "item"):  # e.g. a torch scalar
        return plain(value.item())
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of plain(value); allow_nan=False proves nothing non-finite got through."""
    return json.dumps(plain(value), allow_nan=False, **kwargs)


def frame_dumps(frame: Any, indent: int | None = 1) -> str:
    """A pandas DataFrame as a JSON array of row objects (column order kept)."""
    return dumps(frame.to_dict(orient="records"), indent=indent)


def loads_strict(text: str) -> Any:
    """Parse `text` as a strict parser does: NaN, Infinity and -Infinity are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: bare {name}")

    return json.loads(text, parse_constant=refuse)
