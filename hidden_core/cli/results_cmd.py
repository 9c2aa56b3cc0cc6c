"""`hidden results list | show | best | compact | delete`: read the Parquet store from the terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from hidden_core.analysis.metrics import FINAL_TEST_METRIC, metric_label, selection_column
from hidden_core.analysis.tables import comparable
from hidden_core.errors import ConfigError
from hidden_core.records import (
    COMPLETED,
    EPOCHS_RUN,
    SUBNET_FILE,
    TEST_ACC_AT_BEST_VAL,
    TEST_METRIC,
    TRAIN_SECONDS,
)
from hidden_core.store import (
    CONFIG_COLUMNS,
    TRIAL_READ_SCHEMA,
    ResultStore,
    default_results_root,
    require_existing,
    require_writable,
    unknown_column_error,
)

FORMATS = ("table", "csv", "json", "parquet")
# The test metric a table shows (records.TEST_METRIC unless --metric asks for the final
# epoch's), always beside the validation accuracy it was selected by.
SHOWN_TEST_METRICS = (TEST_METRIC, FINAL_TEST_METRIC)
SHOWN_METRICS = [EPOCHS_RUN, TRAIN_SECONDS]


def shown_metric(metric: str) -> list[str]:
    """[the selection column, the test metric] for --metric, e.g. [best_val_acc, test_acc_at_best_val]."""
    if metric not in SHOWN_TEST_METRICS:
        raise ConfigError([f"metric: {metric!r} is not a test metric; allowed: {TEST_METRIC} (default: {metric_label(TEST_METRIC)}), "
                           f"{FINAL_TEST_METRIC} ({metric_label(FINAL_TEST_METRIC)}); other columns: --columns"])
    return [selection_column(metric), metric]


def metric_note(metric: str) -> str:
    """The line that names the metric a table shows."""
    return f"metric: {metric} = {metric_label(metric)}, selected by {selection_column(metric)} ({metric_label(selection_column(metric))})"


def add_results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", metavar="DIR", default=None, help="results store: folder or URL (s3://, gs://, ...); default $HIDDEN_RESULTS or results/")


def open_store(args: argparse.Namespace) -> ResultStore:
    """The store to read; a local folder that is not there is an error, not an empty store."""
    store = ResultStore(args.results or default_results_root(), compact_every=None)
    require_existing(store)
    return store


def split_names(values: Sequence[str] | None) -> list[str] | None:
    """`--columns a,b c` and `--columns a --columns b` all mean [a, b, c]."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def check_columns(kind: str, names: Sequence[str] | None) -> None:
    unknown = [n for n in names or () if n not in TRIAL_READ_SCHEMA.names]
    if unknown:
        raise unknown_column_error(kind, unknown, TRIAL_READ_SCHEMA)


def load_selection(store: ResultStore, sweep: str, where: str | None, *, completed_only: bool) -> tuple[pd.DataFrame, str]:
    """The trials `where` selects (only completed ones when asked and `where` does not talk
    about status); raises when nothing is left. Returns the rows and a note on the filter."""
    trials = store.load_trials(sweep, where=where)
    note = ""
    if completed_only and not (where and "status" in where):
        trials = trials[trials["status"] == COMPLETED]
        note = "completed trials only (mention status in --where to include others)"
    if trials.empty:
        statuses = store.load_trials(sweep, columns=["status"])["status"].value_counts().to_dict()
        selected = f"--where {where!r}" + (" and status == 'completed'" if note else "") if where else "status == 'completed'"
        raise ConfigError([f"selection: no trials match {selected} (sweep {sweep!r} has {sum(statuses.values())} trials: {statuses or 'none'})"])
    return trials, note


def varying_config_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in CONFIG_COLUMNS if c != "seed" and comparable(trials[c]).nunique(dropna=False) > 1]


def shown_controls(trials: pd.DataFrame) -> list[str]:
    """The control test-accuracy columns some selected trial has (the spec's subnet_controls)."""
    from hidden_core.records import CONTROLS, FOUND, control_column

    names = [control_column(c) for c in (FOUND, *CONTROLS)]
    return [n for n in names if n in trials.columns and trials[n].notna().any()]


