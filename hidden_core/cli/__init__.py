"""The `hidden` command. Each sub-command lives in its own module with a `register(sub)`
function; a bad input anywhere becomes one clear message and exit code 2.

One place turns errors into exit codes, so every sub-command behaves alike:
- ``ConfigError`` (bad input: a spec, a flag, a `--where`, a missing sweep or store): its
  lines, at most ``MAX_LINES`` of them, each prefixed ``error:``; exit 2.
- ``OSError`` (a read-only store, a full disk, a folder that is not there): one line naming
  the path and the reason; exit 2. These are the user's environment, not our bugs.
- argparse's own usage errors already exit 2 with one message.
Anything else is a bug and keeps its traceback.

argparse's usage errors get a hint where one is cheap to give: an unknown option spelled
with underscores (`--keep_fraction`) or near a known one names it, and a sub-command that
exists in another group (`analyze masks`) names the full command (`hidden subnet masks`).

`main` imports only the module of the command it is given (COMMANDS): `hidden results show`
does not import what `hidden train`'s flags are made from (the config models) or the
analysis commands, so a fresh `hidden results show` or `hidden sweep status` stays
interactive on a large store. Without a known command (`hidden --help`, a typo) every
module registers, as `build_parser()` does."""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from collections.abc import Sequence

from hidden_core.errors import ConfigError, clip

MAX_LINES = 50

# module name -> registers its sub-commands; each sets `func(args) -> int` on its parsers
COMMAND_MODULES = ("train_cmd", "sweep_cmd", "results_cmd", "analyze_cmd", "subnet_cmd", "methods_cmd")
# each top-level command -> the module that registers it (tests/test_cli_main.py checks it
# against what each module's register adds)
COMMANDS = {
    "train": "train_cmd", "inspect": "train_cmd", "data": "train_cmd", "sweep": "sweep_cmd", "results": "results_cmd",
    "analyze": "analyze_cmd", "subnet": "subnet_cmd", "methods": "methods_cmd",
}


DISTRIBUTION = "hidden-core"  # pyproject.toml's [project] name: --version reads its metadata


def package_version() -> str:
    import importlib.metadata  # here: reading the installed metadata costs every command's start otherwise

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """`--version`: the version looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, default: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help or "show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object, option_string: str | None = None) -> None:
        print(f"{parser.prog} {package_version()}")  # stdout, as argparse's own version action
        parser.exit()


class HiddenParser(argparse.ArgumentParser):
    """argparse with hints in its errors. Sub-parsers are of this class too (argparse makes
    them with the parent's class); `root` is the top-level parser, set by build_parser."""

    root: argparse.ArgumentParser | None = None

    def error(self, message: str):  # type: ignore[override]
        choice = re.search(r"^argument ([^:]+): invalid choice: '([^']*)'", message)
        commands = {a.metavar or a.dest for a in self._actions if isinstance(a, argparse._SubParsersAction)}
        if choice and choice.group(1) in commands:  # a sub-command, not an option's value
            message += _command_hint(build_parser(), choice.group(2))  # every command, not only the one main loaded
        super().error(message)


def _sub_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every (sub-)command of `parser` by its words after `hidden`, nested groups included."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found[(*path, name)] = child
                found.update(_sub_commands(child, (*path, name)))
    return found


def _command_hint(root: argparse.ArgumentParser, word: str) -> str:
    """'; did you mean `hidden subnet masks`?' when `word` is a command of another group or
    close to one."""
    paths = [" ".join(p) for p in _sub_commands(root)]
    exact = [p for p in paths if p.split()[-1] == word]
    close = exact or [p for p in paths if p.split()[-1] in difflib.get_close_matches(word, [q.split()[-1] for q in paths], n=3, cutoff=0.75)]
    return f"; did you mean {' or '.join(f'`hidden {p}`' for p in close[:3])}?" if close else ""


def _option_hint(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'; did you mean --keep-fraction?' for an unknown option that is a known one spelled
    with underscores, or close to one."""
    known = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    hints = []
    for word in extras:
        if not word.startswith("--"):
            continue
        flag = word.split("=", 1)[0]
        dashed = "--" + flag[2:].replace("_", "-")
        match = [dashed] if dashed in known else difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
        if match:
            hints.append(match[0] if len(extras) == 1 or match[0] == dashed else f"{match[0]} (for {flag})")
    dashes = " (flags are spelled with dashes)" if any("_" in w.split("=", 1)[0] for w in extras if w.startswith("--")) else ""
    return f"; did you mean {', '.join(hints)}?{dashes}" if hints else ""


def _chosen_parser(root: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.ArgumentParser, tuple[str, ...]]:
    """The innermost sub-command parser that `argv` names (words after `hidden`)."""
    commands = _sub_commands(root)
    path: tuple[str, ...] = ()
    for word in argv:
        if (*path, word) in commands:
            path = (*path, word)
    return commands.get(path, root), path


def command_modules(argv: Sequence[str] | None = None) -> tuple[str, ...]:
    """The command modules a parser for `argv` needs: the one module of the command it names,
    or (no argv, no known command) all of them."""
    word = next((w for w in argv or () if not w.startswith("-")), None)
    module = COMMANDS.get(word or "")
    return (module,) if module in COMMAND_MODULES else COMMAND_MODULES


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `hidden` parser: with `argv`, only the command it names (command_modules)."""
    parser = HiddenParser(
        prog="hidden", description="Sweeps over untrained subnetworks: train, sweep, query, analyze."
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules(argv):
        importlib.import_module(f"hidden_core.cli.{name}").register(sub)
    for child in _sub_commands(parser).values():
        child.root = parser
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parser.parse_args, but an unknown option is reported by the sub-command it was given
    to (its usage, not the top level's) with the flag it probably meant."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        chosen, _ = _chosen_parser(parser, argv)
        chosen.error(f"unrecognized arguments: {' '.join(extras)}{_option_hint(chosen, extras)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parse_arguments(parser, argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        problems = err.problems or [str(err)]
        if len(problems) > MAX_LINES:
            problems = [*problems[:MAX_LINES], f"... and {len(problems) - MAX_LINES} more problems"]
        for line in problems:
            print(f"error: {clip(line, 2000)}", file=sys.stderr)
        return 2
    except OSError as err:
        if isinstance(err, BrokenPipeError):
            # `hidden results show X | head`: the reader left; not an error of ours
            sys.stderr.close()
            return 0
        where = err.filename or ""
        reason = err.strerror or str(err) or type(err).__name__
        print(f"error: {clip(str(where), 300) + ': ' if where else ''}{clip(reason, 300)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
