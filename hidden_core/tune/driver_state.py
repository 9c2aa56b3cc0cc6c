"""The driver's state during one run of a sweep: the queue of trials to hand out, one
record per Tune trial (its epochs and final report), and the store writer.

A vectorized cell (planning.Cell: the seeds of one grid cell trained by one Tune trial) has
one record per seed, keyed ``<ray trial id>/<trial_id>``; each seed's row, epochs, pruning
decision and checkpoint are its own, exactly as if it had run alone.

The scheduler, searcher and callback (pruning.py, search.py, tune_callbacks.py) hold a
reference to the one `SweepRuntime` of their run, given to them when run_sweep builds
them: no registry, no lookup by key. Tune pickles them into its experiment state, which
is never restored, so their pickled form drops the reference.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hidden_core import paths
from hidden_core.config import TrialConfig
from hidden_core.records import (
    BEST_VAL_ACC,
    COMPLETED,
    DIVERGED_EPOCH,
    EPOCH,
    EPOCH_FIELDS,
    EPOCHS_RUN,
    FAILED,
    FINAL_STATUSES,
    HEALTH_FLAGS,
    METRIC_FIELDS,
    PRUNED,
    REPORT_EPOCH,
    REPORT_FAILED,
    REPORT_FINAL,
    RUN_INFO_FIELDS,
    SUBNET_FILE,
    TEST_ACC,
    TEST_ACC_AT_BEST_VAL,
    TRAIN_ACC,
    TRAIN_LOSS,
    TRAIN_SECONDS,
    TRIAL_BRANCHES,
    VAL_ACC,
)
from hidden_core.spec import PlannedTrial, SearchPoint, SweepSpec
from hidden_core.store import ResultStore
from hidden_core.tune import checkpoints, controls_pass, report_codec
from hidden_core.tune.planning import Cell, Todo
from hidden_core.tune.report import TrialSummary

log = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    ray_id: str
    trial_id: str
    cell_id: str
    config: dict[str, Any]
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # node, started_at, device, torch_version
    final: dict[str, Any] | None = None  # the fields of its final or failed report (report_codec.Report.fields)
    written: bool = False

    def release(self) -> None:
        """Once its row is in the store: keep only what says so. The epochs (a dict a row
        each), the final report's fields and the config would otherwise stay in the driver
        for every trial of the run, the epochs growing with each trial's length."""
        self.epochs, self.info, self.final, self.config = {}, {}, None, {}


