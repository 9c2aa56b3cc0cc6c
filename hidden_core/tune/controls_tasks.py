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

A worker pays its start (a new process importing torch) before its first trial, which a
small pass never earns back (2 small trials: 0.2 s in the driver, 6.7 s as tasks on the
loaded 2-core machine). So on the CPU the driver, already warm, scores trials too, from the
other end of the list, whenever it is free: a pass ends no later than the driver alone
would end it (the workers' start only competes for cores), and the tasks add their cores as
they come up. On a GPU device only tasks score (the driver may have no GPU).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from hidden_core import paths
from hidden_core.spec import SweepSpec
from hidden_core.store import ResultStore
from hidden_core.tune import controls_pass
from hidden_core.tune.controls_pass import ControlsPassReport, ControlsWork, TrialOutcome
from hidden_core.tune.sweep_data import worker_splits


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
# Whether the driver scores trials too, on the CPU: it is warm (torch, the data loaded) while
# a task's worker first starts a process and imports torch (2-3 s on an idle core, 5-10 s on
# the loaded 2-core machine), which a small pass never earns back. False: only tasks.
DRIVER_SCORES = True


def run(spec: SweepSpec, store: ResultStore, *, data_refs: dict[tuple, Any] | None = None, out: Any = None,
        stop: Callable[[], bool] = lambda: False,
        scoring_here: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> ControlsPassReport:
    """controls_pass.run with the trials evaluated as Ray tasks (Ray must be up). `stop()`
    true (the driver got SIGINT / SIGTERM): no more is gathered, the tasks still out are
    cancelled, and the rows written so far stay. The driver scores its own trials inside
    `scoring_here()` (the runner's: a signal then interrupts the trial at once)."""
    from hidden_core.tune.ray_setup import cluster_nodes

    if spec.subnet_controls is None:
        return ControlsPassReport()
    nodes = cluster_nodes()
    plan = task_plan(spec, sum(n.get("GPU", 0.0) for n in nodes))
    if not fits(plan, nodes):  # e.g. device cuda on a cluster without a GPU: the driver's pass, as before tasks
        with scoring_here():
            return controls_pass.run(spec, store, out=out, how=f"in this process: no node holds a task of {plan.num_cpus:g} CPU, {plan.num_gpus:g} GPU")
    limit = in_flight_limit(plan, nodes)
    slots = limit // 2
    tasks = f"Ray tasks of {plan.num_cpus:g} CPU{f', {plan.num_gpus:g} GPU' if plan.num_gpus else ''}, up to {slots} at once"
    driver = None
    if DRIVER_SCORES and plan.device == "cpu":  # the driver scores as a task does (same device, threads, rows); it may have no GPU

        def driver(item: ControlsWork) -> TrialOutcome:
            here = controls_pass.in_process(spec, store, [item], threads=plan.threads, device=plan.device)
            try:
                with scoring_here():
                    return next(here)
            finally:
                here.close()

    counts = {"sent": 0}

    def evaluate(spec: SweepSpec, store: ResultStore, work: list[ControlsWork]) -> Iterator[TrialOutcome]:
        return gather(spec, store, work, plan, limit, data_refs or {}, stop, driver=driver, counts=counts)

    how = f"{tasks}, and this process meanwhile" if driver is not None else tasks
    report = controls_pass.run(spec, store, out=out, evaluate=evaluate, how=how)
    report.at_once = max(1, min(slots, counts["sent"]) + (1 if driver is not None else 0))
    return report


def gather(spec: SweepSpec, store: ResultStore, work: list[ControlsWork], plan: TaskPlan, limit: int,
           data_refs: dict[tuple, Any], stop: Callable[[], bool] = lambda: False,
           driver: Callable[[ControlsWork], TrialOutcome] | None = None, counts: dict[str, int] | None = None) -> Iterator[TrialOutcome]:
    """Yield each trial's outcome as it is ready: tasks (at most `limit` not yet gathered)
    take trials from the end of `work`; `driver`, when given, scores one from the front
    whenever it is free, so it never waits for a worker: with none left, it takes back the
    task submitted last (cancelled; before any task has ended, whichever it is, since the
    workers may still be starting; after, only one still queued). A task that Ray itself
    lost (its worker died, retries spent) is that trial's problem. Leaving early (`stop()`
    true, an exception) cancels the tasks still out."""
    import ray

    task = ray.remote(evaluate_task).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)
    data_root = spec.run_options().data_root
    queue = deque(work)
    out: dict[Any, ControlsWork] = {}
    counts = counts if counts is not None else {}
    counts.setdefault("sent", 0)
    slots, warm = max(1, limit // 2), False
    try:
        while (queue or out) and not stop():
            while len(queue) > (1 if driver is not None else 0) and len(out) < limit:  # one trial at least stays for the driver
                item = queue.pop()
                path = store.subnet_path(spec.name, item.trial_id)
                try:
                    with store.fs.open_input_stream(path) as src:
                        blob = src.read()
                except OSError as err:
                    yield TrialOutcome(item.trial_id, problem=controls_pass.problem_text(err))
                    continue
                out[task.remote(item, path, blob, plan.device, plan.threads, data_root, data_refs)] = item
                counts["sent"] += 1
            if not out and not queue:
                break
            free = driver is not None and (queue or (out and (not warm or len(out) > slots)))
            ready = ray.wait(list(out), num_returns=len(out), timeout=0 if free else WAIT_S)[0] if out else []
            for ref in ready:
                item = out.pop(ref)
                warm = True
                try:
                    outcome = ray.get(ref)
                except (ray.exceptions.RayError, OSError) as err:
                    outcome = TrialOutcome(item.trial_id, problem=controls_pass.problem_text(err))
                yield outcome
            if not free or stop():
                continue
            if queue:
                item = queue.popleft()
            elif out and (not warm or len(out) > slots):
                ref, item = out.popitem()  # the one submitted last
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            else:
                continue
            yield driver(item)
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
                                            data_for=lambda config: worker_splits(config.model_dump(), data_refs))
    finally:
        os.unlink(local)
    if outcome.problem is not None:
        outcome.problem = outcome.problem.replace(local, path)
    return outcome
