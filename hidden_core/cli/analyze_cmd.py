"""`hidden analyze scaling | curves | lottery | controls`: fit scaling laws of a sweep against any numeric
axis, draw them, write a report; draw learning curves from the epochs table; draw the lottery
curve (accuracy vs density per branch) beside edge_popup and dense; compare found subnetworks
with their controls."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from hidden_core.analysis.metrics import FINAL_TEST_METRIC, TEST_METRIC, metric_label
from hidden_core.cli.results_cmd import (
    add_results_option,
    check_columns,
    load_selection,
    open_store,
    split_names,
)
from hidden_core.errors import ConfigError
from hidden_core.paths import ANALYSIS_DIR
from hidden_core.records import DENSITY, TEST_ACC
from hidden_core.store import TRIAL_READ_SCHEMA, ResultStore


def default_out_dir(store_root: str, local: bool, sweep: str, x: str) -> Path:
    # next to the sweep's tables when the store is a folder; a URL store stays read-only
    return Path(store_root) / sweep / ANALYSIS_DIR / x if local else Path(ANALYSIS_DIR) / sweep / x


def cmd_scaling(args: argparse.Namespace) -> int:
    from hidden_core.analysis import analyze_scaling, format_table, write_scaling_report
    from hidden_core.analysis.report import headline_table, health_summary

    by = split_names(args.by) or ["method"]
    check_columns("by", [*by, args.metric])
    check_numeric("x", args.x)
    check_numeric("metric", args.metric)
    if not 0 < args.ci < 1:
        raise ConfigError([f"ci: {args.ci} is not in (0, 1)"])
    store = open_store(args)
    trials, _ = load_selection(store, args.sweep, args.where, completed_only=False)
    analysis = analyze_scaling(trials, x=args.x, by=by, metric=args.metric, reference_x=args.reference, ci=args.ci)
    out = Path(args.out) if args.out else default_out_dir(store.root, _is_local(store), args.sweep, args.x)
    written = write_scaling_report(analysis, out, sweep=args.sweep, trials=trials, selection=args.where, store=store.uri)
    headline = headline_table(analysis)
    if not headline.empty:
        print(format_table(headline))
        print()
    print(f"metric: {metric_label(analysis.metric)} ({analysis.metric})")
    if analysis.excluded:
        print("left out: " + ", ".join(f"{n} {reason}" for reason, n in analysis.excluded.items()))
    for note in analysis.notes:
        print(f"note: {note}")
    refused = analysis.fits[analysis.fits["fit"] == "refused"]
    if analysis.law_fitted:
        for _, row in refused.iterrows():
            print(f"not fitted: {row['label']}: {row['reason']}")
    for _, row in analysis.fits[analysis.fits["flags"] != ""].iterrows():
        print(f"flagged: {row['label']}: {row['flags']}")
    for line in health_summary(analysis):
        print(line if "health" in line.split(":")[0] else f"health: {line}")
    if analysis.without_flagged is not None:
        healthy = headline_table(analysis.without_flagged)
        if not healthy.empty:
            print("\nwithout the flagged cells:")
            print(format_table(healthy))
            print()
    print(f"wrote {', '.join(sorted(written))} to {out}")
    print(f"report: {written['report.md']}")
    return 0


def health_lines(cells: pd.DataFrame, cell_columns: list[str], limit: int = 12) -> list[str]:
    """'health: <cell>: <reasons>' per unhealthy cell (health.unhealthy_cells), or one line
    saying every cell is healthy."""
    from hidden_core.analysis.health import describe_cells

    if cells.empty:
        return ["health: every cell healthy (no trial carries a health flag)"]
    return [f"health: {line}" for line in describe_cells(cells, cell_columns, limit)]


def health_markdown(lines: list[str]) -> str:
    """The health lines as a report section (docs/methods.md, Training health)."""
    items = "\n".join(f"- {line.removeprefix('health: ')}" for line in lines)
    return ("## Training health\n\nA cell is flagged when at least one of its trials carries a health flag or diverged; "
            f"a cell whose trials have no health record is 'health unknown', not healthy (docs/methods.md, Training health).\n\n{items}\n")


def check_numeric(kind: str, name: str) -> None:
    """A plot/fit axis must be a numeric trial column (config field or statistic)."""
    check_columns(kind, [name])
    kind_of = TRIAL_READ_SCHEMA.field(name).type
    if not (pa.types.is_integer(kind_of) or pa.types.is_floating(kind_of)):
        numeric = [f.name for f in TRIAL_READ_SCHEMA if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
        raise ConfigError([f"{kind}: {name!r} is not numeric; numeric columns: {', '.join(numeric)}"])


def cmd_curves(args: argparse.Namespace) -> int:
    from hidden_core.analysis.curves import EPOCH_METRICS, learning_curves, plot_learning_curves
    from hidden_core.analysis.plots import save_figure

    by = split_names(args.by) or ["method"]
    check_columns("by", by)
    if args.metric not in EPOCH_METRICS:
        raise ConfigError([f"metric: {args.metric!r} is not an epoch metric; allowed: {', '.join(EPOCH_METRICS)}"])
    store = open_store(args)
    trials, note = load_selection(store, args.sweep, args.where, completed_only=True)
    epochs = store.load_epochs(args.sweep, trial_ids=trials["trial_id"])
    curves = learning_curves(trials, epochs, by, args.metric)
    out = Path(args.out) if args.out else default_out_dir(store.root, _is_local(store), args.sweep, "curves")
    out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(out / f"curves_{args.metric}.csv", index=False)
    paths = save_figure(plot_learning_curves(curves, args.metric), out, f"curves_{args.metric}")
    print(f"{curves['label'].nunique()} groups, {len(trials)} trials ({note or 'as selected'})")
    print(f"wrote curves_{args.metric}.csv, {', '.join(p.name for p in paths)} to {out}")
    return 0


def cmd_lottery(args: argparse.Namespace) -> int:
    from hidden_core.analysis.lottery import (
        LOTTERY,
        caption,
        lottery_health,
        lottery_points,
        plot_lottery,
        require_lottery,
    )
    from hidden_core.analysis.plots import save_figure

    if not 0 < args.ci < 1:
        raise ConfigError([f"ci: {args.ci} is not in (0, 1)"])
    store = open_store(args)
    trials, note = load_selection(store, args.sweep, args.where, completed_only=True)
    require_lottery(trials, args.sweep)
    others = trials
    if args.with_sweep:
        others, _ = load_selection(store, args.with_sweep, args.where, completed_only=True)
        others = pd.concat([trials, others], ignore_index=True).drop_duplicates("trial_id", keep="last")
    epochs = store.load_epochs(args.sweep, trial_ids=trials.loc[trials["method"] == LOTTERY, "trial_id"])
    points = lottery_points(trials, epochs, others, ci=args.ci)
    if not (points["source"] == LOTTERY).any():
        raise ConfigError([f"sweep: the {LOTTERY} trials of {args.sweep!r} have no per-level epoch rows with a validation accuracy (level, branch, val_acc); the curve needs them"])
    out = Path(args.out) if args.out else default_out_dir(store.root, _is_local(store), args.sweep, "lottery")
    out.mkdir(parents=True, exist_ok=True)
    points.to_csv(out / "lottery_points.csv", index=False)
    paths = save_figure(plot_lottery(points, args.ci), out, "lottery")
    text = caption(points, args.sweep, args.with_sweep, args.ci)
    health = health_lines(lottery_health(trials, others), ["cell"])
    (out / "lottery.md").write_text(f"# Lottery curve: {args.sweep}\n\n![lottery curve](lottery.png)\n\n{text}\n\nPoints: `lottery_points.csv`.\n\n{health_markdown(health)}")
    for line, group in points.groupby("line", sort=False):
        print(f"{line}: " + ", ".join(f"{d:.4g}: {100 * m:.1f}% (n={n})" for d, m, n in zip(group[DENSITY], group["mean"], group["n"], strict=True)))
    print("\n".join(health))
    print(f"{note or 'as selected'}")
    print(f"wrote lottery_points.csv, lottery.md, {', '.join(p.name for p in paths)} to {out}")
    return 0


def cmd_controls(args: argparse.Namespace) -> int:
    from hidden_core.analysis.controls import (
        caption,
        chance_of,
        control_health,
        control_points,
        plot_controls,
        require_controls,
        summary_table,
    )
    from hidden_core.analysis.plots import save_figure
    from hidden_core.analysis.tables import format_table

    by = split_names(args.by) or ["method"]
    check_columns("by", by)
    check_numeric("x", args.x)
    if not 0 < args.ci < 1:
        raise ConfigError([f"ci: {args.ci} is not in (0, 1)"])
    store = open_store(args)
    trials, note = load_selection(store, args.sweep, args.where, completed_only=True)
    rows = require_controls(trials, args.sweep)
    points = control_points(rows, x=args.x, by=by, ci=args.ci)
    table = summary_table(points, args.x)
    out = Path(args.out) if args.out else default_out_dir(store.root, _is_local(store), args.sweep, "controls")
    out.mkdir(parents=True, exist_ok=True)
    points.to_csv(out / "controls_points.csv", index=False)
    table.to_csv(out / "controls.csv", index=False)
    paths = save_figure(plot_controls(points, args.x, args.ci, chance_of(rows)), out, "controls")
    text = caption(points, args.sweep, args.x, args.ci)
    health = health_lines(control_health(rows, args.x, by), ["group", args.x])
    (out / "controls.md").write_text(f"# Found vs controls: {args.sweep}\n\n![found vs controls](controls.png)\n\n{text}\n\n"
                                     f"Test accuracy (%), mean [{args.ci:.0%} interval]; gaps in percentage points.\n\n"
                                     f"{format_table(table, markdown=True)}\n\nPer point: `controls_points.csv`.\n\n{health_markdown(health)}")
    print(format_table(table))
    print("\n".join(health))
    print(f"{len(rows)} trials with controls ({note or 'as selected'}); test accuracy (%), mean [{args.ci:.0%} Student-t interval over seeds]; "
          f"found - control: paired per trial, in points")
    print(f"wrote controls.csv, controls_points.csv, controls.md, {', '.join(p.name for p in paths)} to {out}")
    return 0


def _is_local(store: ResultStore) -> bool:
    return isinstance(store.fs, pafs.LocalFileSystem) and os.path.isabs(store.root)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="scaling-law fits, plots and a report", description="Analyze a sweep's results.")
    actions = parser.add_subparsers(dest="analyze_action", required=True, metavar="ANALYSIS")
    p = actions.add_parser(
        "scaling",
        help="accuracy against any numeric axis per group; power-law fits on size axes; plots, fits.csv, report.md",
        description="Per group: accuracy against X (any numeric config field or statistic); on a size axis (width, depth, "
        "params_active, ...) fit test error = e_inf + a * x^-b with Student-t intervals, compare every untrained method "
        "with dense (unpaired and paired over seeds), and write plots, fits.csv, gaps.csv and report.md.",
    )
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (see `hidden results list`)")
    p.add_argument("--x", default="width", metavar="COLUMN", help="the x axis: any numeric column, e.g. width, depth, keep_fraction, params_active, params_learned, changed_fraction, disabled_features (default width)")
    p.add_argument("--by", nargs="+", metavar="COL", help="group columns (default method); other grid axes that vary are split automatically")
    p.add_argument("--where", metavar="EXPR", help="filter trials first, e.g. \"dataset == 'mnist1d'\"")
    p.add_argument("--metric", default=TEST_METRIC, help=f"accuracy column (default {TEST_METRIC}: test accuracy at the best-validation epoch; {FINAL_TEST_METRIC} = the final epoch's)")
    p.add_argument("--reference", type=float, metavar="X", help="dense reference size (default: width 1 if measured, else the largest)")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <results>/<sweep>/analysis/<x>)")
    add_results_option(p)
    p.set_defaults(func=cmd_scaling)

    p = actions.add_parser("curves", help="learning curves from the epochs table: mean +- std over seeds per group", description="Draw a metric against epoch, one line per group (mean over seeds, band +-1 std), from the epochs table.")
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (see `hidden results list`)")
    p.add_argument("--metric", default=TEST_ACC, help="epoch column: test_acc, val_acc, train_acc, train_loss, lr (default test_acc)")
    p.add_argument("--by", nargs="+", metavar="COL", help="group columns (default method); other config fields that vary are split automatically")
    p.add_argument("--where", metavar="EXPR", help="filter trials first")
    p.add_argument("--out", metavar="DIR", help="output folder (default <results>/<sweep>/analysis/curves)")
    add_results_option(p)
    p.set_defaults(func=cmd_curves)

    p = actions.add_parser("lottery", help="lottery curve: test accuracy vs density per branch, beside edge_popup and dense", description="From the epochs table of a sweep's lottery_ticket trials: per level and branch (ticket, reinit, random_prune, supermask) the test accuracy at that level's best-validation epoch, against density (log x), mean over seeds with a Student-t interval; edge_popup trials at density = keep_fraction and dense as a horizontal line, from the same sweep or --with SWEEP2. Writes lottery_points.csv, lottery.png/.svg and lottery.md.")
    p.add_argument("sweep", metavar="SWEEP", help="sweep with lottery_ticket trials (see `hidden results list`)")
    p.add_argument("--with", dest="with_sweep", metavar="SWEEP2", help="also read edge_popup and dense trials from this sweep of the same store")
    p.add_argument("--where", metavar="EXPR", help="filter the trials of every sweep read first, e.g. \"width == 1\"")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <results>/<sweep>/analysis/lottery)")
    add_results_option(p)
    p.set_defaults(func=cmd_lottery)

    p = actions.add_parser("controls", help="found subnetworks vs their controls (random, shuffled, fresh, initial) per cell, with intervals", description="From the control columns a sweep with `subnet_controls` stores (see `hidden results show`): per group (method and the config fields that vary) and --x value, the test accuracy of the found subnetwork and of each control, mean over seeds with a Student-t interval, and the paired gap found - control. Writes controls.csv, controls_points.csv, controls.png/.svg and controls.md.")
    p.add_argument("sweep", metavar="SWEEP", help="a sweep run with subnet_controls (see `hidden results list`)")
    p.add_argument("--x", default="width", metavar="COLUMN", help="the x axis: a numeric column, e.g. width, keep_fraction, depth (default width)")
    p.add_argument("--by", nargs="+", metavar="COL", help="group columns (default method); other config fields that vary are split automatically")
    p.add_argument("--where", metavar="EXPR", help="filter the trials first, e.g. \"method == 'edge_popup'\"")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <results>/<sweep>/analysis/controls)")
    add_results_option(p)
    p.set_defaults(func=cmd_controls)
