"""`hidden sweep run SPEC` and `hidden sweep status SPEC`.

    hidden sweep run sweeps/quickstart.yaml                  # embedded local Ray, ./results
    hidden sweep run quickstart --dry-run                    # what would run, per axis
    hidden sweep run X.yaml --address auto --results s3://bucket/results
    hidden sweep status quickstart                           # from the store alone
    hidden sweep status quickstart --watch                   # refreshed until every trial is final

SPEC is a file, or the name of one in the repository's sweeps/ folder.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hidden_core.errors import ConfigError
from hidden_core.records import COMPLETED, DIVERGED, FAILED, PRUNED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep spec on Ray, or show its status", description="Run a sweep spec (sweeps/*.yaml) on Ray Tune into the results store.")
    actions = p.add_subparsers(dest="sweep_command", required=True, metavar="ACTION")

    r = actions.add_parser("run", help="run every trial of SPEC the store does not hold yet", description=(
        "Expand SPEC into trials, skip those already final in the store (completed, pruned, diverged), and run the rest "
        "on Ray Tune. An interrupted run (killed driver) is resumed from its trials' last checkpoints by running the same command again. "
        "A second driver on the same sweep and store exits 2 naming the first."))
    r.add_argument("spec", metavar="SPEC", help="spec file, or a name in sweeps/ (e.g. quickstart)")
    r.add_argument("--address", help="Ray cluster to use ('auto', 'host:6379', 'ray://host:10001'); default: start a new embedded local Ray on 127.0.0.1 (RAY_ADDRESS and Ray's address file are ignored)")
    r.add_argument("--results", help="results store: a folder or an object-store URL (default $HIDDEN_RESULTS or ./results)")
    r.add_argument("--dry-run", action="store_true", help="print the trial count per axis, the largest trial's size and the trials that would run; start nothing")
    r.add_argument("--max-trials", type=int, metavar="N", help="refuse specs that plan more than N trials (overrides the spec's max_trials; default 10000)")
    r.add_argument("--study-storage", metavar="URL", help="Optuna storage URL for the per-cell studies (default: SQLite next to the store)")
    r.add_argument("--max-concurrent", type=int, metavar="N", help="at most N trials at once (overrides the spec)")
    r.add_argument("--num-cpus", type=int, metavar="N", help="embedded Ray only: use N CPUs (default: all)")
    r.add_argument("--skip-resource-check", action="store_true", help="start even if no node can hold one trial yet (autoscaling clusters)")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.add_argument("--json", action="store_true", help="print the run's report as one JSON object on the last line")
    r.set_defaults(func=run_sweep_cmd)

    s = actions.add_parser("status", help="trials of SPEC done, failed and missing, from the store alone", description=(
        "Read the store (no Ray): trials by status, what is still missing, and per method the best validation and test "
        "accuracy; per method and width, mean test accuracy at the best validation epoch."))
    s.add_argument("spec", metavar="SPEC", help="spec file, or a name in sweeps/")
    s.add_argument("--results", help="results store (default $HIDDEN_RESULTS or ./results)")
    s.add_argument("--max-trials", type=int, metavar="N", help="as for `sweep run`")
    s.add_argument("--watch", action="store_true", help="refresh every --interval seconds until every trial is final (Ctrl-C stops)")
    s.add_argument("--interval", type=float, default=5.0, metavar="S", help="seconds between refreshes with --watch (default 5)")
    s.set_defaults(func=status_cmd)


def _store(results: str | None) -> Any:
    from hidden_core.store import ResultStore, default_results_root

    return ResultStore(results or default_results_root())


def run_sweep_cmd(args: argparse.Namespace) -> int:
    from hidden_core.footprint import describe, plan_footprint
    from hidden_core.store import require_writable
    from hidden_core.tune.planning import describe_todo, plan_todo, require_spec
    from hidden_core.tune.runner import run_sweep

    spec = require_spec(args.spec, args.max_trials)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError([f"--max-concurrent: {args.max_concurrent} must be >= 1"])
    if args.num_cpus is not None and not 1 <= args.num_cpus <= 1024:
        raise ConfigError([f"--num-cpus: {args.num_cpus} is not in [1, 1024]"])
    store = _store(args.results)
    if args.dry_run:
        largest = plan_footprint(spec.plan())
        for line in describe_todo(spec, plan_todo(spec, store)):
            print(line)
        if largest is not None:
            print(f"  {describe(*largest)}")
        if spec.subnet_controls is not None:
            from hidden_core.tune.controls_pass import pending

            print(f"  subnet_controls: after the trials, {spec.subnet_controls.draws} draws of each control per final trial on device "
                  f"{spec.subnet_controls.device}; {len(pending(spec, store))} trials in the store lack some")
        _machine_checks(spec, args, largest)  # what the run would refuse, the dry run refuses too
        return 0
    if args.study_storage is not None:
        from hidden_core.spec import storage_url_problems

        if problems := storage_url_problems(args.study_storage, "--study-storage"):
            raise ConfigError(problems)
    require_writable(store)
    _machine_checks(spec, args, None)  # all but the largest trial's memory, before Ray starts
    from hidden_core.tune.report import SweepStopped
    from hidden_core.tune.runner import ray_started_early

    def memory_check() -> None:  # the largest trial's size imports torch: an embedded Ray starts meanwhile
        if args.address is None:  # a cluster's nodes are checked when the run joins it
            _require_memory(spec, plan_footprint(spec.plan()))

    try:
        with ray_started_early(spec, store, address=args.address, num_cpus=args.num_cpus, check=memory_check):
            report = run_sweep(
                spec,
                store.uri,
                address=args.address,
                study_storage=args.study_storage,
                progress=not args.quiet,
                skip_resource_check=args.skip_resource_check,
                max_concurrent=args.max_concurrent,
                num_cpus=args.num_cpus,
            )
    except SweepStopped as stop:  # SIGINT / SIGTERM / a full disk: one line, the run already cleaned up
        import shlex

        again = ["hidden", "sweep", "run", args.spec, "--results", store.uri] + (["--address", args.address] if args.address else [])
        try:
            final = len(store.final_trial_ids(spec.name) & set(spec.plan().by_id)) if not spec.search else None
        except Exception:  # the store may be what failed (a full disk): count from the report
            final = None
        print(f"error: {stop.line(shlex.join(again), final)}", file=sys.stderr, flush=True)
        return stop.exit_code
    counts = report.counts
    if report.to_run == 0:
        print(f"sweep {spec.name}: nothing to run ({report.skipped} of {report.planned} trials already in {store.uri})")
    else:
        print(
            f"sweep {spec.name}: ran {len(report.trials)} trials in {report.wall_seconds:.0f}s "
            f"(completed {counts[COMPLETED]}, pruned {counts[PRUNED]}, diverged {counts[DIVERGED]}, failed {counts[FAILED]}); "
            f"{report.skipped} were already done"
            + (f", {report.resumed} resumed from their checkpoints" if report.resumed else "")
            + f"; results in {store.uri}/{spec.name}"
        )
        if report.unfinished:
            print(f"{report.unfinished} trials did not finish; run the same command again to resume them")
        _print_tables(store, spec.name)
    if args.json:
        from hidden_core.strict_json import dumps

        print(dumps(report.to_dict()))
    return 1 if report.unfinished else 0


def _machine_checks(spec: Any, args: argparse.Namespace, largest: Any) -> None:
    """What this machine must have for the run, checked by the run and by --dry-run alike
    (ConfigError, exit 2): the controls pass's device (it runs in this process); without
    --address, memory for the largest trial (`largest`: None skips it; the run checks it
    apart, while Ray starts) and the CPUs/GPUs one trial asks for. With --address the
    cluster's nodes are checked when the run joins it."""
    from hidden_core.footprint import require_device
    if spec.subnet_controls is not None:
        try:
            require_device(spec.subnet_controls.device)
        except ConfigError as err:
            raise ConfigError([f"subnet_controls.{p}" for p in err.problems]) from None
    if args.address is not None:
        return
    _require_memory(spec, largest)
    if not args.skip_resource_check:
        from hidden_core.spec import check_resources
        from hidden_core.tune.ray_setup import local_nodes

        check_resources(spec, local_nodes(spec.resources.gpu > 0), where="this machine (a run without --address trains here)",
                        hint="run on a cluster that has them with --address")


