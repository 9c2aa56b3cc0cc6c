"""hidden_core/tune/controls_tasks.py without a Ray (tests/test_subnet_controls_sweep_e2e.py
runs it in a real sweep and checks its rows against the in-process pass): what a task
reserves and sees per subnet_controls.device, the task body (the same rows as the in-process
pass, the sweep's data fetched once per worker, messages naming the store's file), the
gathering loop on a stand-in Ray (at most `limit` out, outcomes in finishing order, a lost
task is its trial's problem, tasks still out cancelled when the pass stops), and
controls_pass.run recording each outcome as it arrives."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import types

import pytest

from hidden_core.config import make_config
from hidden_core.methods import build_model
from hidden_core.paths import trial_subnet_path
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.subnet.state import save_subnet
from hidden_core.tune import controls_pass, controls_tasks, sweep_data
from hidden_core.tune.controls_pass import TrialOutcome

BASE = {"name": "s", "base": {"dataset": "digits", "epochs": 4, "width": 0.3}, "grid": {"method": ["edge_popup", "sign_flip"]}}
COLUMNS = ["trial_id", "control", "draw", "val_acc", "test_acc", "device"]


def _spec(device: str = "cpu", **resources):
    return parse_spec({**BASE, "subnet_controls": {"draws": 1, "device": device}, **({"resources": resources} if resources else {})})


def _store(root, methods=("edge_popup", "sign_flip"), seeds=(0,)) -> ResultStore:
    """Final trials of sweep 's' with subnet files (untrained networks: enough to score)."""
    store = ResultStore(root, compact_every=None)
    for method in methods:
        for seed in seeds:
            config = make_config(dataset="digits", width=0.3, epochs=4, method=method, seed=seed)
            store.write_trial("s", {"trial_id": config.trial_id, "cell_id": method, "status": "completed", "val_acc": 0.5, "test_acc": 0.4,
                                    **config.model_dump()})
            save_subnet(trial_subnet_path(store.root, "s", config.trial_id), build_model(config), config)
    return store


def _rows(store: ResultStore):
    return store.load_controls("s")[COLUMNS].sort_values(COLUMNS[:3]).reset_index(drop=True)


# ---- what a task reserves ---------------------------------------------------------------------
@pytest.mark.parametrize(("device", "resources", "gpus", "plan"), [
    ("cpu", {}, 0, (1, 0, "cpu", 1)),
    ("cpu", {"cpu": 2}, 4, (2, 0, "cpu", 2)),  # cpu asked: no GPU reserved where there are some
    ("auto", {"cpu": 0.5}, 0, (0.5, 0, "cpu", 1)),  # auto without a GPU in the cluster: the CPU
    ("auto", {}, 2, (1, 1, "cuda", 1)),  # auto with GPUs: a whole GPU for CPU trials
    ("auto", {"gpu": 0.25}, 2, (1, 0.25, "cuda", 1)),  # the trials' GPU share
    ("cuda:1", {"gpu": 0.5}, 2, (1, 0.5, "cuda", 1)),  # the GPU Ray assigns is the task's cuda
    ("mps", {}, 0, (1, 0, "mps", 1)),
])
def test_task_plan_follows_the_sweep_resources_and_the_controls_device(device, resources, gpus, plan):
    got = controls_tasks.task_plan(_spec(device, **resources), gpus)
    assert (got.num_cpus, got.num_gpus, got.device, got.threads) == plan


def test_in_flight_limit_is_twice_what_the_nodes_hold():
    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    assert controls_tasks.in_flight_limit(controls_tasks.TaskPlan(1, 0, "cpu", 1), nodes) == 20
    assert controls_tasks.in_flight_limit(controls_tasks.TaskPlan(2, 0.5, "cuda", 2), nodes) == 4  # 2 on the one GPU node
    assert controls_tasks.in_flight_limit(controls_tasks.TaskPlan(4, 0, "cpu", 4), [{"CPU": 2.0}]) == 2  # never 0


def test_a_task_no_node_holds_is_never_submitted(tmp_path, monkeypatch):
    """device cuda on a cluster without a GPU: the task would wait for ever; the pass runs in
    the driver instead (as before tasks), and says so."""
    plan = controls_tasks.task_plan(_spec("cuda"), 0)
    assert not controls_tasks.fits(plan, [{"CPU": 16.0}]) and controls_tasks.fits(plan, [{"CPU": 16.0}, {"CPU": 1.0, "GPU": 1.0}])
    assert controls_tasks.fits(controls_tasks.task_plan(_spec("cpu", cpu=2), 0), [{"CPU": 2.0}])
    from hidden_core.tune import ray_setup

    monkeypatch.setattr(ray_setup, "cluster_nodes", lambda: [{"CPU": 4.0}])
    monkeypatch.setattr(controls_tasks, "gather", lambda *a: pytest.fail("a task was submitted"))
    store = _store(tmp_path / "r", methods=("edge_popup",))
    out = io.StringIO()
    report = controls_tasks.run(_spec("cuda"), store, out=out)
    assert "in this process: no node holds a task of 1 CPU, 1 GPU" in out.getvalue() and report.at_once == 1
    assert report.trials + len(report.skipped) == 1  # scored, or skipped where this machine has no CUDA


def test_the_driver_scores_beside_the_tasks_on_the_cpu_only(tmp_path, monkeypatch):
    """On the CPU the driver scores trials beside the tasks, as a task would (the rows of a
    trial it scores are a task's: same device and threads), inside the runner's
    `scoring_here` (a signal interrupts it at once); on a GPU device, or with
    DRIVER_SCORES off, only tasks do (the driver may have no GPU)."""
    from hidden_core.tune import ray_setup

    monkeypatch.setattr(ray_setup, "cluster_nodes", lambda: [{"CPU": 2.0, "GPU": 1.0}])
    seen = []

    def gather(spec, store, work, plan, limit, data_refs, stop, driver, counts):
        seen.append((plan.device, driver))
        counts["sent"] = len(work) - 1
        return iter([driver(work[0]), *[TrialOutcome(w.trial_id, problem="sent") for w in work[1:]]] if driver else [])

    monkeypatch.setattr(controls_tasks, "gather", gather)
    store = _store(tmp_path / "r", methods=("edge_popup",), seeds=(0, 1, 2))
    out, entered = io.StringIO(), []

    @contextlib.contextmanager
    def scoring_here():  # the runner's: signals raise at once while the driver scores
        entered.append("in")
        yield
        entered.append("out")

    report = controls_tasks.run(_spec("cpu"), store, out=out, scoring_here=scoring_here)
    assert report.trials == 1 and len(report.skipped) == 2 and report.at_once == 3  # 2 tasks and the driver
    assert entered == ["in", "out"]  # around the driver's one trial
    assert "device cpu, Ray tasks of 1 CPU, up to 2 at once, and this process meanwhile)" in out.getvalue()
    assert store.load_controls("s")["device"].tolist() == ["cpu"] * 4  # found + 3 controls, scored in this process on the task's device
    controls_tasks.run(_spec("cuda"), store, out=io.StringIO())
    monkeypatch.setattr(controls_tasks, "DRIVER_SCORES", False)
    controls_tasks.run(_spec("cpu"), store, out=io.StringIO())
    assert [(d, f is not None) for d, f in seen] == [("cpu", True), ("cuda", False), ("cpu", False)]


# ---- the task body ----------------------------------------------------------------------------
def test_task_body_gives_the_in_process_rows_and_fetches_the_sweep_data_once(tmp_path, monkeypatch):
    spec = _spec()
    reference = _store(tmp_path / "ref")
    controls_pass.run(spec, reference, out=io.StringIO())
    store = _store(tmp_path / "r")
    work = controls_pass.pending(spec, store)
    assert len(work) == 2

    from hidden_core.data import load_data

    splits = load_data(make_config(dataset="digits"))
    fetched = []
    fake_ray = types.SimpleNamespace(get=lambda ref: fetched.append(ref) or splits, init=_no_init)
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setattr(sweep_data, "_WORKER_SPLITS", {})
    refs = {("digits", make_config().val_fraction, make_config().split_seed): "the-ref"}
    outcomes = []
    for item in work:
        path = store.subnet_path("s", item.trial_id)
        blob = open(path, "rb").read()
        outcomes.append(controls_tasks.evaluate_task(item, path, blob, "cpu", 1, None, refs))
    assert fetched == ["the-ref"]  # once for both trials: the worker keeps it
    assert all(o.problem is None and o.device == "cpu" for o in outcomes)
    report = controls_pass.run(spec, store, out=io.StringIO(), evaluate=lambda *_: iter(outcomes[::-1]))
    assert (report.trials, report.rows) == (2, 4 + 5)
    assert _rows(store).equals(_rows(reference))


def test_task_body_names_the_store_file_and_leaves_no_copy(tmp_path, mkstemp_calls):
    store = _store(tmp_path / "r", methods=("edge_popup",))
    [item] = controls_pass.pending(_spec(), store)
    path = store.subnet_path("s", item.trial_id)
    blob = bytearray(open(path, "rb").read())
    blob[-1] ^= 0xFF  # a flipped bit in the last tensor
    copies = mkstemp_calls
    outcome = controls_tasks.evaluate_task(item, path, bytes(blob), "cpu", 1, None, {})
    assert outcome.rows == [] and f"subnet file {path}: " in outcome.problem and "sha256 does not match" in outcome.problem
    assert len(copies) == 1 and copies[0] not in outcome.problem and not os.path.exists(copies[0])


# ---- the gathering loop on a stand-in Ray ---------------------------------------------------------
class _RayError(Exception):
    pass


def _no_init(*args, **kwargs):  # a stand-in Ray is never started (tests/conftest.py's guard looks at ray.init)
    pytest.fail("the stand-in Ray was started")


class _FakeRay:
    """Tasks run when submitted; ray.wait hands them back in the order `finish` gives
    (by trial_id's position in it), so the loop's own order is what is tested."""

    def __init__(self, finish: list[str], lost: set[str] = frozenset(), never: set[str] = frozenset()):
        self.finish, self.lost, self.never = finish, lost, never  # never: tasks that do not end (workers still starting)
        self.results, self.out, self.most_out, self.cancelled = {}, [], 0, []
        self.exceptions = types.SimpleNamespace(RayError=_RayError)
        self.init = _no_init

    def remote(self, fn):
        ray = self

        class Task:
            def options(self, **_):
                return self

            def remote(self, item, *args):
                ref = f"ref-{item.trial_id}"
                ray.results[ref] = (item, fn(item, *args))
                ray.out.append(ref)
                ray.most_out = max(ray.most_out, len(ray.out))
                return ref

        return Task()

    def wait(self, refs, num_returns, timeout):
        ending = [r for r in refs if self.results[r][0].trial_id not in self.never]
        if not ending:
            return [], refs
        first = min(ending, key=lambda r: self.finish.index(self.results[r][0].trial_id))
        self.out.remove(first)
        return [first], [r for r in refs if r != first]

    def get(self, ref):
        item, outcome = self.results[ref]
        if item.trial_id in self.lost:
            raise _RayError("the worker died")
        return outcome

    def cancel(self, ref, force=False):
        self.cancelled.append(ref)
        if ref in self.out:
            self.out.remove(ref)


def _outcome(item, path, blob, device, threads, data_root, data_refs):
    return TrialOutcome(item.trial_id, rows=[{"control": "found", "draw": 0, "val_acc": 0.5, "test_acc": len(blob) % 7 / 10}], device=device)


def test_gather_keeps_at_most_limit_out_yields_as_they_finish_and_reports_lost_tasks(tmp_path, monkeypatch):
    store = _store(tmp_path / "r", methods=("edge_popup",), seeds=(0, 1, 2, 3, 4))
    work = controls_pass.pending(_spec(), store)
    ids = [w.trial_id for w in work]
    fake = _FakeRay(ids, lost={ids[2]})
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(controls_tasks, "evaluate_task", _outcome)
    plan = controls_tasks.TaskPlan(1, 0, "cpu", 1)
    outcomes = list(controls_tasks.gather(_spec(), store, work, plan, 2, {}))
    # tasks take trials from the end, two out at once, the one submitted later ending first
    assert [o.trial_id for o in outcomes] == [ids[3], ids[2], ids[1], ids[0], ids[4]]
    assert fake.most_out == 2 and fake.cancelled == []
    assert [o.trial_id for o in outcomes if o.problem] == [ids[2]] and "the worker died" in outcomes[1].problem

    # the pass stops (an exception while recording): the tasks still out are cancelled
    fake = _FakeRay(ids)
    monkeypatch.setitem(sys.modules, "ray", fake)
    running = controls_tasks.gather(_spec(), store, work, plan, 3, {})
    assert next(running).trial_id == ids[2]
    running.close()
    assert sorted(fake.cancelled) == sorted(f"ref-{i}" for i in ids[3:])

    # the driver got a signal (stop() true) after the first outcome: nothing more comes, nothing is left out
    fake = _FakeRay(ids)
    monkeypatch.setitem(sys.modules, "ray", fake)
    outcomes = []
    for o in controls_tasks.gather(_spec(), store, work, plan, 3, {}, stop=lambda: bool(outcomes)):
        outcomes.append(o)
    assert [o.trial_id for o in outcomes] == [ids[2]]
    assert sorted(fake.cancelled) == sorted(f"ref-{i}" for i in ids[3:])


def test_the_driver_never_waits_for_a_starting_worker(tmp_path, monkeypatch):
    """With the driver scoring: it takes trials from the front while tasks take them from the
    end, and with none left it takes back a task that has not ended (cancelled) while no task
    has ended yet (workers still starting); once one has, it takes back only a queued one."""
    store = _store(tmp_path / "r", methods=("edge_popup",), seeds=(0, 1, 2, 3, 4))
    work = controls_pass.pending(_spec(), store)
    ids = [w.trial_id for w in work]
    monkeypatch.setattr(controls_tasks, "evaluate_task", _outcome)
    plan = controls_tasks.TaskPlan(1, 0, "cpu", 1)

    def driver(item):
        return TrialOutcome(item.trial_id, rows=[], device="driver")

    # no worker ever starts: the driver scores every trial, taking back the two tasks
    fake = _FakeRay(ids, never=set(ids))
    monkeypatch.setitem(sys.modules, "ray", fake)
    outcomes = list(controls_tasks.gather(_spec(), store, work[:3], plan, 4, {}, driver=driver))
    assert [(o.trial_id, o.device) for o in outcomes] == [(ids[0], "driver"), (ids[1], "driver"), (ids[2], "driver")]
    assert fake.cancelled == [f"ref-{ids[1]}", f"ref-{ids[2]}"]  # the last submitted first (ids[2] went out first, from the end)

    # workers up: tasks end, the driver keeps scoring from the front, takes back no running task
    fake = _FakeRay(ids)
    monkeypatch.setitem(sys.modules, "ray", fake)
    counts = {}
    outcomes = list(controls_tasks.gather(_spec(), store, work, plan, 2, {}, driver=driver, counts=counts))
    assert sorted(o.trial_id for o in outcomes) == sorted(ids) and fake.cancelled == []
    assert [o.trial_id for o in outcomes if o.device == "driver"][0] == ids[0] and counts["sent"] == sum(o.device == "cpu" for o in outcomes)


def test_run_records_each_outcome_as_it_arrives_and_a_killed_pass_keeps_them(tmp_path):
    """The driver writes a trial's part file when its outcome arrives, whatever the order: a
    pass killed after two arrivals keeps their rows; the next pass computes only the rest."""
    spec = _spec()
    store = _store(tmp_path / "r", methods=("edge_popup",), seeds=(0, 1, 2))
    work = controls_pass.pending(spec, store)
    ids = [w.trial_id for w in work]

    def two_then_killed(spec, store, work):
        for item in (work[2], work[0]):
            yield TrialOutcome(item.trial_id, rows=[{"control": c, "draw": d, "val_acc": 0.1, "test_acc": 0.2} for c, d in item.missing], device="cpu")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        controls_pass.run(spec, store, out=io.StringIO(), evaluate=two_then_killed)
    assert sorted(store.load_controls("s")["trial_id"].unique()) == sorted([ids[0], ids[2]])
    assert [w.trial_id for w in controls_pass.pending(spec, store)] == [ids[1]]

    out = io.StringIO()
    report = controls_pass.run(spec, store, out=out, evaluate=lambda s, st, w: iter([TrialOutcome(w[0].trial_id, problem="no memory")]),
                               how="as a test")
    assert report.skipped == [ids[1]] and (report.trials, report.rows) == (0, 0)
    assert "device cpu, as a test)" in out.getvalue() and f"trial {ids[1]} skipped (no memory)" in out.getvalue()
