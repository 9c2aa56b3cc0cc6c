"""The `hidden` command. Each sub-command lives in its own module with a `register(sub)`
function; a bad input anywhere becomes one clear message and exit code 2.

One place turns errors into exit codes, so every sub-command behaves alike:
- ``ConfigError`` (bad input: a spec, a flag, a `--where`, a missing sweep or store): its
  lines, at most ``MAX_LINES`` of them, each prefixed ``error:``; exit 2.
- ``OSError`` (a read-only store, a full disk, a folder that is not there): one line naming
  the path and the reason; exit 2. These are the user's environment, not our bugs.
- argparse's own usage errors already exit 2 with one message.
Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from hidden_core.config import ConfigError, clip

MAX_LINES = 50

# module name -> registers its sub-commands; each sets `func(args) -> int` on its parsers
COMMAND_MODULES = ("train_cmd", "sweep_cmd", "results_cmd", "analyze_cmd", "subnet_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hidden", description="Sweeps over untrained subnetworks: train, sweep, query, analyze."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"hidden_core.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
