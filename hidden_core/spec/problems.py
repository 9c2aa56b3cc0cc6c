"""How the spec package words a problem: each as 'path: message', the path as written in the
file (``grid.keep_fraction[2]``). Shared by validate.py and plan.py (a combination of grid
values can be invalid only once crossed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from hidden_core.config import (
    TrialConfig,
    brief,
    clip,
    error_message,
    format_validation_error,
    suggestion,
)


def kind_of(value: Any) -> str:
    """What a value is, for 'got ...' (a mapping or a list by its type only)."""
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {brief(value)}" if not isinstance(value, Mapping | list) else type(value).__name__


def key_text(k: Any) -> str:
    """A key as shown in a path (a hostile key is cut short)."""
    return clip(str(k), 60)


def join_path(path: str, rest: str) -> str:
    return f"{path}.{rest}" if rest else path


def prefixed(err: ValidationError, prefix: str, model: type[BaseModel]) -> list[str]:
    """pydantic errors as 'path: message' lines for spec-level models. Errors of one path
    (the members of a union) merge into one line."""
    merged: dict[str, list[str]] = {}
    for e in err.errors():
        loc: list[str] = []
        owner: Any = model
        for part in e["loc"]:
            if isinstance(part, int):
                loc.append(f"[{part}]")
                continue
            fields = getattr(owner, "model_fields", None)
            if fields is not None and part in fields:
                loc.append(part)
                annotation = fields[part].annotation
                owner = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        msg = error_message(e)
        if e["type"] == "extra_forbidden":
            loc.append(key_text(e["loc"][-1]))
            names = list(getattr(owner, "model_fields", {})) if owner is not None else []
            msg = f"unknown key{suggestion(e['loc'][-1], names)}; allowed keys: {', '.join(names)}" if names else "unknown key"
        elif e["type"] == "missing":
            msg = "missing"
        path = ".".join(p for p in (prefix, ".".join(loc).replace(".[", "[")) if p)
        merged.setdefault(path, [])
        if msg not in merged[path]:
            merged[path].append(msg)
    return [f"{path}: {' or '.join(msgs)}" if path else " or ".join(msgs) for path, msgs in merged.items()]


def config_errors(values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Validate a TrialConfig; (field, rest-of-path, message) per problem ('' field: global)."""
    try:
        TrialConfig.model_validate(values)
    except ValidationError as err:
        out = []
        for line in format_validation_error(err):
            loc, sep, msg = line.partition(": ")
            if not sep:
                out.append(("", "", line))
                continue
            head, _, rest = loc.partition(".")
            if head in TrialConfig.model_fields or head in values:
                out.append((head, rest, msg))
            else:
                out.append(("", "", line))
        return out
    return []
