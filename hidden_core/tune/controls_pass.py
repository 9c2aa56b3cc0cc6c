"""The controls pass of a sweep (the spec's `subnet_controls`): every final trial whose method
learns a mask or signs is evaluated against its controls (hidden_core/subnet/controls.py), and
the rows go to the store's controls table, which `hidden results` shows as trial columns.

Runs after the trials (run_sweep, under the sweep's lease). Where the sweep's Ray is up, each
trial is one Ray task on the sweep's resources (hidden_core/tune/controls_tasks.py), several
at once; without Ray (nothing left to train) in this process, one trial at a time. Either way
the driver is the only writer and the store is the only state: a trial's rows (every control
and draw it lacks) are written in one part file once they are all computed, so a killed pass
loses at most the trials in flight, and the next run computes only the (trial, control,
draw) rows the store lacks. Draws are seeded by trial and draw number, so those rows are the
ones an uninterrupted pass would have written, and both ways write the same rows.

This module is the Ray-free part (what is pending, scoring one trial, recording its rows);
it imports no Ray, and torch only when there is something to evaluate.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hidden_core import paths
from hidden_core.catalog import CATALOG, controls_of
from hidden_core.errors import ConfigError
from hidden_core.records import CONTROLLED_METHODS, FINAL_STATUSES
from hidden_core.spec import SweepSpec
from hidden_core.store import ResultStore
from hidden_core.subnet.controls import method_draws

log = logging.getLogger(__name__)


@dataclass
class ControlsWork:
    """One trial's missing control rows."""

    trial_id: str
    trial_write_id: str
    method: str
    missing: list[tuple[str, int]]


@dataclass
class ControlsPassReport:
    trials: int = 0  # trials evaluated by this pass
    rows: int = 0  # control rows written
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # trial_ids whose file could not be used (logged)
    at_once: int = 1  # trials evaluated at the same time: 1 in this process, the Ray tasks in flight otherwise


@dataclass
class TrialOutcome:
    """One trial's evaluation: its rows (control, draw, val_acc, test_acc) and the device
    they were computed on, or the problem that stopped it (the trial is retried next run)."""

    trial_id: str
    rows: list[dict] = field(default_factory=list)
    device: str = ""
    problem: str | None = None


def pending(spec: SweepSpec, store: ResultStore) -> list[ControlsWork]:
    """The final trials of the sweep with a controlled method, a subnet file, and control
    rows missing. Empty when the spec asks for no controls or the sweep has no trials yet."""
    options = spec.subnet_controls
    if options is None or spec.name not in store.sweeps():
        return []
    methods = sorted(CONTROLLED_METHODS)
    # the options that can turn a method's controls off (trains_weights_when); null in rows written before them
    switches = sorted({CATALOG[m].trains_weights_when for m in methods} - {None})
    trials = store.load_trials(spec.name, where=f"status in {sorted(FINAL_STATUSES)} and method in {methods}", columns=["trial_id", "method", "write_id", *switches])
    if trials.empty:
        return []
    controlled = [controls_of(m, {k: v for k, v in row.items() if k in switches and v is not None and v == v})
                  for m, row in zip(trials["method"], trials[switches].to_dict("records") if switches else [{}] * len(trials), strict=True)]
    trials = trials[[c is not None for c in controlled]]
    have = store.load_controls(spec.name, trials["write_id"])
    stored = set(zip(have["trial_id"], have["control"], have["draw"], strict=True))
    work = []
    for trial_id, method, write_id in zip(trials["trial_id"], trials["method"], trials["write_id"], strict=True):
        missing = [(c, d) for c, d in method_draws(method, options.draws) if (trial_id, c, d) not in stored]
        if missing and _exists(store, store.subnet_path(spec.name, trial_id)):
            work.append(ControlsWork(trial_id, write_id, method, missing))
    return work


