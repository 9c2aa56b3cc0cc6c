"""Spec -> trials -> skip the final ones -> Ray Tune -> one store row per trial as it ends.

    report = run_sweep("sweeps/quickstart.yaml", "results")             # embedded local Ray
    report = run_sweep(spec, "s3://bucket/results", address="auto")     # an existing cluster

Flow of one run:
1. Validate the spec and expand it (every problem at once, nothing started).
2. Read the store: trials already final (completed | pruned | diverged) are skipped; with
   `search`, each grid point only asks for the samples it still lacks.
3. Start (or connect to) Ray and check that some node can hold one trial.
4. If an earlier run of this sweep was interrupted (its driver killed), restore that Tune
   experiment (``Tuner.restore``) and let it finish the trials it had in flight, from their
   last checkpoints; trials it had that are final by now are dropped, not re-run.
5. Run whatever is still missing in a fresh Tune experiment.

As each trial ends (completed, pruned, failed, diverged) the driver writes its trial row and
its epoch rows to the store (a Tune callback), so a killed driver loses at most the trials
in flight. The Tune experiment folder (``<results>/<sweep>/_tune``) only lives while a run
is unfinished; the Optuna studies (pruning and sampling history) persist next to the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickletools
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hidden_core.config import ConfigError, TrialConfig
from hidden_core.spec import PlannedTrial, SearchPoint, SweepSpec, check_resources, load_spec
from hidden_core.store import ResultStore, default_results_root

log = logging.getLogger(__name__)

EXPERIMENT_DIR = "_tune"  # <results>/<sweep>/_tune/<EXPERIMENT_NAME>: Tune's state while a run is unfinished
EXPERIMENT_NAME = "experiment"
FINAL_STATUSES = ("completed", "pruned", "diverged")
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "val_acc", "test_acc", "lr", "seconds")
METRIC_FIELDS = (
    "val_acc", "test_acc", "best_val_acc", "best_epoch", "test_acc_at_best_val", "train_loss", "train_acc",
    "epochs_run", "diverged_epoch", "params_total", "params_active", "params_learned", "changed_fraction",
    "density", "train_seconds", "samples_per_second",
)

# Driver-side environment for Tune (set before Tune reads it, unless the user set it):
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial JSON/CSV/TensorBoard files: the store is the record
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: Tune prints nothing; progress.py prints one line
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "1",
}
# Worker-side environment (trial processes):
WORKER_ENV = {
    "RAY_CHDIR_TO_TRIAL_DIR": "0",  # keep the working directory: relative data paths work
}

_RUNTIMES: dict[str, SweepRuntime] = {}


def get_runtime(key: str) -> SweepRuntime:
    """The live driver state the scheduler, searcher and callbacks of a sweep use. Tune
    pickles those objects into its experiment folder; a restored copy finds the new run's
    runtime by the same key (the sweep's name and store)."""
    runtime = _RUNTIMES.get(key)
    if runtime is None and len(_RUNTIMES) == 1:  # restored from a store that has since moved
        runtime = next(iter(_RUNTIMES.values()))
    if runtime is None:
        raise RuntimeError(f"no sweep runtime {key!r} in this process; sweep objects only work inside run_sweep")
    return runtime


# ---- report ----------------------------------------------------------------------------------
@dataclass
class TrialSummary:
    trial_id: str
    method: str
    width: float
    status: str
    epochs_run: int
    train_seconds: float
    best_val_acc: float | None
    test_acc_at_best_val: float | None
    node: str | None
    started_at: float | None
    finished_at: float


@dataclass
class SweepReport:
    """What one run_sweep call did. `efficiency`: training seconds / (fit wall seconds x
    concurrent trials), the orchestration overhead figure of benchmarks."""

    sweep: str
    planned: int = 0  # trials the spec expands to
    skipped: int = 0  # already final in the store before this run
    to_run: int = 0  # what this run set out to do
    restored: int = 0  # trials finished by the restored experiment
    concurrency: int = 1
    wall_seconds: float = 0.0  # the whole call
    startup_seconds: float = 0.0  # Ray start/connect + data into the object store
    fit_seconds: float = 0.0  # inside Tuner.fit (both phases)
    trials: list[TrialSummary] = field(default_factory=list)
    unfinished: int = 0  # started but not ended (interrupted): the next run resumes them

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("completed", "pruned", "diverged", "failed")}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out

    @property
    def train_seconds(self) -> float:
        return float(sum(t.train_seconds for t in self.trials if t.train_seconds and math.isfinite(t.train_seconds)))

    @property
    def efficiency(self) -> float:
        if not self.fit_seconds or not self.concurrency:
            return float("nan")
        return self.train_seconds / (self.fit_seconds * self.concurrency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep, "planned": self.planned, "skipped": self.skipped, "to_run": self.to_run,
            "restored": self.restored, "concurrency": self.concurrency, "wall_seconds": self.wall_seconds,
            "startup_seconds": self.startup_seconds, "fit_seconds": self.fit_seconds, "counts": self.counts,
            "train_seconds": self.train_seconds, "efficiency": self.efficiency, "unfinished": self.unfinished,
        }