def _require_memory(spec: Any, largest: Any) -> None:
    """Memory on this machine for `largest` (footprint.plan_footprint's answer; None: nothing to check)."""
    from hidden_core.footprint import require_fit

    if largest is not None:
        require_fit(largest[0], spec.resources.device, largest[1])


def status_cmd(args: argparse.Namespace) -> int:
    spec = _status_spec(args)
    from hidden_core.tune.planning import plan_todo

    store = _store(args.results)
    if getattr(args, "watch", False):
        return _watch(spec, store, args.interval)
    todo = plan_todo(spec, store)
    plan = spec.plan()
    if spec.name not in store.sweeps():
        print(f"sweep {spec.name}: no results in {store.uri} yet; {plan.total} trials planned")
        return 0
    frame = store.load_trials(spec.name)
    counts, outside = planned_counts(plan, frame)
    print(
        f"sweep {spec.name}: {plan.total} trials planned = {todo.skipped} final "
        f"(completed {counts.get(COMPLETED, 0)}, pruned {counts.get(PRUNED, 0)}, diverged {counts.get(DIVERGED, 0)}) "
        f"+ {todo.count} still to run" + (f" ({counts[FAILED]} of them failed before)" if counts.get(FAILED) else "")
    )
    if outside:
        print(f"  ({outside} more trials in the store are not in the spec: another version of it, or extra samples; the tables below include them)")
    if spec.subnet_controls is not None:
        from hidden_core.tune.controls_pass import pending

        done, missing = int(frame["control_found_test_acc"].notna().sum()), len(pending(spec, store))
        print(f"  subnet_controls: {done} trials have controls, {missing} lack some (the next `hidden sweep run` computes them)")
    _print_tables(store, spec.name, frame)
    return 0


