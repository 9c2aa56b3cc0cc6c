"""`hidden analyze scaling`: fit width/depth scaling laws of a sweep, draw them, write a report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pyarrow.fs as pafs

from hidden_core.cli.results_cmd import (
    add_results_option,
    check_columns,
    load_selection,
    open_store,
    split_names,
)
from hidden_core.config import ConfigError
from hidden_core.store import ResultStore


def default_out_dir(store_root: str, local: bool, sweep: str, x: str) -> Path:
    # next to the sweep's tables when the store is a folder; a URL store stays read-only
    return Path(store_root) / sweep / "analysis" / x if local else Path("analysis") / sweep / x


def cmd_scaling(args: argparse.Namespace) -> int:
    from hidden_core.analysis import analyze_scaling, format_table, write_scaling_report
    from hidden_core.analysis.report import headline_table

    by = split_names(args.by) or ["method"]
    check_columns("by", [*by, args.metric])
    if not 0 < args.ci < 1:
        raise ConfigError([f"ci: {args.ci} is not in (0, 1)"])
    if args.bootstrap < 0:
        raise ConfigError([f"bootstrap: {args.bootstrap} must be >= 0"])
    store = open_store(args)
    trials, _ = load_selection(store, args.sweep, args.where, completed_only=False)
    analysis = analyze_scaling(trials, x=args.x, by=by, metric=args.metric, reference_x=args.reference, n_boot=args.bootstrap, ci=args.ci, seed=args.seed)
    out = Path(args.out) if args.out else default_out_dir(store.root, _is_local(store), args.sweep, args.x)
    written = write_scaling_report(analysis, out, sweep=args.sweep, trials=trials, selection=args.where)
    headline = headline_table(analysis)
    if not headline.empty:
        print(format_table(headline))
        print()
    for note in analysis.notes:
        print(f"note: {note}")
    refused = analysis.fits[analysis.fits["fit"] == "refused"]
    for _, row in refused.iterrows():
        print(f"not fitted: {row['label']}: {row['reason']}")
    print(f"wrote {', '.join(sorted(written))} to {out}")
    print(f"report: {written['report.md']}")
    return 0


def _is_local(store: ResultStore) -> bool:
    return isinstance(store.fs, pafs.LocalFileSystem) and os.path.isabs(store.root)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="scaling-law fits, plots and a report", description="Analyze a sweep's results.")
    actions = parser.add_subparsers(dest="analyze_action", required=True, metavar="ANALYSIS")
    p = actions.add_parser(
        "scaling",
        help="fit test error = e_inf + a * x^-b per group; plots, fits.csv, report.md",
        description="Fit test error vs width or depth per group with a saturating power law, bootstrap over seeds, "
        "compare every untrained method with dense, and write plots, fits.csv, gaps.csv and report.md.",
    )
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (see `hidden results list`)")
    p.add_argument("--x", choices=("width", "depth"), default="width", help="the size axis (default width)")
    p.add_argument("--by", nargs="+", metavar="COL", help="group columns (default method); other grid axes that vary are split automatically")
    p.add_argument("--where", metavar="EXPR", help="filter trials first, e.g. \"dataset == 'mnist1d'\"")
    p.add_argument("--metric", default="test_acc", help="accuracy column to fit (default test_acc; error = 1 - it)")
    p.add_argument("--reference", type=float, metavar="X", help="dense reference size (default: width 1 if measured, else the largest)")
    p.add_argument("--bootstrap", type=int, default=400, metavar="N", help="bootstrap replicates (default 400)")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--out", metavar="DIR", help="output folder (default <results>/<sweep>/analysis/<x>)")
    add_results_option(p)
    p.set_defaults(func=cmd_scaling)

