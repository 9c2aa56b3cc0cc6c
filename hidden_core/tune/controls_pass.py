"""The controls pass of a sweep (the spec's `subnet_controls`): every final trial whose method
learns a mask or signs is evaluated against its controls (hidden_core/subnet/controls.py), and
the rows go to the store's controls table, which `hidden results` shows as trial columns.

Runs in the driver, after the trials (run_sweep calls `run` under the sweep's lease), in this
process on `subnet_controls.device`: evaluation is a few forward passes per control, small
next to training, and needs no Ray. The store is the only state: a trial's rows (every
control and draw it lacks) are written in one part file once they are all computed, so a
killed pass loses at most the trial it was on, and the next run computes only the
(trial, control, draw) rows the store lacks. Draws are seeded by trial and draw number, so
those rows are the ones an uninterrupted pass would have written.

Imports no Ray; torch only when there is something to evaluate.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
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


def run(spec: SweepSpec, store: ResultStore, out: Any = None) -> ControlsPassReport:
    """Compute and store every missing control row of the sweep (see `pending`)."""
    report = ControlsPassReport()
    work = pending(spec, store)
    if not work:
        return report
    started = time.perf_counter()
    out = out if out is not None else sys.stdout
    options = spec.subnet_controls
    print(f"controls: evaluating {len(work)} trials against their controls ({options.draws} draws, device {options.device})", file=out, flush=True)
    from hidden_core.subnet.controls import score_controls
    from hidden_core.subnet.evaluate import Evaluator
    from hidden_core.subnet.fileformat import SubnetFormatError, read_subnet_file

    data_root = spec.run_options().data_root
    for item in work:
        try:
            with _local_file(store, store.subnet_path(spec.name, item.trial_id)) as local:
                f = read_subnet_file(local)
            if f.config.trial_id != item.trial_id:
                raise SubnetFormatError(local, f"holds trial {f.config.trial_id}, not {item.trial_id}")
            # data.load_data keeps the last splits loaded: the trials of a sweep share them
            evaluator = Evaluator(f, device=options.device, data_root=data_root)
            rows = score_controls(f, evaluator, item.missing)
        except Exception as err:  # a damaged file, missing data, no memory: reported, never lost (the next run retries it)
            problem = "; ".join(err.problems) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
            log.warning("controls of trial %s skipped: %s", item.trial_id, problem)
            print(f"controls: trial {item.trial_id} skipped ({problem}); the next run of the sweep tries it again", file=out, flush=True)
            report.skipped.append(item.trial_id)
            continue
        device = str(evaluator.device)
        store.write_controls(spec.name, [{"trial_id": item.trial_id, "trial_write_id": item.trial_write_id, "device": device, **r} for r in rows])
        report.trials += 1
        report.rows += len(rows)
    store.compact_controls(spec.name)
    report.seconds = time.perf_counter() - started
    print(f"controls: {report.trials} trials, {report.rows} rows in {report.seconds:.1f}s (`hidden results show {spec.name}` shows them)", file=out, flush=True)
    return report


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
