"""Read a user's YAML file (a sweep spec, a trial config) without surprises.

PyYAML's ``safe_load`` is safe from code execution, not from hostile or careless input:
a 770-byte alias bomb expands to gigabytes, 50,000 nested brackets overflow the stack, a
duplicated key silently replaces the first, ``1e-3`` is read as text, and a UTF-16 or
binary file dies in a ``UnicodeDecodeError``. ``load_yaml_file`` refuses each of these with
one message that names the file, the line and the problem:

- files above ``MAX_BYTES`` (specs list values, not data: the largest spec in sweeps/ is
  3 KB; 64 KiB parses in well under a second even on a loaded CPU);
- files that are not UTF-8 text (binary, UTF-16, Latin-1), named as such;
- aliases (``*name``): they are how a small file becomes a huge value, and a spec gains
  nothing from them that writing the value out does not give;
- nesting deeper than ``MAX_DEPTH`` (a spec needs 4 levels);
- the same key twice in one mapping, with the path and both line numbers.

It also reads YAML 1.2 floats (``1e-3``, ``5E4``) as numbers, as every other YAML library
does, since validation never converts text to numbers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hidden_core.errors import ConfigError, clip

MAX_BYTES = 64 * 1024
MAX_DEPTH = 32


class _Refused(Exception):
    """A YAML construct this loader will not build; message and 1-based line."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


try:  # libyaml's parser under PyYAML's own composer: 5x faster, and the checks below still apply
    from yaml._yaml import CParser
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    class _Base(Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

except ImportError:  # PyYAML built without libyaml
    _Base = yaml.SafeLoader  # type: ignore[misc,assignment]


class _StrictLoader(_Base):
    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"alias *{clip(str(event.anchor), 30)} is not allowed in a spec; write the value out", event.start_mark.line + 1)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _duplicate_keys(root: yaml.Node) -> list[str]:
    """'path: key ... at lines a and b' for every key given twice in one mapping."""
    problems: list[str] = []
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                child = f"{path}.{key}" if path else str(key)
                if key is not None:
                    if key in seen:
                        problems.append(f"{clip(child, 80)}: duplicate key at lines {seen[key]} and {line} (the second would silently replace the first)")
                    else:
                        seen[key] = line
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
    return problems


def read_text(path: Path, what: str = "spec") -> str:
    """The file's text: refused when too big, binary or not UTF-8 (ConfigError)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError([f"{path}: {size:,} bytes; a {what} file may hold at most {MAX_BYTES:,} bytes (it lists values, not data)"])
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read the {what}: {err.strerror or err}"]) from None
    if len(data) > MAX_BYTES:
        raise ConfigError([f"{path}: more than {MAX_BYTES:,} bytes; a {what} file may hold at most {MAX_BYTES:,} bytes"])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([f"{path}: UTF-16 text; save the {what} as UTF-8"])
    if b"\x00" in data:
        raise ConfigError([f"{path}: a binary file (it holds NUL bytes), not a YAML {what}"])
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise ConfigError([f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); save the {what} as UTF-8"]) from None


def load_yaml_text(text: str, source: str = "spec") -> Any:
    """Parse YAML text under the rules above; ConfigError names `source` and the line."""
    loader = None
    try:
        loader = _StrictLoader(text)  # its reader already refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = _duplicate_keys(node)
        if duplicates:
            raise ConfigError([f"{source}: {line}" for line in duplicates])
        return loader.construct_document(node)
    except _Refused as err:
        raise ConfigError([f"{source}: line {err.line}: {err}"]) from None
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if "nesting depth" in str(problem):  # libyaml's own limit (1000 levels) came first
            raise ConfigError([f"{source}: line {mark.line + 1 if mark else '?'}: nested deeper than {MAX_DEPTH} levels"]) from None
        raise ConfigError([f"{source}: not valid YAML{where}: {clip(str(problem), 200)}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str | Path, what: str = "spec") -> Any:
    """Read and parse a user's YAML file (size, encoding and structure checked)."""
    path = Path(path)
    return load_yaml_text(read_text(path, what), str(path))
