"""The controls pass as Ray tasks (the Ray part of hidden_core/tune/controls_pass.py).

    report = controls_tasks.run(spec, store, data_refs=data_refs, out=out)   # Ray is up

One task per trial, on the sweep's per-trial resources (`resources.cpu` CPUs; a GPU share
when the controls run on CUDA), as many at once as the cluster holds. The driver reads each
trial's subnet file from the store and sends its bytes (a cluster's nodes need not see the
store's folder); the data comes from the object store (the sweep's own references, fetched
once per worker process), else the task loads it. Outcomes are gathered as they finish
(ray.wait) and recorded by the driver, the store's only writer (controls_pass.record), so a
killed pass loses at most the trials in flight. Scoring is controls_pass.score_trial, the
in-process pass's own, seeded by trial and draw: both ways write the same rows.

At most twice the tasks that fit run or wait at once, so the driver holds only their files.

A worker pays its start (a new process importing torch: WORKER_START_S) before its first
trial, which a small pass never earns back (2 small trials: 0.2 s in the driver, 6.7 s as
tasks on the loaded 2-core machine). So on the CPU the driver, already warm, scores the
first trials itself, timing them (PROBE_TRIALS at least), and sends the rest to tasks as soon as
`worth_tasks` says they end sooner that way (on a GPU device every trial is a task: the driver may have no GPU).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from hidden_core import paths
from hidden_core.spec import SweepSpec
from hidden_core.store import ResultStore
from hidden_core.tune import controls_pass
from hidden_core.tune.controls_pass import ControlsPassReport, ControlsWork, TrialOutcome
from hidden_core.tune.sweep_data import data_key

_DATA_CACHE: dict[tuple, Any] = {}  # a worker process's splits, by data key (a sweep's tasks share them)
_MAX_CACHED = 4  # data keys kept per worker: memory bounded on many-dataset sweeps


@dataclass(frozen=True)
class TaskPlan:
    """What each controls task reserves and the device it evaluates on."""

    num_cpus: float
    num_gpus: float
    device: str  # as the task sees it: 'cuda' is the GPU Ray gave it
    threads: int  # torch CPU threads: the task's whole CPUs, at least one


def task_plan(spec: SweepSpec, cluster_gpus: float) -> TaskPlan:
    """The trial's resources for each task. The device is `subnet_controls.device`: 'cuda'
    or 'cuda:N' reserves a GPU share (the trials' `resources.gpu`, else a whole GPU) and
    uses the GPU Ray assigns; 'auto' does the same where the cluster has a GPU, else runs on
    the CPU (a task uses no GPU it did not reserve); 'cpu' and 'mps' reserve none."""
    device = spec.subnet_controls.device
    cuda = device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)
    share = (spec.resources.gpu or 1.0) if cuda else 0.0
    resolved = "cuda" if cuda else ("cpu" if device == "auto" else device)
    return TaskPlan(num_cpus=spec.resources.cpu, num_gpus=share, device=resolved, threads=spec.resources.threads)


def in_flight_limit(plan: TaskPlan, nodes: list[dict[str, float]]) -> int:
    """Twice the tasks the nodes hold at once: the next ones wait queued, not in the driver."""
    from hidden_core.tune.ray_setup import capacity

    return 2 * capacity(SimpleNamespace(resources=SimpleNamespace(cpu=plan.num_cpus, gpu=plan.num_gpus)), nodes)


def fits(plan: TaskPlan, nodes: list[dict[str, float]]) -> bool:
    """Whether some node can hold one task (a GPU share needs a node with a GPU: a task no
    node can hold would wait for ever)."""
    return any(n.get("CPU", 0.0) + 1e-9 >= plan.num_cpus and n.get("GPU", 0.0) + 1e-9 >= plan.num_gpus for n in nodes)


WAIT_S = 0.25  # how often the gathering loop asks `stop` while it waits
# What a task's worker costs before its first trial: a new process importing torch and this
# package (1.6 + 0.5 s on an idle core, 5-10 s on the loaded 2-core machine, where every
# trial a task took 8-10 s longer than the driver's pass) and fetching the data. On the CPU
# the pass scores trials in the driver (warm: torch, the data) while `worth_tasks` says that
# is sooner; 0 sends every trial to a task at once.
WORKER_START_S = 8.0
PROBE_TRIALS = 3  # trials the driver times before deciding (their median: trials differ in size)


def worth_tasks(rest: int, seconds_per_trial: float, slots: int) -> bool:
    """Whether `rest` trials of `seconds_per_trial` each end sooner as tasks, `slots` at
    once after WORKER_START_S, than one at a time in the driver."""
    return rest * seconds_per_trial * (1 - 1 / max(slots, 1)) > WORKER_START_S


def run(spec: SweepSpec, store: ResultStore, *, data_refs: dict[tuple, Any] | None = None, out: Any = None,
        stop: Callable[[], bool] = lambda: False) -> ControlsPassReport:
    """controls_pass.run with the trials evaluated as Ray tasks (Ray must be up). `stop()`
    true (the driver got SIGINT / SIGTERM): no more is gathered, the tasks still out are
    cancelled, and the rows written so far stay."""
    from hidden_core.tune.ray_setup import cluster_nodes

    if spec.subnet_controls is None:
        return ControlsPassReport()
    nodes = cluster_nodes()
    plan = task_plan(spec, sum(n.get("GPU", 0.0) for n in nodes))
    if not fits(plan, nodes):  # e.g. device cuda on a cluster without a GPU: the driver's pass, as before tasks
        return controls_pass.run(spec, store, out=out, how=f"in this process: no node holds a task of {plan.num_cpus:g} CPU, {plan.num_gpus:g} GPU")
    limit = in_flight_limit(plan, nodes)
    slots = limit // 2
    tasks = f"Ray tasks of {plan.num_cpus:g} CPU{f', {plan.num_gpus:g} GPU' if plan.num_gpus else ''}, up to {slots} at once"
    # the driver can score CPU trials as a task would (same device, same threads, same rows)
    probing = WORKER_START_S > 0 and plan.device == "cpu"
    sent = [0]

    def evaluate(spec: SweepSpec, store: ResultStore, work: list[ControlsWork]) -> Iterator[TrialOutcome]:
        rest, seconds = list(work), []
        # decided on the median of PROBE_TRIALS trials, not the first alone: it also pays the driver's imports of the scoring code
        while rest and probing and not stop() and not (len(seconds) >= PROBE_TRIALS and worth_tasks(len(rest), statistics.median(seconds), slots)):
            here = controls_pass.in_process(spec, store, [rest.pop(0)], threads=plan.threads, device=plan.device)
            started = time.perf_counter()
            outcome = next(here)
            seconds.append(time.perf_counter() - started)
            here.close()
            yield outcome
        if rest and not stop():
            if seconds:
                print(f"controls: the other {len(rest)} trials as {tasks} ({statistics.median(seconds):.2f} s a trial here)", file=out or sys.stdout, flush=True)
            sent[0] = len(rest)
            yield from gather(spec, store, rest, plan, limit, data_refs or {}, stop)

    how = f"in this process while that is sooner, else {tasks}" if probing else tasks
    report = controls_pass.run(spec, store, out=out, evaluate=evaluate, how=how)
    report.at_once = max(1, min(slots, sent[0]))
    return report


def gather(spec: SweepSpec, store: ResultStore, work: list[ControlsWork], plan: TaskPlan, limit: int,
           data_refs: dict[tuple, Any], stop: Callable[[], bool] = lambda: False) -> Iterator[TrialOutcome]:
    """Submit a task per trial (at most `limit` not yet gathered) and yield each outcome as
    it finishes. A task that Ray itself lost (its worker died, retries spent) is that
    trial's problem. Leaving early (`stop()` true, an exception) cancels the tasks still out."""
    import ray

    task = ray.remote(evaluate_task).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)
    data_root = spec.run_options().data_root
    queue = list(reversed(work))
    out: dict[Any, ControlsWork] = {}
    try:
        while queue or out:
            if stop():
                return
            while queue and len(out) < limit:
                item = queue.pop()
                path = store.subnet_path(spec.name, item.trial_id)
                try:
                    with store.fs.open_input_stream(path) as src:
                        blob = src.read()
                except OSError as err:
                    yield TrialOutcome(item.trial_id, problem=controls_pass.problem_text(err))
                    continue
                out[task.remote(item, path, blob, plan.device, plan.threads, data_root, data_refs)] = item
            if not out:
                continue
            ready, _ = ray.wait(list(out), num_returns=1, timeout=WAIT_S)
            if not ready:
                continue
            item = out.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except (ray.exceptions.RayError, OSError) as err:
                outcome = TrialOutcome(item.trial_id, problem=controls_pass.problem_text(err))
            yield outcome
    finally:
        for ref in out:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