def emit(frame: pd.DataFrame, fmt: str, output: str | None) -> None:
    if fmt == "parquet":
        if output is None and sys.stdout.isatty():
            raise ConfigError(["format: parquet is binary; give --output FILE or redirect stdout"])
        frame.to_parquet(output or sys.stdout.buffer, index=False)
        return
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        from hidden_core.strict_json import frame_dumps

        text = frame_dumps(frame) + "\n"
    else:
        from hidden_core.analysis.tables import format_table

        text = format_table(frame) + "\n"
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def cmd_list(args: argparse.Namespace) -> int:
    store = open_store(args)
    sweeps = store.list_sweeps()
    if sweeps.empty:
        print(f"no sweeps in {store.uri}")
        return 0
    emit(sweeps, args.format, None)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from hidden_core.analysis.tables import describe_pooled, one_per_seed, summarize

    store = open_store(args)
    columns, group_by = split_names(args.columns), split_names(args.group_by)
    check_columns("columns", columns)
    check_columns("group-by", group_by)
    pair = shown_metric(args.metric)
    trials, note = load_selection(store, args.sweep, args.where, completed_only=bool(group_by))
    notes = [metric_note(args.metric)] if not columns else []
    if group_by:
        # one row per cell and seed (a search's samples: the one validation chooses), so `n`
        # and `seeds` count seeds; grid axes not in --group-by are pooled, and said so
        rows = one_per_seed(trials, pair[0])
        frame = summarize(rows, group_by, columns or pair)
        notes.append(f"mean, std over the n rows of each group, one per seed and cell; {describe_pooled(trials, group_by)}")
    else:
        varying = varying_config_columns(trials)
        files = [SUBNET_FILE] if SUBNET_FILE in trials and trials[SUBNET_FILE].notna().any() else []  # where each trial's subnetwork is
        columns = columns or ["trial_id", "status", *varying, "seed", *pair, *SHOWN_METRICS, *shown_controls(trials), *files]
        frame = trials.sort_values([c for c in [*varying, "seed"] if c in trials.columns], kind="stable")[columns]
    emit(frame.reset_index(drop=True), args.format, args.output)
    if args.format == "table":
        for line in [*notes, *([f"{len(trials)} {note}"] if note else [])]:
            print(f"({line})", file=sys.stderr)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from hidden_core.analysis.tables import best_per_group

    store = open_store(args)
    by = split_names(args.by)
    check_columns("by", [*by, args.metric, *args.report])
    trials, note = load_selection(store, args.sweep, args.where, completed_only=True)
    emit(best_per_group(trials, by, args.metric, args.report), args.format, args.output)
    if note and args.format == "table":
        print(f"(best of {len(trials)} {note}; chosen by {args.metric})", file=sys.stderr)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    store = open_store(args)
    require_writable(store)
    stats = store.compact(args.sweep)
    print(f"compacted {args.sweep}: {stats['files_merged']} files merged, {stats['rows_dropped']} superseded rows dropped")
    if stats.get("set_aside"):
        print(f"set aside {len(stats['set_aside'])} unreadable part file(s) of an interrupted write (renamed to .broken-<name>; "
              f"readers skip them): {', '.join(stats['set_aside'][:10])}")
    if stats.get("foreign"):
        print(f"left {len(stats['foreign'])} file(s) not written by hidden where they are: {', '.join(stats['foreign'][:10])}")
    return 0


def _describe_sweep(store: ResultStore, sweep: str) -> str:
    from hidden_core import paths

    prefix = f"{store.root}/{sweep}/"
    files = [f for f in store.sweep_files(sweep) if f.path != prefix + paths.LEASE_FILE]  # a lease is no data (store.delete_sweep)
    subnets = sum(f.path.startswith(prefix + paths.SUBNETS_DIR + "/") and f.path.endswith(paths.SUBNET_SUFFIX) for f in files)
    trials = len(store.load_trials(sweep, columns=["trial_id"])) if sweep in store.sweeps() else 0
    others = store.foreign_files(sweep)
    files = [f for f in files if f.path[len(prefix):] not in set(others)]
    size = sum(f.size or 0 for f in files)
    extra = f"; {len(others)} file(s) not written by hidden are kept: {', '.join(others[:10])}" if others else ""
    return f"sweep {sweep!r} in {store.uri}: {trials} trials, {subnets} subnet files, {len(files)} files, {size / 1e6:.1f} MB{extra}"


