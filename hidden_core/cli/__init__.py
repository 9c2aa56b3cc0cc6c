"""The `hidden` command. Each sub-command lives in its own module with a `register(sub)`
function; a bad input anywhere becomes one clear message and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from hidden_core.config import ConfigError

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
        for line in err.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `hidden results show X | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