# ---- what is left to run ---------------------------------------------------------------------
@dataclass
class Todo:
    trials: list[PlannedTrial]  # grid trials not final in the store
    points: list[tuple[SearchPoint, int]]  # search points with the samples they still need
    skipped: int  # planned trials (and samples) already final
    final_ids: set[str]

    @property
    def count(self) -> int:
        return len(self.trials) + sum(n for _, n in self.points)


def plan_todo(spec: SweepSpec, store: ResultStore) -> Todo:
    plan = spec.plan()
    final = store.final_trial_ids(spec.name)
    trials = [t for t in plan.trials if t.trial_id not in final]
    skipped = len(plan.trials) - len(trials)
    points: list[tuple[SearchPoint, int]] = []
    if plan.points:
        done: dict[tuple[str, int], int] = {}
        if final:
            frame = store.load_trials(spec.name, columns=["trial_id", "cell_id", "seed", "status"])
            frame = frame[frame["status"].isin(FINAL_STATUSES)]
            for (cell, seed), n in frame.groupby(["cell_id", "seed"]).size().items():
                done[(cell, int(seed))] = int(n)
        for point in plan.points:
            have = min(done.get(point.key, 0), point.samples)
            skipped += have
            if point.samples - have > 0:
                points.append((point, point.samples - have))
    return Todo(trials, points, skipped, final)


