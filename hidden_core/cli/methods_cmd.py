"""`hidden methods`: the method catalog (hidden_core/catalog.py) as a table or JSON: each
method's summary, the state it learns, the config fields it reads and its own options with
their defaults, bounds and meanings. Torch-free, like the catalog."""

from __future__ import annotations

import argparse
import typing

from hidden_core.catalog import CATALOG, LEARNS, Option
from hidden_core.strict_json import dumps


def _type_name(option: Option) -> str:
    if typing.get_origin(option.type) is typing.Literal:
        return " | ".join(map(str, typing.get_args(option.type)))
    return getattr(option.type, "__name__", str(option.type))


def option_record(name: str, option: Option) -> dict:
    return {"option": name, "type": _type_name(option), "default": option.default, "allowed": str(option.bound) if option.bound else None,
            "meaning": option.description}


def catalog_records() -> list[dict]:
    return [{"method": info.name, "summary": info.summary, "learns": info.learns, "learns_meaning": LEARNS[info.learns],
             "reads": list(info.reads), "options": [option_record(n, o) for n, o in info.options.items()], "controls": info.controls,
             "runner": info.runner, "vectorizes": info.vectorizes} for info in CATALOG.values()]


def cmd_methods(args: argparse.Namespace) -> int:
    records = catalog_records()
    if args.json:
        print(dumps(records, indent=1))
        return 0
    for r in records:
        print(f"{r['method']}: {r['summary']}")
        print(f"  learns: {r['learns']} ({r['learns_meaning']}); controls: {r['controls'] or 'none'}; runner: {r['runner']}")
        if r["reads"]:
            print(f"  reads: {', '.join(r['reads'])}")
        for o in r["options"]:
            allowed = f", allowed {o['allowed']}" if o["allowed"] else ""
            print(f"  {o['option']} ({o['type']}, default {o['default']!r}{allowed}): {o['meaning']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("methods", help="list the methods, what each learns and its options",
                              description="The method catalog: every method, the state it learns, the shared config fields it reads "
                                          "and its own options (a spec or `hidden train` sets them like any other field).")
    p.add_argument("--json", action="store_true", help="one JSON array on stdout")
    p.set_defaults(func=cmd_methods)