def run(spec: SweepSpec, store: ResultStore, out: Any = None,
        evaluate: Callable[[SweepSpec, ResultStore, list[ControlsWork]], Iterable[TrialOutcome]] | None = None,
        how: str = "in this process") -> ControlsPassReport:
    """Compute and store every missing control row of the sweep (see `pending`).

    `evaluate(spec, store, work)` yields each trial's TrialOutcome as it is ready, in any
    order (default: `in_process`, one trial at a time; controls_tasks: Ray tasks); `how`
    says which in the first line printed. Each trial's rows are written as it arrives."""
    report = ControlsPassReport()
    work = pending(spec, store)
    if not work:
        return report
    started = time.perf_counter()
    out = out if out is not None else sys.stdout
    options = spec.subnet_controls
    print(f"controls: evaluating {len(work)} trials against their controls ({options.draws} draws, device {options.device}, {how})",
          file=out, flush=True)
    items = {item.trial_id: item for item in work}
    for outcome in (evaluate or in_process)(spec, store, work):
        record(spec, store, items[outcome.trial_id], outcome, report, out)
    store.compact_controls(spec.name)
    report.seconds = time.perf_counter() - started
    print(f"controls: {report.trials} trials, {report.rows} rows in {report.seconds:.1f}s (`hidden results show {spec.name}` shows them)", file=out, flush=True)
    return report


def record(spec: SweepSpec, store: ResultStore, item: ControlsWork, outcome: TrialOutcome, report: ControlsPassReport, out: Any) -> None:
    """Write one trial's rows in one part file (the driver is the store's only writer), or
    report why it has none: a damaged file, missing data, no memory are reported, never lost
    (the next run retries the trial)."""
    if outcome.problem is not None:
        log.warning("controls of trial %s skipped: %s", item.trial_id, outcome.problem)
        print(f"controls: trial {item.trial_id} skipped ({outcome.problem}); the next run of the sweep tries it again", file=out, flush=True)
        report.skipped.append(item.trial_id)
        return
    store.write_controls(spec.name, [{"trial_id": item.trial_id, "trial_write_id": item.trial_write_id, "device": outcome.device, **r}
                                     for r in outcome.rows])
    report.trials += 1
    report.rows += len(outcome.rows)


def worker_plan(spec: SweepSpec, config: dict[str, Any]) -> dict[str, Any] | None:
    """What a trial's worker scores right after training, carried in its Tune config: the
    draws of each control (every row of its method's table: a trial that runs has none
    stored) and the device, or None where the pass after
    the trials does it (no `subnet_controls`, a method without controls, a device the
    trial's worker may not hold: cuda for a trial without a GPU, mps).

    Why in the worker: torch, the data and the subnetwork's file are all there, and the
    pass after the trials paid a new worker process per core (5-10 s under load) and ran
    after the last trial: on `make demo`, 7.5 s of its 127 s."""
    options = spec.subnet_controls
    if options is None or config.get("method") not in CONTROLLED_METHODS or controls_of(config["method"], config) is None:
        return None
    device, gpu = options.device, spec.resources.gpu > 0
    if device == "mps" or (device.startswith("cuda") and not gpu):
        return None
    # as the pass's tasks resolve it (controls_tasks.task_plan): the GPU the trial holds, else
    # the CPU; never 'auto' in a worker, which would find a GPU the trial did not reserve
    return {"draws": options.draws, "device": "cuda" if gpu and device != "cpu" else "cpu"}


def score_in_worker(trial_id: str, method: str, plan: dict[str, Any], subnet_file: str, data: Any, data_root: str | None) -> dict[str, Any]:
    """In a trial's worker, right after `train` wrote its subnet file (`subnet_file`, a
    local path): the trial's controls (worker_plan's), scored as the pass scores them
    (score_trial, seeded by trial and draw: the same rows), as the final report's
    report_codec.controls_entry. The driver writes the rows after the trial's own row."""
    from hidden_core.subnet.fileformat import read_subnet_file
    from hidden_core.tune.report_codec import controls_entry

    started = time.perf_counter()
    try:
        item = ControlsWork(trial_id, "", method, method_draws(method, int(plan["draws"])))
        outcome = score_trial(item, subnet_file, lambda: read_subnet_file(subnet_file), plan["device"], data_root,
                              data_for=lambda _config: data)
    except Exception as err:  # never the trial's failure: the pass after the trials scores it
        outcome = TrialOutcome(trial_id, problem=problem_text(err))
    return controls_entry(outcome.rows, outcome.device, outcome.problem, time.perf_counter() - started)