def evaluate_task(item: ControlsWork, path: str, blob: bytes, device: str, threads: int, data_root: str | None,
                  data_refs: dict[tuple, Any]) -> TrialOutcome:
    """One trial's controls in a Ray worker: its file written to a temporary local copy
    (safetensors reads files), scored by controls_pass.score_trial. Messages name the
    store's file, not the copy."""
    import torch

    from hidden_core.subnet.fileformat import read_subnet_file

    torch.set_num_threads(threads)
    fd, local = tempfile.mkstemp(suffix=paths.SUBNET_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as dst:
            dst.write(blob)
        del blob
        outcome = controls_pass.score_trial(item, path, lambda: read_subnet_file(local), device, data_root,
                                            data_for=lambda config: _splits(config, data_refs))
    finally:
        os.unlink(local)
    if outcome.problem is not None:
        outcome.problem = outcome.problem.replace(local, path)
    return outcome


def _splits(config: Any, data_refs: dict[tuple, Any]) -> Any:
    """The trial's DataSplits from the sweep's object-store references (once per worker
    process), or None (the Evaluator loads it: a trial of an earlier run on other data)."""
    key = data_key(config.model_dump())
    if key not in _DATA_CACHE:
        ref = data_refs.get(key)
        if ref is None:
            return None
        import ray

        if len(_DATA_CACHE) >= _MAX_CACHED:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = ray.get(ref)
    return _DATA_CACHE[key]