def _status_spec(args: argparse.Namespace) -> Any:
    """The spec and its plan, with Python's cyclic garbage collector paused while they and
    the command's modules (pandas, pyarrow, pydantic) load, and what they made frozen
    after (gc.freeze: never scanned again). Everything made here lives until the command
    ends, and a full collection walks every object alive: on a 5,000-trial sweep the
    collector took 120-170 ms of a status's ~1 s of CPU, two full collections 70-90 ms of
    it. Resumed whatever happens, so --watch collects as usual."""
    import gc

    gc.disable()
    try:
        from hidden_core.tune.planning import require_spec

        return require_spec(args.spec, args.max_trials)
    finally:
        gc.freeze()
        gc.enable()


def planned_counts(plan: Any, frame: Any) -> tuple[dict[str, int], int]:
    """Status counts of the store's rows that `plan` asks for, so that final + still to run
    adds up to the plan (failed rows are among those still to run), and how many rows it
    holds besides (trials of an earlier version of the spec, samples past samples_per_cell).
    A grid trial is its trial_id; a search point's samples are rows of its (cell_id, seed),
    the first `samples` final ones counted."""
    import numpy as np

    from hidden_core.records import FAILED, FINAL_STATUSES

    counts: dict[str, int] = {}
    # a Python set lookup per row, not Series.isin: pandas' isin on a text column makes an
    # Arrow scalar of each of the plan's ids (40 ms for 10,000, 1 ms this way)
    planned = np.fromiter((trial_id in plan.by_id for trial_id in frame["trial_id"].tolist()), dtype=bool, count=len(frame))
    in_grid = frame[planned]
    for status, n in in_grid["status"].value_counts().items():
        counts[str(status)] = int(n)
    used = len(in_grid)
    if plan.points:
        need = {p.key: p.samples for p in plan.points}
        rest = frame[~planned]
        order = "finished_at" if "finished_at" in rest.columns else "trial_id"
        for (cell, seed), group in rest.groupby(["cell_id", "seed"]):
            samples = need.get((cell, int(seed)))
            if samples is None:
                continue
            final = group[group["status"].isin(FINAL_STATUSES)].sort_values(order).head(samples)
            for status, n in final["status"].value_counts().items():
                counts[str(status)] = counts.get(str(status), 0) + int(n)
            failed = min(int((group["status"] == FAILED).sum()), samples - len(final))
            counts[FAILED] = counts.get(FAILED, 0) + failed
            used += len(final) + failed
    return counts, len(frame) - used


def _watch(spec: Any, store: Any, interval: float) -> int:
    """The status, refreshed from the store: on a terminal the screen is redrawn (progress
    line, then the tables); in a log only a changed progress line is printed, the tables once
    at the end. Ends when no trial is left to run."""
    import sys
    import time

    import pandas as pd

    # planning's plan_todo, not runner's: runner imports the run's modules (lease, controls pass, Ray setup)
    from hidden_core.tune.planning import plan_todo
    from hidden_core.tune.progress import store_line

    if not interval > 0:
        raise ConfigError([f"--interval: {interval} must be > 0 seconds"])
    tty = sys.stdout.isatty()
    plan = spec.plan()
    last = ""
    try:
        while True:
            todo = plan_todo(spec, store)
            frame = store.load_trials(spec.name) if spec.name in store.sweeps() else None
            line = store_line(spec.name, frame if frame is not None else pd.DataFrame(), plan.total, todo.skipped, todo.count)
            if tty:
                print("\x1b[H\x1b[2J" + line, flush=True)  # home + clear screen
                _print_tables(store, spec.name)
            elif line != last:
                print(line, flush=True)
            last = line
            if todo.count == 0:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    if not tty:
        _print_tables(store, spec.name)
    print(f"sweep {spec.name}: every trial is final ({todo.skipped} of {plan.total})")
    return 0


def _print_tables(store: Any, sweep: str, frame: Any = None) -> None:
    """The tables of `hidden sweep status` from `frame` (the sweep's trials), read from the
    store when not given."""
    from hidden_core.tune.progress import (
        format_frame,
        health_lines,
        method_summary,
        summary_title,
        width_table,
        width_title,
    )

    if frame is None:
        if sweep not in store.sweeps():
            return
        frame = store.load_trials(sweep)
    print("\n" + summary_title(frame))
    print(format_frame(method_summary(frame)))
    table = width_table(frame)
    if not table.empty:
        print("\n" + width_title(frame))
        print(table.to_string())
    health = health_lines(frame)
    if health:
        print("\n" + "\n".join(health))
    failed = frame[frame["status"] == FAILED]
    for _, row in failed.head(5).iterrows():
        first = str(row["error"] or "").strip().splitlines()[:1]
        print(f"failed {row['trial_id']} ({row['method']}, width {row['width']:g}): {first[0] if first else '(no error text)'}")