def record_from_worker(spec: SweepSpec, store: ResultStore, trial_id: str, write_id: str, method: str, entry: dict[str, Any],
                       report: ControlsPassReport, out: Any) -> None:
    """Write the controls a trial's worker scored (report_codec.controls_entry), now that
    the trial's row (`write_id`) is in the store; a problem is reported and left to the
    pass after the trials, as record does."""
    outcome = TrialOutcome(trial_id, rows=list(entry["rows"]), device=entry["device"], problem=entry["problem"])
    if outcome.problem is not None:  # the pass after the trials, in this same run, scores it
        log.warning("controls of trial %s not scored in its worker (%s); the pass after the trials scores them", trial_id, outcome.problem)
        report.skipped.append(trial_id)
    else:
        record(spec, store, ControlsWork(trial_id, write_id, method, []), outcome, report, out)
    report.seconds += float(entry["seconds"])  # the workers' seconds (in parallel, inside the trials)


def problem_text(err: BaseException) -> str:
    return "; ".join(err.problems) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"


def score_trial(item: ControlsWork, path: str, read: Callable[[], Any], device: str, data_root: str | None,
                data_for: Callable[[Any], Any] | None = None) -> TrialOutcome:
    """Evaluate one trial's missing (control, draw) rows. `path`: its file in the store (for
    messages); `read()`: the file as a SubnetFile;
    `data_for(config)`: its DataSplits when the caller holds them (None: loaded here). Any
    error comes back as the outcome's problem; an interrupt goes through."""
    from hidden_core.subnet import controls  # looked up at the call: tests replace score_controls
    from hidden_core.subnet.evaluate import Evaluator
    from hidden_core.subnet.fileformat import SubnetFormatError

    try:
        f = read()
        if f.config.trial_id != item.trial_id:
            raise SubnetFormatError(path, f"holds trial {f.config.trial_id}, not {item.trial_id}")
        # without data_for, data.load_data keeps the last splits loaded: the trials of a sweep share them
        evaluator = Evaluator(f, device=device, data_root=data_root, data=data_for(f.config) if data_for is not None else None)
        rows = controls.score_controls(f, evaluator, item.missing)
    except Exception as err:
        return TrialOutcome(item.trial_id, problem=problem_text(err))
    return TrialOutcome(item.trial_id, rows=rows, device=str(evaluator.device))


def in_process(spec: SweepSpec, store: ResultStore, work: list[ControlsWork], threads: int | None = None,
               device: str | None = None) -> Iterator[TrialOutcome]:
    """The trials one at a time in this process, on `device` (default `subnet_controls.device`), with `threads`
    torch CPU threads (default: a trial's, `resources.threads`, as each Ray task has; put
    back afterwards). More intra-op threads than a trial's do not pay on these small
    evaluations and, on a loaded machine, mostly wait for cores: the 24-trial sweep of
    benchmarks/bench_controls.py took 124 s with the driver's default 2 against 23 s with 1."""
    import torch

    from hidden_core.subnet.fileformat import read_subnet_file

    data_root = spec.run_options().data_root

    def reader(item: ControlsWork) -> Callable[[], Any]:
        def read() -> Any:
            with _local_file(store, store.subnet_path(spec.name, item.trial_id)) as local:
                return read_subnet_file(local)
        return read

    saved = torch.get_num_threads()
    torch.set_num_threads(threads or spec.resources.threads)
    try:
        for item in work:
            yield score_trial(item, store.subnet_path(spec.name, item.trial_id), reader(item), device or spec.subnet_controls.device, data_root)
    finally:
        torch.set_num_threads(saved)


def _exists(store: ResultStore, path: str) -> bool:
    import pyarrow.fs as pafs

    try:
        return store.fs.get_file_info(path).type == pafs.FileType.File
    except OSError:
        return False


class _local_file:
    """A local path of the store's file (itself when the store is a folder; else a
    temporary copy: safetensors reads local files)."""

    def __init__(self, store: ResultStore, path: str):
        self.store, self.path, self.tmp = store, path, None

    def __enter__(self) -> str:
        import pyarrow.fs as pafs

        if isinstance(self.store.fs, pafs.LocalFileSystem):
            return self.path
        fd, self.tmp = tempfile.mkstemp(suffix=paths.SUBNET_SUFFIX)
        with os.fdopen(fd, "wb") as dst, self.store.fs.open_input_stream(self.path) as src:
            dst.write(src.read())
        return self.tmp

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            os.unlink(self.tmp)