# ---- provenance ------------------------------------------------------------------------------
def git_commit() -> str | None:
    """Commit of the checkout hidden_core runs from (with '-dirty' for local changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, str | None]:
    import ray

    import hidden_core

    return {"hidden_version": hidden_core.__version__, "git_commit": git_commit(), "ray_version": ray.__version__}


# ---- per-trial bookkeeping on the driver -----------------------------------------------------
@dataclass
class TrialRecord:
    ray_id: str
    trial_id: str
    cell_id: str
    config: dict[str, Any]
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # node, started_at, device, torch_version
    final: dict[str, Any] | None = None  # the 'final' or 'failed' report
    written: bool = False


class SweepRuntime:
    """Live state of one run_sweep call in the driver: the trial queue, Optuna studies,
    per-trial records, and the store writer."""

    def __init__(self, spec: SweepSpec, store: ResultStore, key: str, *, studies: Any, run_values: dict[str, Any],
                 provenance: dict[str, Any], progress: Any = None):
        self.spec = spec
        self.store = store
        self.key = key
        self.studies = studies
        self.run_values = run_values
        self.provenance = provenance
        self.progress = progress
        self.phase = "fresh"
        self.queue: deque[PlannedTrial] = deque()
        self.points: list[list[Any]] = []  # [SearchPoint, remaining]
        self._point_cursor = 0
        self.wanted_ids: set[str] = set()
        self.wanted_cells: set[str] = set()
        self.final_ids: set[str] = set()
        self.issued_ids: set[str] = set()
        self.records: dict[str, TrialRecord] = {}
        self.pruned: set[str] = set()
        self.optuna_numbers: dict[str, int] = {}
        self.summaries: list[TrialSummary] = []
        self.started: set[str] = set()
        self.report_every_s = spec.report_every_s
        self.lock = threading.RLock()

    # -- planning --
    def load(self, todo: Todo) -> None:
        self.queue = deque(todo.trials)
        self.points = [[p, n] for p, n in todo.points]
        self._point_cursor = 0
        self.final_ids = set(todo.final_ids)
        self.wanted_ids = {t.trial_id for t in todo.trials}
        self.wanted_cells = {p.cell_id for p, _ in todo.points}

    @property
    def pending(self) -> int:
        return len(self.queue) + sum(n for _, n in self.points)

    def wants(self, trial: Any) -> bool:
        """Whether a (restored) Tune trial should still run."""
        config = trial.config
        trial_id = config.get("trial_id")
        if trial_id in self.final_ids:
            return False
        if config.get("optuna_number") is not None:
            return config.get("cell_id") in self.wanted_cells
        return trial_id in self.wanted_ids

    def next_suggestion(self) -> dict[str, Any] | None:
        """The next Tune trial config, or None when this run has nothing more to start."""
        with self.lock:
            if self.phase != "fresh":
                return None
            while self.queue:
                planned = self.queue.popleft()
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
                self.studies.finish(point.cell_id, number, "complete" if value is not None else "fail", value)
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
                frame = self.store.load_trials(self.spec.name, where=f"trial_id == '{trial_id}'", columns=["best_val_acc"])
                if len(frame) and math.isfinite(frame["best_val_acc"].iloc[0]):
                    return float(frame["best_val_acc"].iloc[0])
        return None

    def _suggestion(self, config: TrialConfig, trial_id: str, cell: str, number: int | None, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "trial": config.model_dump(mode="json"),
            "run": self.run_values,
            "trial_id": trial_id,
            "cell_id": cell,
            "optuna_number": number,
            "searched": params,
            "report_every_s": self.report_every_s,
        }

    # -- results --
    def record(self, trial: Any) -> TrialRecord:
        rec = self.records.get(trial.trial_id)
        if rec is None:
            config = trial.config
            rec = TrialRecord(trial.trial_id, config["trial_id"], config["cell_id"], dict(config["trial"]))
            self.records[trial.trial_id] = rec
        return rec

    def mark_pruned(self, ray_id: str) -> None:
        self.pruned.add(ray_id)

    def final_result(self, ray_id: str) -> dict[str, Any] | None:
        rec = self.records.get(ray_id)
        return rec.final if rec else None

    def on_start(self, trial: Any) -> None:
        self.started.add(trial.trial_id)
        self.record(trial)

    def on_result(self, trial: Any, result: dict[str, Any]) -> None:
        rec = self.record(trial)
        kind = result.get("kind")
        for key in ("node", "started_at", "device", "torch_version"):
            if result.get(key) is not None:
                rec.info[key] = result[key]
        if kind == "epoch":
            for row in json.loads(result.get("epochs") or "[]"):
                rec.epochs[int(row["epoch"])] = {k: row.get(k) for k in EPOCH_FIELDS}
            rec.epochs[int(result["epoch"])] = {k: result.get(k) for k in EPOCH_FIELDS}
        elif kind in ("final", "failed"):
            rec.final = dict(result)
            for row in json.loads(result.get("history") or "[]"):
                rec.epochs[int(row["epoch"])] = {k: row.get(k) for k in EPOCH_FIELDS}
        if self.progress is not None and kind == "epoch":
            self.progress.on_epoch(trial.trial_id, rec, result)

    def on_complete(self, trial: Any) -> None:
        rec = self.records.get(trial.trial_id)
        if rec is None or rec.written:
            return
        if self._final_elsewhere(rec):
            _drop_checkpoints(trial)
            return
        if rec.final is not None and rec.final.get("kind") == "failed":
            self.write(rec, "failed", error=rec.final.get("error"))
        elif trial.trial_id in self.pruned:
            self.write(rec, "pruned")
        elif rec.final is not None:
            self.write(rec, rec.final.get("status") or "completed")
        # else: stopped before it ended (the run was interrupted): resumes next time
        if rec.written:
            _drop_checkpoints(trial)

    def on_error(self, trial: Any) -> None:
        rec = self.record(trial)
        if rec.written:
            return
        if self._final_elsewhere(rec):
            return
        error = None
        with contextlib.suppress(Exception):
            error = trial.get_error()
        if not error:
            error = getattr(trial, "error_msg", None) or "the trial's worker failed (no error text; see the Ray logs)"
        if self.phase == "restore" and "Could not recover from checkpoint" in str(error):
            # the interrupted run's state named a checkpoint Tune had already replaced: the
            # trial is not failed, it re-runs from scratch in this run's fresh phase
            log.warning("trial %s: its checkpoint is gone; re-running it from the start", rec.trial_id)
            rec.written = True  # nothing to write, and not unfinished
            return
        self.write(rec, "failed", error=str(error))
        if rec.written:
            _drop_checkpoints(trial)

    def _final_elsewhere(self, rec: TrialRecord) -> bool:
        """Whether the store already holds this trial as final although this Tune trial did
        not write it: a restored experiment's saved state lags behind the store, and Tune
        starts pending trials without asking the scheduler. Such a trial is never written
        again (a 'failed' row would replace its result) and does not count as unfinished."""
        if rec.trial_id not in self.final_ids:
            return False
        rec.written = True
        return True

    def write(self, rec: TrialRecord, status: str, error: str | None = None) -> None:
        epochs = [rec.epochs[e] for e in sorted(rec.epochs)]
        row = self.trial_row(rec, status, epochs, error)
        try:
            self.store.write_trial(self.spec.name, row, epochs)
        except Exception:
            log.exception("could not write trial %s to the store; it re-runs next time", rec.trial_id)
            return
        rec.written = True
        if status in FINAL_STATUSES:
            self.final_ids.add(rec.trial_id)
        summary = TrialSummary(
            trial_id=rec.trial_id, method=rec.config.get("method", "?"), width=float(rec.config.get("width", float("nan"))),
            status=status, epochs_run=int(row.get("epochs_run") or 0), train_seconds=float(row.get("train_seconds") or 0.0),
            best_val_acc=row.get("best_val_acc"), test_acc_at_best_val=row.get("test_acc_at_best_val"),
            node=row.get("node"), started_at=rec.info.get("started_at"), finished_at=time.time(),
        )
        self.summaries.append(summary)
        if self.progress is not None:
            self.progress.on_trial_end(summary)

    def trial_row(self, rec: TrialRecord, status: str, epochs: list[dict[str, Any]], error: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {"trial_id": rec.trial_id, "cell_id": rec.cell_id, "status": status}
        config = TrialConfig.model_validate(rec.config)
        row.update(config.model_dump())
        row["step_milestones"] = list(config.step_milestones)
        metrics: dict[str, Any] = {}
        final = rec.final if rec.final is not None and rec.final.get("kind") == "final" else None
        if final is not None:
            metrics = {k: final.get(k) for k in METRIC_FIELDS}
        else:
            metrics = _metrics_from_epochs(epochs)
        row.update(metrics)
        if row.get("diverged_epoch") is not None and isinstance(row["diverged_epoch"], float):
            row["diverged_epoch"] = None if math.isnan(row["diverged_epoch"]) else int(row["diverged_epoch"])
        source = final or rec.final or {}
        row["device"] = source.get("device") or rec.info.get("device")
        row["node"] = source.get("node") or rec.info.get("node")
        row["torch_version"] = source.get("torch_version") or rec.info.get("torch_version")
        row["started_at"] = source.get("started_at") or rec.info.get("started_at")
        row["finished_at"] = datetime.now(timezone.utc)
        row.update(self.provenance)
        row["error"] = error if status == "failed" else None
        return row


def _drop_checkpoints(trial: Any) -> None:
    """A trial in the store never resumes: free its checkpoints' disk now (a long sweep
    would otherwise keep two per finished trial until its end)."""
    try:
        import pyarrow.fs as pafs

        storage = trial.storage
        fs, folder = storage.storage_filesystem, storage.trial_fs_path
        for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"):
                fs.delete_dir(info.path)
    except Exception as err:  # disk hygiene only: never stop the sweep for it
        log.debug("could not delete the checkpoints of %s: %s", getattr(trial, "trial_id", "?"), err)


def _metrics_from_epochs(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of a trial that did not finish (pruned, failed): from its epoch rows."""
    out: dict[str, Any] = {"epochs_run": len(epochs)}
    if not epochs:
        return out
    last = epochs[-1]
    scored = [e for e in epochs if e.get("val_acc") is not None and math.isfinite(e["val_acc"])]
    best = max(scored, key=lambda e: e["val_acc"]) if scored else None
    out.update(
        val_acc=last.get("val_acc"), test_acc=last.get("test_acc"), train_loss=last.get("train_loss"), train_acc=last.get("train_acc"),
        best_val_acc=best["val_acc"] if best else None, best_epoch=best["epoch"] if best else None,
        test_acc_at_best_val=best["test_acc"] if best else None,
        train_seconds=float(sum(e.get("seconds") or 0.0 for e in epochs)),
    )
    return out


