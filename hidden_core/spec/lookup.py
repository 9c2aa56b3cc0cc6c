"""Finding a spec file by name: `hidden sweep run quickstart` finds sweeps/quickstart.yaml."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hidden_core.config import ConfigError, brief, clip, suggestion


def spec_candidates(name: str, folders: Sequence[Path]) -> list[Path]:
    """Where a spec named `name` is looked for, in order: the path itself, the path + .yaml,
    and a bare name (no folder in it) in each of `folders`, as given and + .yaml."""
    names = [name] if name.endswith((".yaml", ".yml")) else [name, f"{name}.yaml"]
    paths = [Path(n) for n in names]
    if len(Path(name).parts) == 1:
        paths += [folder / n for folder in folders for n in names]
    return paths


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def find_spec_file(name: str, folders: Sequence[Path]) -> Path:
    """`name` as a path (with or without .yaml), else as a file (with or without .yaml) in
    one of `folders`; ConfigError naming the files tried, with the near misses among the
    folders' specs, when there is none."""
    tried = spec_candidates(name, folders)
    try:
        for candidate in tried:
            if candidate.is_file():
                return candidate
    except (OSError, ValueError):  # a NUL byte or a name too long for the file system
        pass
    known = sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})
    return_hint = suggestion(Path(name).stem, known) if len(name) < 200 else ""
    others = list(dict.fromkeys(_shown(c) for c in tried[1:]))
    nor = f" (nor {', '.join(clip(o, 80) for o in others[:6])})" if others else ""
    raise ConfigError([f"spec: no such spec file {brief(name)}{nor}{return_hint}; specs in sweeps/: {', '.join(known) or '(none)'}"])