class SweepRuntime:
    """Live state of one run_sweep call in the driver: the trial queue, Optuna studies,
    per-trial records, and the store writer."""

    def __init__(self, spec: SweepSpec, store: ResultStore, results_root: str, *, studies: Any, run_values: dict[str, Any],
                 provenance: dict[str, Any], progress: Any = None):
        self.spec = spec
        self.store = store
        self.results_root = paths.normalize_root(results_root)
        self.studies = studies
        self.run_values = run_values
        self.provenance = provenance
        self.progress = progress
        self.queue: deque[PlannedTrial | Cell] = deque()
        self.points: list[list[Any]] = []  # [SearchPoint, remaining]
        self._point_cursor = 0
        self.wanted_cells: set[str] = set()
        self.final_ids: set[str] = set()
        self.issued_ids: set[str] = set()
        self.records: dict[str, TrialRecord] = {}  # ray trial id (a cell's seeds: ray id/trial_id) -> record
        self.cell_seeds: dict[str, list[str]] = {}  # ray id of a vectorized cell -> its seeds' record keys
        self.pruned: set[str] = set()  # record keys
        self.optuna_numbers: dict[str, int] = {}
        self.summaries: list[TrialSummary] = []
        self.started: set[str] = set()
        # Tune trials started and not ended: what the progress line counts on every step
        # (Tune's step callbacks get every trial of the run, which grows with the sweep)
        self.live: dict[str, Any] = {}
        self.report_every_s = spec.report_every_s
        self.lock = threading.RLock()
        self.controls = controls_pass.ControlsPassReport()  # the controls the trials' workers scored (worker_plan)

    # -- planning --
    def load(self, todo: Todo) -> None:
        in_cell = {t.trial_id: c for c in todo.cells for t in c.trials}
        queue: list[PlannedTrial | Cell] = []
        for t in todo.trials:  # a cell where its first seed is in the plan
            cell = in_cell.get(t.trial_id)
            if cell is None:
                queue.append(t)
            elif cell.trials[0].trial_id == t.trial_id:
                queue.append(cell)
        self.queue = deque(queue)
        self.points = [[p, n] for p, n in todo.points]
        self._point_cursor = 0
        self.final_ids = set(todo.final_ids)
        self.wanted_cells = {p.cell_id for p, _ in todo.points}

    def next_suggestion(self) -> dict[str, Any] | None:
        """The next Tune trial config, or None when this run has nothing more to start."""
        with self.lock:
            while self.queue:
                planned = self.queue.popleft()
                if isinstance(planned, Cell):
                    members = [t for t in planned.trials if t.trial_id not in self.final_ids and t.trial_id not in self.issued_ids]
                    if len(members) > 1:
                        self.issued_ids.update(t.trial_id for t in members)
                        return self._cell_suggestion(planned.cell_id, members)
                    self.queue.extendleft(members)  # one seed left (or none): a trial of its own
                    continue
                if planned.trial_id in self.final_ids or planned.trial_id in self.issued_ids:
                    continue
                self.issued_ids.add(planned.trial_id)
                return self._suggestion(planned.config, planned.trial_id, planned.cell_id, None, {})
            while self.points:
                self._point_cursor %= len(self.points)
                entry = self.points[self._point_cursor]
                point, remaining = entry
                suggestion = self._sample(point)
                entry[1] = remaining - 1
                if entry[1] <= 0:
                    self.points.pop(self._point_cursor)
                else:
                    self._point_cursor += 1
                if suggestion is not None:
                    return suggestion
            return None

    def _sample(self, point: SearchPoint, tries: int = 20) -> dict[str, Any] | None:
        for _ in range(tries):
            number, params = self.studies.ask(point)
            config = point.config_for(params)
            trial_id = config.trial_id
            if trial_id in self.issued_ids or trial_id in self.final_ids:
                # the sampler proposed a trial that exists: tell it what it already knows
                value = self._known_value(trial_id)
                self.studies.finish(point.cell_id, number, COMPLETED if value is not None else FAILED, value)
                continue
            self.studies.name_trial(point.cell_id, number, trial_id)
            self.issued_ids.add(trial_id)
            return self._suggestion(config, trial_id, point.cell_id, number, params)
        log.warning("sampler kept proposing existing trials for cell %s; skipping a sample", point.cell_id)
        return None

    def _known_value(self, trial_id: str) -> float | None:
        for s in self.summaries:
            if s.trial_id == trial_id and s.best_val_acc is not None and math.isfinite(s.best_val_acc):
                return s.best_val_acc
        if trial_id in self.final_ids:
            with contextlib.suppress(Exception):
                frame = self.store.load_trials(self.spec.name, where=f"trial_id == '{trial_id}'", columns=[BEST_VAL_ACC])
                if len(frame) and math.isfinite(frame[BEST_VAL_ACC].iloc[0]):
                    return float(frame[BEST_VAL_ACC].iloc[0])
        return None

    def _suggestion(self, config: TrialConfig, trial_id: str, cell: str, number: int | None, params: dict[str, Any]) -> dict[str, Any]:
        trial = config.model_dump(mode="json")
        return {
            "trial": trial,
            "run": self.run_values,
            "controls": controls_pass.worker_plan(self.spec, trial),  # scored in the trial's worker as it ends
            "trial_id": trial_id,
            "cell_id": cell,
            "optuna_number": number,
            "searched": params,
            "report_every_s": self.report_every_s,
            "checkpoint_dir": paths.trial_checkpoint_dir(self.results_root, self.spec.name, trial_id),
            # what the trial learned, written by `train` when it returns (the save_subnet run option)
            "subnet_path": paths.trial_subnet_path(self.results_root, self.spec.name, trial_id),
        }

    def _cell_suggestion(self, cell: str, members: list[PlannedTrial]) -> dict[str, Any]:
        """One Tune trial for the seeds `members` of a cell (hidden_core.vectorized)."""
        suggestion = self._suggestion(members[0].config, f"cell-{cell}", cell, None, {})
        suggestion["checkpoint_dir"] = suggestion["subnet_path"] = None
        suggestion["seeds"] = [{
            "seed": t.config.seed,
            "trial_id": t.trial_id,
            "checkpoint_dir": paths.trial_checkpoint_dir(self.results_root, self.spec.name, t.trial_id),
            "subnet_path": paths.trial_subnet_path(self.results_root, self.spec.name, t.trial_id),
        } for t in members]
        return suggestion

    def unfinished(self) -> int:
        """Trials this run started that did not reach the store: the next run resumes them
        from their checkpoints."""
        keys = [key for ray_id in self.started for key in self.cell_seeds.get(ray_id, [ray_id])]
        return sum(1 for key in keys if not self.records.get(key, TrialRecord("", "", "", {})).written)

    # -- results --
    def record(self, trial: Any) -> TrialRecord:
        """The record of a Tune trial (of a vectorized cell: of its first seed)."""
        return self.seed_records(trial)[0]

    def seed_records(self, trial: Any) -> list[TrialRecord]:
        """The records a Tune trial writes: its own, or one per seed of a vectorized cell."""
        keys = self.cell_seeds.get(trial.trial_id)
        if keys is None:
            config = trial.config
            if not config.get("seeds"):
                rec = self.records.get(trial.trial_id)
                if rec is None:
                    rec = self.records[trial.trial_id] = TrialRecord(trial.trial_id, config["trial_id"], config["cell_id"], dict(config["trial"]))
                return [rec]
            keys = self.cell_seeds[trial.trial_id] = []
            for seed in config["seeds"]:
                key = seed_key(trial.trial_id, seed["trial_id"])
                self.records[key] = TrialRecord(key, seed["trial_id"], config["cell_id"], {**config["trial"], "seed": seed["seed"]})
                keys.append(key)
        return [self.records[k] for k in keys]

    def mark_pruned(self, key: str) -> None:
        """key: a Tune trial's id, or seed_key(...) of one seed of a vectorized cell."""
        self.pruned.add(key)

    def final_result(self, ray_id: str) -> dict[str, Any] | None:
        rec = self.records.get(ray_id)
        return rec.final if rec else None

    def on_start(self, trial: Any) -> None:
        self.started.add(trial.trial_id)
        self.live[trial.trial_id] = trial
        self.record(trial)

    def on_result(self, trial: Any, result: dict[str, Any]) -> None:
        report = report_codec.decode(result)
        if report is None:
            return  # not a report of ours (report_codec.decode)
        if trial.config.get("seeds"):
            self._on_cell_result(trial, report)
            return
        rec = self.record(trial)
        for key in RUN_INFO_FIELDS:
            if report.get(key) is not None:
                rec.info[key] = report.get(key)
        if report.get("resumed_from"):  # epochs the attempt found in the trial's checkpoint
            rec.info["resumed_from"] = int(report.get("resumed_from"))
        for row in report.rows:  # an epoch report's epochs not reported yet, a final one's history
            rec.epochs[int(row[EPOCH])] = {k: row.get(k) for k in EPOCH_FIELDS}
        if report.kind == REPORT_EPOCH and report.get(EPOCH) is not None:
            rec.epochs[int(report.get(EPOCH))] = {k: report.get(k) for k in EPOCH_FIELDS}
        elif report.ended:
            rec.final = report.fields
        if self.progress is not None and report.kind == REPORT_EPOCH:
            self.progress.on_epoch(trial.trial_id, rec, report.fields)

    def _on_cell_result(self, trial: Any, report: report_codec.Report) -> None:
        """A vectorized cell's report: per seed's trial_id, its epochs since the last report
        (an epoch report) or its ending (the final one)."""
        for rec in self.seed_records(trial):
            entry = report.seeds.get(rec.trial_id)
            if entry is None:
                continue
            for key in RUN_INFO_FIELDS:
                value = entry.fields.get(key, report.get(key))
                if value is not None:
                    rec.info[key] = value
            if entry.fields.get("resumed_from"):
                rec.info["resumed_from"] = int(entry.fields["resumed_from"])
            for row in entry.rows:
                rec.epochs[int(row[EPOCH])] = {k: row.get(k) for k in EPOCH_FIELDS}
            if report.ended and entry.kind:
                if entry.fields.get(report_codec.STATUS) == PRUNED:  # a pruned seed's row comes from its epochs, as a pruned trial's
                    self.mark_pruned(rec.ray_id)
                else:
                    rec.final = entry.fields
        if self.progress is not None and report.kind == REPORT_EPOCH:
            self.progress.on_epoch(trial.trial_id, self.record(trial), report.fields)

    def on_complete(self, trial: Any) -> None:
        self.live.pop(trial.trial_id, None)
        for rec in self.seed_records(trial) if trial.trial_id in self.records or trial.trial_id in self.cell_seeds else []:
            if rec.written:
                continue
            if rec.ray_id in self.pruned:  # (a seed pruned before its cell failed is still pruned)
                self.write(rec, PRUNED)
            elif rec.final is not None and rec.final.get(report_codec.KIND) == REPORT_FAILED:
                self.write(rec, FAILED, error=rec.final.get(report_codec.ERROR))
            elif rec.final is not None:
                self.write(rec, rec.final.get(report_codec.STATUS) or COMPLETED)
            # else: stopped before it ended (the run was interrupted): resumes next time

    def on_error(self, trial: Any) -> None:
        self.live.pop(trial.trial_id, None)
        error = None
        with contextlib.suppress(Exception):
            error = trial.get_error()
        if not error:
            error = getattr(trial, "error_msg", None) or "the trial's worker failed (no error text; see the Ray logs)"
        for rec in self.seed_records(trial):
            if not rec.written:
                self.write(rec, FAILED, error=str(error))

    def write(self, rec: TrialRecord, status: str, error: str | None = None) -> None:
        epochs = [rec.epochs[e] for e in sorted(rec.epochs)]
        row = self.trial_row(rec, status, epochs, error)
        if status in FINAL_STATUSES:  # the file first, so a row never names a file that is not there
            try:
                if checkpoints.keep_subnet(self.results_root, self.spec.name, rec.trial_id, paths.trial_checkpoint_dir(self.results_root, self.spec.name, rec.trial_id), rec.config, status):
                    row[SUBNET_FILE] = paths.subnet_file_name(self.spec.name, rec.trial_id)
            except Exception as err:  # the row goes without it; trial_final tries again and keeps the checkpoint if it fails
                log.warning("could not keep the subnet file of trial %s: %s", rec.trial_id, err)
        try:
            write_id = self.store.write_trial(self.spec.name, row, epochs)
        except OSError as err:
            if err.errno == errno.ENOSPC:  # every later write would fail too: stop the sweep with one line
                from hidden_core.tune.report import StoreFull

                raise StoreFull(err) from None
            log.exception("could not write trial %s to the store; it re-runs next time", rec.trial_id)
            return
        except Exception:
            log.exception("could not write trial %s to the store; it re-runs next time", rec.trial_id)
            return
        rec.written = True
        controls = rec.final if rec.final is not None and status in FINAL_STATUSES and row.get(SUBNET_FILE) else None
        if status in FINAL_STATUSES:
            self.final_ids.add(rec.trial_id)
            try:
                checkpoints.trial_final(self.results_root, self.spec.name, rec.trial_id, rec.config, status)
            except Exception as err:  # never stop the sweep for it; the checkpoint stays when the subnet file could not be made
                log.warning("could not keep the subnet file or delete the checkpoint of trial %s: %s", rec.trial_id, err)
        summary = TrialSummary(
            trial_id=rec.trial_id, method=rec.config.get("method", "?"), width=float(rec.config.get("width", float("nan"))),
            status=status, epochs_run=int(row.get(EPOCHS_RUN) or 0), train_seconds=float(row.get(TRAIN_SECONDS) or 0.0),
            best_val_acc=row.get(BEST_VAL_ACC), test_acc_at_best_val=row.get(TEST_ACC_AT_BEST_VAL),
            node=row.get("node"), started_at=rec.info.get("started_at"), finished_at=time.time(),
            resumed_from_epoch=int(rec.info.get("resumed_from") or 0), health_flags=row.get(HEALTH_FLAGS),
            run=rec.ray_id.split("/", 1)[0],  # seed_key: '<run>/<trial_id>'
        )
        self.summaries.append(summary)
        if controls is not None:
            self._write_worker_controls(rec, write_id, controls)
        rec.release()
        if self.progress is not None:
            self.progress.on_trial_end(summary)

    def _write_worker_controls(self, rec: TrialRecord, write_id: str, final: dict[str, Any]) -> None:
        """The controls the trial's worker scored (controls_pass.worker_plan), written after
        the trial's own row is done with. Never stops the sweep or the trial's ending: what
        cannot be read or written is logged and left to the pass after the trials."""
        try:
            entry = report_codec.controls_in(final)
            if entry is not None:
                controls_pass.record_from_worker(self.spec, self.store, rec.trial_id, write_id, rec.config.get("method", "?"), entry,
                                                 self.controls, getattr(self.progress, "out", None) or sys.stdout)
        except Exception as err:
            log.warning("controls of trial %s not written (%s); the pass after the trials scores them", rec.trial_id, err)

    def trial_row(self, rec: TrialRecord, status: str, epochs: list[dict[str, Any]], error: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {"trial_id": rec.trial_id, "cell_id": rec.cell_id, "status": status}
        config = TrialConfig.model_validate(rec.config)
        row.update(config.model_dump())
        row["step_milestones"] = list(config.step_milestones)
        metrics: dict[str, Any] = {}
        final = rec.final if rec.final is not None and rec.final.get(report_codec.KIND) == REPORT_FINAL else None
        if final is not None:
            metrics = {k: final.get(k) for k in METRIC_FIELDS}
        else:
            metrics = _metrics_from_epochs(epochs)
        row.update(metrics)
        if row.get(DIVERGED_EPOCH) is not None and isinstance(row[DIVERGED_EPOCH], float):
            row[DIVERGED_EPOCH] = None if math.isnan(row[DIVERGED_EPOCH]) else int(row[DIVERGED_EPOCH])
        source = final or rec.final or {}
        for key in RUN_INFO_FIELDS:
            row[key] = source.get(key) or rec.info.get(key)
        row["finished_at"] = datetime.now(timezone.utc)
        row.update(self.provenance)
        row["error"] = error if status == FAILED else None
        return row


def _metrics_from_epochs(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of a trial that did not finish (pruned, failed): from its epoch rows; a lottery
    trial's from its latest ticket level, as a finished one's row (hidden_core/lottery.py)."""
    out: dict[str, Any] = {EPOCHS_RUN: len(epochs), TRAIN_SECONDS: float(sum(e.get("seconds") or 0.0 for e in epochs))}
    own = [e for e in epochs if e.get("branch") in TRIAL_BRANCHES]
    if own and own[-1].get("level") is not None:
        own = [e for e in own if e.get("level") == own[-1]["level"]]
    if not own:
        return out
    last = own[-1]
    scored = [e for e in own if e.get(VAL_ACC) is not None and math.isfinite(e[VAL_ACC])]
    best = max(scored, key=lambda e: e[VAL_ACC]) if scored else None
    out.update(
        val_acc=last.get(VAL_ACC), test_acc=last.get(TEST_ACC), train_loss=last.get(TRAIN_LOSS), train_acc=last.get(TRAIN_ACC),
        best_val_acc=best[VAL_ACC] if best else None, best_epoch=best[EPOCH] if best else None,
        test_acc_at_best_val=best[TEST_ACC] if best else None,
    )
    return out


def seed_key(ray_id: str, trial_id: str) -> str:
    """The record key of one seed of a vectorized cell run as Tune trial `ray_id`."""
    return f"{ray_id}/{trial_id}"