def _refuse_live_driver(store: ResultStore, sweep: str) -> None:
    from hidden_core import paths
    from hidden_core.tune.lease import SweepLeaseHeld, live_holder, read_lease_file

    lease = f"{store.root}/{sweep}/{paths.LEASE_FILE}"
    holder = live_holder(read_lease_file(store.fs, lease))  # bounded read; a broken lease names no live driver
    if holder is not None:
        raise SweepLeaseHeld([f"results delete: sweep {sweep!r} is being run by a live driver ({holder.describe()}; lease {lease}); "
                              "stop it first (a driver that died stops counting after its heartbeat is 30 s old)"])


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a sweep with all its files, after a confirmation, never under a live driver."""
    import contextlib

    from hidden_core.store import _check_sweep_name

    store = open_store(args)
    _check_sweep_name(args.sweep)
    known = store.sweep_folders()
    if args.sweep not in known:
        raise ConfigError([f"sweep: no sweep named {args.sweep!r} in {store.uri}; known sweeps: {', '.join(known) or '(none)'}"])
    require_writable(store)
    _refuse_live_driver(store, args.sweep)
    description = _describe_sweep(store, args.sweep)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError([f"results delete: not deleting {description}: confirmation needs a terminal; pass --yes to delete without asking"])
        print(f"This deletes {description}, with every row and file of it. It cannot be undone.")
        try:
            answer = input(f"Type the sweep name ({args.sweep}) to delete it: ")
        except EOFError:
            answer = ""
        if answer.strip() != args.sweep:
            print("not deleted")
            return 1
    hold: contextlib.AbstractContextManager = contextlib.nullcontext()
    if store._local:  # hold the lease while deleting: no driver starts on the sweep meanwhile
        from hidden_core.tune.lease import SweepLease

        hold = SweepLease(store.root, args.sweep, heartbeat_s=3600)  # the folder is gone long before a heartbeat
    with hold:
        stats = store.delete_sweep(args.sweep)
    print(f"deleted sweep {args.sweep} from {store.uri}: {stats['files']} files, {stats['bytes'] / 1e6:.1f} MB")
    if stats.get("kept"):
        print(f"kept {len(stats['kept'])} file(s) not written by hidden in {args.sweep}/: {', '.join(stats['kept'][:10])}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="list, show and compare stored results", description="Read the Parquet results store.")
    actions = parser.add_subparsers(dest="results_action", required=True, metavar="ACTION")

    p = actions.add_parser("list", help="sweeps with trial counts by status and last update", description="List the sweeps of the store with their trial counts by status and last update.")
    add_results_option(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("show", help="trials of a sweep, or mean/std/count per group with --group-by", description=(
        "Show the trials of SWEEP (one row per trial, the config columns that vary, seed, best_val_acc and the test metric "
        "test_acc_at_best_val, or with --metric test_acc the final epoch's val_acc and test_acc), or with --group-by the mean and std "
        "over the completed trials of each group, one per cell and seed (a search's sample of best validation); n counts the rows, "
        "seeds the seeds, and a line under the table names the metric and the axes the groups pool."))
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (see `hidden results list`)")
    p.add_argument("--where", metavar="EXPR", help="filter, e.g. \"method == 'edge_popup' and width >= 1\"")
    p.add_argument("--columns", nargs="+", metavar="COL", help="columns to show (with --group-by: the metrics to average)")
    p.add_argument("--group-by", nargs="+", metavar="COL", help="mean, std and count over the seeds of each group (completed trials; with a search, per seed the sample of best validation)")
    p.add_argument("--metric", default=TEST_METRIC, metavar="METRIC", help=f"the test metric shown, beside the validation accuracy it is selected by: {TEST_METRIC} (default: test accuracy at the best-validation epoch) or {FINAL_TEST_METRIC} (the final epoch's)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table; parquet needs --output or a redirect)")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    add_results_option(p)
    p.set_defaults(func=cmd_show)

    p = actions.add_parser("best", help="best completed trial per group by best validation accuracy, with its test accuracy at that epoch", description=(
        "Per group of --by, the completed trial with the highest --metric (the best validation accuracy by default), "
        "and the --report columns (test accuracy at the best-validation epoch by default) of that trial."))
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (see `hidden results list`)")
    p.add_argument("--by", nargs="+", required=True, metavar="COL", help="group columns, e.g. method width")
    p.add_argument("--metric", default=selection_column(TEST_METRIC), help=f"chosen by (default {selection_column(TEST_METRIC)}: never select on test; `subnet export --best` chooses the same way)")
    p.add_argument("--report", nargs="+", default=[TEST_ACC_AT_BEST_VAL], metavar="COL", help="reported for the chosen trial, metrics also as cell_<metric>_mean, the mean over its cell's seeds (cell: every config axis but seed and searched ones; one value per seed, with a search that seed's sample of best validation; cell_seeds counts them) (default test_acc_at_best_val: test accuracy at the best-validation epoch)")
    p.add_argument("--where", metavar="EXPR", help="filter the trials first, e.g. \"width >= 1\"")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    add_results_option(p)
    p.set_defaults(func=cmd_best)

    p = actions.add_parser("compact", help="merge a sweep's part files into one (reads get faster)", description="Merge a sweep's part files into one file per table, dropping superseded rows.")
    p.add_argument("sweep", metavar="SWEEP", help="sweep name")
    add_results_option(p)
    p.set_defaults(func=cmd_compact)

    p = actions.add_parser("delete", help="delete a sweep with all its rows and files (asks first)", description=(
        "Delete SWEEP: its rows, subnet files, checkpoints, lease, Optuna studies and analysis outputs; other sweeps "
        "are untouched. Asks for the sweep name first (or --yes; without a terminal --yes is required). "
        "Refused while a live driver runs the sweep."))
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (see `hidden results list`)")
    p.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    add_results_option(p)
    p.set_defaults(func=cmd_delete)
