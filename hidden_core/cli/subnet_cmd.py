"""`hidden subnet export | eval | controls | masks`: found subnetworks as results.

export copies a trial's stored file out of a sweep (with the sweep's row in its header);
eval rebuilds the network from config + seed + file and scores it on val and test; controls
compares it with random, shuffled and fresh-weight controls; masks compares the masks that
a sweep's seeds found. The file format is in hidden_core/subnet/fileformat.py."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

from hidden_core.analysis.metrics import selection_column
from hidden_core.cli.results_cmd import add_results_option, emit, load_selection, open_store
from hidden_core.errors import ConfigError
from hidden_core.paths import SUBNET_SUFFIX
from hidden_core.records import (
    BEST_EPOCH,
    BEST_VAL_ACC,
    CHANGED_FRACTION,
    DENSITY,
    EPOCHS_RUN,
    TEST_ACC,
    TEST_ACC_AT_BEST_VAL,
    TEST_METRIC,
    VAL_ACC,
)

ROW_METRICS = (VAL_ACC, TEST_ACC, BEST_VAL_ACC, BEST_EPOCH, TEST_ACC_AT_BEST_VAL, EPOCHS_RUN, DENSITY, CHANGED_FRACTION)


def _trial_row(store, sweep: str, trial_id: str | None, best: bool, where: str | None, metric: str):
    if best:
        # `results best`'s rule, through the same function (tables.best_per_group ->
        # metrics.best_by_validation): the completed trial of highest best_val_acc by default
        from hidden_core.analysis.tables import best_per_group

        trials, _ = load_selection(store, sweep, where, completed_only=True)
        if metric not in trials.columns:
            raise ConfigError([f"metric: {metric!r} is not a trials column"])
        chosen = best_per_group(trials.assign(_all=0), ["_all"], metric, [TEST_METRIC])
        trial_id = str(chosen["trial_id"].iloc[0])
    trials = store.load_trials(sweep, where=f"trial_id == {trial_id!r}")
    if trials.empty:
        raise ConfigError([f"trial_id: no trial {trial_id!r} in sweep {sweep!r}"])
    return trials.iloc[0]


def cmd_export(args: argparse.Namespace) -> int:
    from hidden_core.paths import trial_subnet_path
    from hidden_core.subnet.fileformat import update_metadata

    if bool(args.trial_id) == bool(args.best):
        raise ConfigError(["trial_id: give one TRIAL_ID or --best, not both and not neither"])
    store = open_store(args)
    row = _trial_row(store, args.sweep, args.trial_id, args.best, args.where, args.metric)
    source = store.subnet_path(args.sweep, row["trial_id"])  # a path of store.fs: local folder or bucket alike
    if store.fs.get_file_info(source).type.name != "File":
        shown = trial_subnet_path(store.uri, args.sweep, row["trial_id"]) if not _local(store) else source
        raise ConfigError([f"trial_id: trial {row['trial_id']} (status {row['status']}) of sweep {args.sweep!r} has no subnetwork file "
                           f"({shown}); files are written for trials that end with a final status by a sweep that saves them"])
    metrics = {k: _plain(row[k]) for k in ROW_METRICS if k in row.index}
    # safetensors reads local files: an object-store file is copied down first (and removed after)
    with store.local_copy(source, suffix=SUBNET_SUFFIX) as local:
        target = update_metadata(local, args.output, sweep=args.sweep, status=str(row["status"]), metrics=metrics,
                                 cell_id=_plain(row.get("cell_id")))
    print(f"exported trial {row['trial_id']} of {args.sweep} (status {row['status']}, val {metrics.get(VAL_ACC)}, test {metrics.get(TEST_ACC)}) to {target}")
    return 0


def _local(store) -> bool:
    import pyarrow.fs as pafs

    return isinstance(store.fs, pafs.LocalFileSystem)


def _plain(value):
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@contextlib.contextmanager
def _local_file(file: str):
    """FILE as a local path: itself, or for an object-store URL (s3://, gs://) a temporary
    copy, removed afterwards (safetensors reads local files)."""
    from hidden_core import paths

    if not paths.is_url(file):
        yield file
        return
    from hidden_core.store import ResultStore

    folder, _, name = file.rstrip("/").rpartition("/")
    store = ResultStore(folder)
    source = f"{store.root}/{name}"
    if store.fs.get_file_info(source).type.name != "File":
        raise ConfigError([f"file: no such file {file}"])
    with store.local_copy(source, suffix=SUBNET_SUFFIX) as local:
        yield local


def cmd_eval(args: argparse.Namespace) -> int:
    from hidden_core.subnet.evaluate import Evaluator
    from hidden_core.subnet.fileformat import read_subnet_file
    from hidden_core.subnet.state import materialize

    with _local_file(args.file) as local:
        f = read_subnet_file(local)
    evaluator = Evaluator(f, device=args.device, data_root=args.data_root)
    accuracy = evaluator.accuracy(materialize(f, evaluator.device))
    stored = f.metrics
    same = all(stored.get(k) == accuracy[k] for k in (VAL_ACC, TEST_ACC)) if stored else None
    report = {"file": args.file, "trial_id": f.config.trial_id, "method": f.config.method, "device": str(evaluator.device),
              "stored_device": f.run.get("device"), **accuracy, "stored_val_acc": stored.get(VAL_ACC),
              "stored_test_acc": stored.get(TEST_ACC), "matches_stored": same}
    if args.json:
        from hidden_core.strict_json import dumps

        print(dumps(report))
        return 0
    print(f"{f.config.method} trial {f.config.trial_id} on {evaluator.device}: val {accuracy[VAL_ACC]:.4f}  test {accuracy[TEST_ACC]:.4f}")
    if stored:
        verdict = "reproduced exactly" if same else "DIFFERENT"
        print(f"stored (on {f.run.get('device')}): val {stored.get(VAL_ACC)}  test {stored.get(TEST_ACC)}: {verdict}")
    return 0


def cmd_controls(args: argparse.Namespace) -> int:
    from hidden_core.subnet.controls import controlled_kind, controls_path, run_controls
    from hidden_core.subnet.evaluate import Evaluator
    from hidden_core.subnet.fileformat import read_subnet_file

    if args.draws < 2:
        raise ConfigError([f"draws: {args.draws} must be >= 2 (an interval needs two draws)"])
    with _local_file(args.file) as local:
        f = read_subnet_file(local)
    controlled_kind(f)  # refuse methods without a mask or signs before loading data
    table = run_controls(f, Evaluator(f, device=args.device, data_root=args.data_root), draws=args.draws)
    from hidden_core import paths

    # next to the file; a file in an object store: its name in the current folder
    target = args.output or controls_path(args.file if not paths.is_url(args.file) else os.path.basename(args.file))
    table.to_csv(target, index=False)
    emit(table, "json" if args.json else "table", None)
    print(f"(stored in {target}; mean and 95% t-interval of test_acc over {args.draws} draws per control)", file=sys.stderr)
    return 0


def cmd_masks(args: argparse.Namespace) -> int:
    from hidden_core.subnet.masks import SELECTING_METHODS, analyze_files, plot

    if bool(args.sweep) == bool(args.files):
        raise ConfigError(["sweep: give a SWEEP or --files FILE..., not both and not neither"])
    if args.sweep:
        store = open_store(args)
        if args.sweep not in store.sweeps():
            raise ConfigError([f"sweep: no sweep named {args.sweep!r} in {store.uri}; available sweeps: {', '.join(store.sweeps()) or '(none)'}"])
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(store.subnets_folder(args.sweep), allow_not_found=True)
        stored = sorted(i.path for i in store.fs.get_file_info(selector) if i.type == pafs.FileType.File and i.base_name.endswith(SUBNET_SUFFIX))
        with contextlib.ExitStack() as copies:  # an object store's files are copied down one by one (removed after)
            paths = [copies.enter_context(store.local_copy(p, suffix=SUBNET_SUFFIX)) for p in stored]
            _, table = analyze_files(paths)
    else:
        _, table = analyze_files(args.files)
    if table.empty:
        where = f"sweep {args.sweep!r}" if args.sweep else "the files given"
        raise ConfigError([f"sweep: {where} has no subnetwork files of a method that selects weights ({', '.join(SELECTING_METHODS)})"])
    table = table.drop(columns=["layer_index"])
    if args.output:
        table.to_csv(args.output, index=False)  # with `cell`, the cell's whole config as JSON
    shown = table.drop(columns=["cell"])  # cell_id and the varying config columns tell cells apart
    emit(shown, args.format, None)
    figure = plot(table, args.plot or f"{args.sweep or 'subnet'}-masks.png")
    print(f"(plot: {figure}; jaccard is the mean over seed pairs of a cell, jaccard_chance that of independent masks of the same sizes)", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subnet", help="export, re-evaluate, control and compare found subnetworks",
                                   description="Found subnetworks: one safetensors file per trial (docs/subnetworks.md).")
    actions = parser.add_subparsers(dest="subnet_action", required=True, metavar="ACTION")

    p = actions.add_parser("export", help="copy a trial's subnetwork file out of a sweep")
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (see `hidden results list`)")
    p.add_argument("trial_id", metavar="TRIAL_ID", nargs="?", help="the trial to export (see `hidden results show SWEEP`); omit with --best")
    p.add_argument("--best", action="store_true", help="the completed trial with the highest --metric (the rule of `results best`)")
    p.add_argument("--metric", default=selection_column(TEST_METRIC), help=f"--best chooses by this, as `results best` does (default {selection_column(TEST_METRIC)}: never select on test)")
    p.add_argument("--where", metavar="EXPR", help="--best among these trials only")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the .safetensors file")
    add_results_option(p)
    p.set_defaults(func=cmd_export)

    p = actions.add_parser("eval", help="rebuild a subnetwork from its file and score it on val and test")
    p.add_argument("file", metavar="FILE", help="a subnetwork file (.safetensors) written by a sweep or `hidden subnet export`")
    p.add_argument("--data-root", metavar="DIR", help="folder of torchvision data sets")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (the stored accuracies reproduce exactly on the device that trained it)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_eval)

    p = actions.add_parser("controls", help="the found subnetwork against random, shuffled and fresh-weight controls")
    p.add_argument("file", metavar="FILE", help="a subnetwork file (.safetensors) written by a sweep or `hidden subnet export`")
    p.add_argument("--draws", type=int, default=5, help="draws per control (default 5)")
    p.add_argument("--data-root", metavar="DIR", help="folder of torchvision data sets")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--output", metavar="CSV", help="table file (default: FILE's name with .controls.csv, next to it)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_controls)

    p = actions.add_parser("masks", help="per-layer density, seed overlap vs chance and |w| bias of a sweep's found masks")
    p.add_argument("sweep", metavar="SWEEP", nargs="?", help="sweep name; its subnets/ folder is read (or give --files)")
    p.add_argument("--files", nargs="+", metavar="FILE", help="analyze these files instead of a sweep's")
    p.add_argument("--plot", metavar="PNG", help="figure file (default SWEEP-masks.png)")
    p.add_argument("--output", metavar="CSV", help="also write the table here")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)")
    add_results_option(p)
    p.set_defaults(func=cmd_masks)


__all__ = ["register"]