# ---- Tune objects (picklable: they find the runtime by key) ----------------------------------
def _callback_class() -> type:
    from ray.tune import Callback

    class SweepCallback(Callback):
        """Writes each trial to the store as it ends, and ticks the progress line."""

        def __init__(self, runtime_key: str):
            self.runtime_key = runtime_key

        def __getstate__(self) -> dict[str, Any]:
            return {"runtime_key": self.runtime_key}

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

        @property
        def runtime(self) -> SweepRuntime:
            return get_runtime(self.runtime_key)

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.runtime.on_start(trial)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            self.runtime.on_result(trial, result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.runtime.on_complete(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.runtime.on_error(trial)

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            progress = self.runtime.progress
            if progress is not None:
                progress.tick(trials)

        def get_state(self) -> dict | None:
            return None

    return SweepCallback


def trial_name(trial: Any) -> str:
    return f"{trial.config['trial']['method']}-{trial.config['trial_id'][:8]}"


def trial_dirname(trial: Any) -> str:
    return f"{trial.config['trial_id']}-{trial.trial_id.rsplit('_', 1)[-1]}"


# ---- Ray -------------------------------------------------------------------------------------
def _local_nodes(spec: SweepSpec) -> list[dict[str, float]]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    gpus = 0
    if spec.resources.gpu > 0:
        with contextlib.suppress(Exception):
            import torch

            gpus = torch.cuda.device_count()
    return [{"CPU": float(cpus), "GPU": float(gpus)}]


def _cluster_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def _check_address(address: str) -> str:
    """Token auth on for this driver (or RAY_AUTH_MODE=disabled said explicitly) and the
    cluster at `address` asked whether it lets us in: one clear ClusterError at once (no
    token, token refused, nothing there) instead of ray.init's retries. Returns the address
    to give ray.init."""
    from hidden_core.cluster import apply_auth_env, auth_env, check_cluster

    apply_auth_env(auth_env())
    info = check_cluster(address)
    return info.address if info is not None else address


def _start_ray(address: str | None, num_cpus: int | None = None, *, checked: bool = False) -> bool:
    """Start embedded Ray or connect to a cluster (`checked`: `address` already went through
    _check_address); True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        kwargs["runtime_env"] = {"env_vars": dict(WORKER_ENV)}
        ray.init(address=address if checked else _check_address(address), **kwargs)
    else:
        # local workers inherit the driver's environment; no runtime_env, so the workers
        # Ray starts with the cluster can host the trials
        for k, v in WORKER_ENV.items():
            os.environ.setdefault(k, v)
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    return True


def capacity(spec: SweepSpec, nodes: Iterable[dict[str, float]]) -> int:
    """How many trials fit on the cluster at once."""
    total = 0
    for node in nodes:
        fits = int(node.get("CPU", 0.0) // spec.resources.cpu + 1e-9)
        if spec.resources.gpu > 0:
            fits = min(fits, int(node.get("GPU", 0.0) // spec.resources.gpu + 1e-9))
        total += max(0, fits)
    return max(1, total)


def _load_data(configs: Iterable[TrialConfig], run_values: dict[str, Any]) -> dict[tuple, Any]:
    """One DataSplits per distinct data key, loaded once on the driver."""
    from hidden_core.config import RunOptions
    from hidden_core.data import load_data
    from hidden_core.tune.trainable import data_key

    run = RunOptions.model_validate(run_values)
    out: dict[tuple, Any] = {}
    for config in configs:
        key = data_key(config.model_dump())
        if key not in out:
            out[key] = load_data(config, run)
    return out


def _check_data(configs: Iterable[TrialConfig], run_values: dict[str, Any]) -> None:
    from hidden_core.config import RunOptions
    from hidden_core.data import check_data_available

    run = RunOptions.model_validate(run_values)
    seen = set()
    for config in configs:
        if config.dataset not in seen:
            seen.add(config.dataset)
            check_data_available(config, run)


def experiment_path(results_root: str, sweep: str) -> str:
    root = results_root.rstrip("/")
    if "://" not in root:
        root = os.path.abspath(root)
    return f"{root}/{sweep}/{EXPERIMENT_DIR}/{EXPERIMENT_NAME}"


def _restorable(path: str) -> bool:
    """Whether an interrupted run left a Tune experiment to restore (its tuner state and at
    least one saved experiment state)."""
    if "://" not in path:  # without importing Ray: the common "nothing to do" path stays fast
        folder = Path(path)
        return (folder / "tuner.pkl").exists() and any(folder.glob("experiment_state-*.json"))
    from ray import tune

    try:
        return bool(tune.Tuner.can_restore(path))
    except Exception:
        return False


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


# Tune's state files in an experiment folder; see repair_experiment_state
STATE_FILE_PREFIXES = ("experiment_state-", "search_gen_state-", "searcher-state-", "callback-states-", "basic-variant-state-", "tuner.pkl")


def _state_readable(name: str, data: bytes) -> bool:
    """Whether a Tune state file is whole: experiment_state-*.json is JSON, the rest are
    pickles (some named .json), checked opcode by opcode up to their STOP without loading them."""
    try:
        if name.startswith("experiment_state-"):
            json.loads(data)
        else:
            for _ in pickletools.genops(data):
                pass
    except Exception:
        return False
    return True


def repair_experiment_state(path: str) -> bool:
    """Before restoring an interrupted experiment: remove the state files a killed driver
    left half-written; False when what is left cannot be restored.

    Tune writes its state (experiment_state-*.json, its searcher's and callbacks' pickles)
    into a staging folder and copies it to the experiment folder without an atomic rename,
    often (after every few trial checkpoints). A driver killed during a copy leaves a
    truncated file, and Tune then fails the whole restore ("Failed to restore the run
    state") and starts the experiment over: the trials in flight lose their checkpoints.
    The sweep's searcher and callback keep nothing in those pickles (the runtime and the
    store hold the state), so a broken one is removed and the restore goes on without it;
    with no readable experiment_state or tuner.pkl there is nothing to restore."""
    import pyarrow.fs as pafs

    if "://" in path:
        fs, root = pafs.FileSystem.from_uri(path)
    else:
        fs, root = pafs.LocalFileSystem(), path
    kept: list[str] = []
    broken: list[str] = []
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type != pafs.FileType.File or not info.base_name.startswith(STATE_FILE_PREFIXES):
            continue
        with fs.open_input_stream(info.path) as f:
            data = f.readall()
        if _state_readable(info.base_name, data):
            kept.append(info.base_name)
        else:
            fs.delete_file(info.path)
            broken.append(info.base_name)
    if broken:
        log.warning("removed %d half-written Tune state file(s) of the interrupted run in %s: %s", len(broken), path, ", ".join(sorted(broken)))
    return "tuner.pkl" in kept and any(n.startswith("experiment_state-") for n in kept)


PLACEHOLDER = ".hidden_placeholder"


def fill_missing_checkpoints(path: str) -> int:
    """Before restoring an interrupted experiment: give back every checkpoint folder a trial
    of it had deleted (Tune keeps two per trial), as an empty placeholder.

    Tune's saved experiment state can lag behind a trial by a few checkpoints, so a killed
    driver's state may name checkpoints that were already replaced. Restoring from such a
    name fails ("does not exist on storage anymore") and deleting it logs an error. With a
    placeholder the trial restarts from its first epoch instead (the trainable treats an
    empty checkpoint as none), and the deletion finds its folder."""
    import pyarrow.fs as pafs

    if "://" in path:
        fs, root = pafs.FileSystem.from_uri(path)
    else:
        fs, root = pafs.LocalFileSystem(), path
    made = 0
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type != pafs.FileType.Directory:
            continue
        children = fs.get_file_info(pafs.FileSelector(info.path, allow_not_found=True))
        indices = {int(c.base_name.rsplit("_", 1)[1]) for c in children if c.base_name.startswith("checkpoint_") and c.base_name.rsplit("_", 1)[1].isdigit()}
        for index in range(max(indices, default=0)):
            if index not in indices:
                folder = f"{info.path}/checkpoint_{index:06d}"
                fs.create_dir(folder)
                with fs.open_output_stream(f"{folder}/{PLACEHOLDER}") as f:
                    f.write(b"replaced by a later checkpoint before the driver stopped\n")
                made += 1
    return made


def _remove_experiment(path: str) -> None:
    if "://" in path:
        with contextlib.suppress(Exception):
            import pyarrow.fs as pafs

            fs, fs_path = pafs.FileSystem.from_uri(path)
            fs.delete_dir(fs_path)
        return
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))  # the sweep's _tune folder, when nothing else is in it


# ---- the entry point -------------------------------------------------------------------------
def run_sweep(
    spec: SweepSpec | str | os.PathLike[str],
    results_root: str | os.PathLike[str] | None = None,
    address: str | None = None,
    *,
    study_storage: str | None = None,
    progress: bool | Any = True,
    skip_resource_check: bool = False,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
    train_fn: Callable[..., Any] | None = None,
    report_every_s: float | None = None,
    keep_ray: bool = False,
    out: Any = None,
) -> SweepReport:
    """Run every trial of `spec` that the store does not hold yet; return what happened.

    - `address`: a Ray cluster ('auto', 'ray://host:10001', 'host:6379'); None starts an
      embedded local Ray (`num_cpus` limits it).
    - `study_storage`: Optuna storage URL for the per-cell studies (default: the spec's
      `study_storage`, else SQLite next to the store).
    - `max_concurrent`: overrides the spec's max_concurrent.
    - `train_fn`: replaces the core train (same signature) - for tests and benchmarks.
    - `report_every_s`: overrides the spec's report_every_s (seconds between a trial's
      reports, each with a checkpoint; 0 = every epoch).
    - `keep_ray`: leave the embedded Ray running afterwards (benchmarks running several
      sweeps in one process).
    """
    started = time.perf_counter()
    out = out if out is not None else sys.stdout
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    results_root = os.fspath(results_root) if results_root is not None else default_results_root()
    plan = spec.plan()
    store = ResultStore(results_root)
    todo = plan_todo(spec, store)
    report = SweepReport(sweep=spec.name, planned=plan.total, skipped=todo.skipped, to_run=todo.count)
    exp_path = experiment_path(results_root, spec.name)
    restorable = _restorable(exp_path)
    if restorable and not repair_experiment_state(exp_path):
        log.warning("the interrupted run of %s left no readable Tune state in %s; its unfinished trials start over", spec.name, exp_path)
        _remove_experiment(exp_path)
        restorable = False
    if todo.count == 0 and not restorable:
        report.wall_seconds = time.perf_counter() - started
        return report

    from hidden_core.tune.trackers import tracker_callbacks

    trackers = tracker_callbacks(spec.loggers, results_root, spec.name)  # a missing extra fails here, before Ray
    for k, v in TUNE_ENV.items():
        os.environ.setdefault(k, v)
    # with the per-trial loggers off, Tune's end-of-run analysis has no files to read
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    run_values = spec.run_options().model_dump(mode="json")
    configs = [t.config for t in todo.trials] + [p.template for p, _ in todo.points]
    _check_data(configs, run_values)
    if address is None and not skip_resource_check:
        check_resources(spec, _local_nodes(spec))

    # Ray start-up and data loading overlap: the data thread imports torch and builds the
    # splits while the Ray processes come up.
    data_box: dict[str, Any] = {}

    def load() -> None:
        try:
            data_box["data"] = _load_data(configs, run_values)
        except BaseException as err:  # re-raised in the main thread
            data_box["error"] = err

    # a cluster that will not let this driver in fails here, before any data is built
    checked = False
    if address and not _ray_initialized():
        address, checked = _check_address(address), True
    loader = threading.Thread(target=load, name="hidden-data", daemon=True)
    loader.start()
    started_ray = False
    try:
        started_ray = _start_ray(address, num_cpus, checked=checked)
        import ray
        from ray import tune

        nodes = _cluster_nodes()
        if not skip_resource_check:
            check_resources(spec, nodes)
        loader.join()
        if "error" in data_box:
            raise data_box["error"]
        data_refs = {key: ray.put(splits) for key, splits in data_box.pop("data").items()}
        report.concurrency = max(1, max_concurrent or spec.max_concurrent or capacity(spec, nodes))
        if not restorable:
            report.concurrency = min(report.concurrency, max(todo.count, 1))
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(report.concurrency)

        studies = None
        if spec.pruner.enabled or spec.search:
            from hidden_core.tune.pruning import CellStudies, default_study_storage

            url = study_storage or spec.study_storage or default_study_storage(results_root, spec.name)
            studies = CellStudies(spec, url)
        from hidden_core.tune.progress import Progress

        # the Tune objects pickled into the experiment folder carry this key: a restored
        # experiment's copies find the new run's runtime by it
        key = f"{spec.name}@{os.path.dirname(exp_path)}"
        progress_obj = progress if (progress is not None and not isinstance(progress, bool)) else (Progress(spec, out=out) if progress else None)
        runtime = SweepRuntime(spec, store, key, studies=studies, run_values=run_values, provenance=provenance(), progress=progress_obj)
        if report_every_s is not None:
            runtime.report_every_s = float(report_every_s)
        runtime.load(todo)
        _RUNTIMES[key] = runtime
        report.startup_seconds = time.perf_counter() - started

        from hidden_core.tune.trainable import sweep_trainable

        trainable = tune.with_parameters(sweep_trainable, data_refs=data_refs, train_fn=train_fn)
        trainable = tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        try:
            if progress_obj is not None:
                progress_obj.start(todo.count, report.concurrency)
            if restorable:
                runtime.phase = "restore"
                if progress_obj is not None:
                    progress_obj.message(f"resuming the interrupted run of {spec.name} from {exp_path}")
                fill_missing_checkpoints(exp_path)
                fit_started = time.perf_counter()
                tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True)
                tuner.fit()
                report.fit_seconds += time.perf_counter() - fit_started
                report.restored = len(runtime.summaries)
                if _unfinished(runtime) == 0:
                    _remove_experiment(exp_path)
                else:
                    report.unfinished = _unfinished(runtime)
                    return report
                todo = plan_todo(spec, store)
                runtime.load(todo)
                report.to_run = report.restored + todo.count
            if todo.count:
                runtime.phase = "fresh"
                if studies is not None:
                    studies.fail_stale(runtime.wanted_cells | {t.cell_id for t in todo.trials})
                _remove_experiment(exp_path)
                fit_started = time.perf_counter()
                tuner = tune.Tuner(
                    trainable,
                    tune_config=tune.TuneConfig(
                        search_alg=_searcher(key),
                        scheduler=_scheduler(key),
                        num_samples=todo.count,
                        max_concurrent_trials=report.concurrency,
                        reuse_actors=True,
                        trial_name_creator=trial_name,
                        trial_dirname_creator=trial_dirname,
                    ),
                    run_config=tune.RunConfig(
                        name=EXPERIMENT_NAME,
                        storage_path=os.path.dirname(exp_path),
                        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                        callbacks=[_callback_class()(key), *trackers],
                        verbose=0,
                    ),
                )
                tuner.fit()
                report.fit_seconds += time.perf_counter() - fit_started
                report.unfinished = _unfinished(runtime)
                if report.unfinished == 0:
                    _remove_experiment(exp_path)
        finally:
            report.trials = list(runtime.summaries)
            if progress_obj is not None:
                progress_obj.finish()
            _RUNTIMES.pop(key, None)
    finally:
        loader.join()
        if started_ray and not keep_ray:
            import ray

            ray.shutdown()
        report.wall_seconds = time.perf_counter() - started
    return report


def _unfinished(runtime: SweepRuntime) -> int:
    """Trials this run started that did not reach the store: the next run resumes them. One
    the store holds as final does not count (a restored experiment may start a trial its
    lagging state still had running, and then stop it unwritten)."""
    count = 0
    for ray_id in runtime.started:
        rec = runtime.records.get(ray_id)
        if rec is None or (not rec.written and rec.trial_id not in runtime.final_ids):
            count += 1
    return count


def _searcher(key: str) -> Any:
    from hidden_core.tune.search import SweepSearcher

    return SweepSearcher(key)


def _scheduler(key: str) -> Any:
    from hidden_core.tune.pruning import PruningScheduler

    return PruningScheduler(key)


def describe_todo(spec: SweepSpec, todo: Todo) -> list[str]:
    """Dry-run lines: the count per axis and the trials that would run."""
    plan = spec.plan()
    lines = [f"sweep {spec.name}: {plan.total} trials planned ({plan.combinations} grid combinations"
             + (f", {plan.duplicates} collapsed by normalization" if plan.duplicates else "") + ")"]
    for axis, n in plan.axes.items():
        values = ", ".join(_short(v, axis) for v in spec.grid[axis])
        lines.append(f"  {axis:<16} {n:>3} values: {values}")
    if spec.search:
        lines.append(f"  search: {', '.join(spec.search)} - {spec.samples_per_cell} samples per grid point ({spec.sampler} sampler), {len(plan.points)} points")
    lines.append(f"  skipped (already final in the store): {todo.skipped}")
    lines.append(f"  would run: {todo.count}")
    for t in todo.trials:
        point = " ".join(f"{a}={_short(v, a)}" for a, v in t.point)  # the axis values only
        lines.append(f"    {t.trial_id}  {point}")
    for p, n in todo.points:
        point = " ".join(f"{a}={_short(v, a)}" for a, v in p.point)
        lines.append(f"    {n} x sample({', '.join(p.space)})  cell {p.cell_id}  {point}")
    return lines


def _short(value: Any, axis: str) -> str:
    if isinstance(value, dict):
        extra = ", ".join(f"{k}={_short(v, k)}" for k, v in value.items() if k != axis)
        return _short(value.get(axis), axis) + (f" ({extra})" if extra else "")
    return f"{value:g}" if isinstance(value, float) else str(value)


def require_spec(path: str) -> SweepSpec:
    """A spec path, or the name of a file in the repository's sweeps/ folder."""
    candidate = Path(path)
    if candidate.exists():
        return load_spec(candidate)
    for folder in (Path.cwd() / "sweeps", Path(__file__).resolve().parents[2] / "sweeps"):
        for name in (path, f"{path}.yaml"):
            if (folder / name).exists():
                return load_spec(folder / name)
    raise ConfigError([f"{path}: no such spec file (nor sweeps/{path}.yaml)"])
