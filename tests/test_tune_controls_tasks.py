"""hidden_core/tune/controls_tasks.py without a Ray (tests/test_subnet_controls_sweep_e2e.py
runs it in a real sweep and checks its rows against the in-process pass): what a task
reserves and sees per subnet_controls.device, the task body (the same rows as the in-process
pass, the sweep's data fetched once per worker, messages naming the store's file), the
gathering loop on a stand-in Ray (at most `limit` out, outcomes in finishing order, a lost
task is its trial's problem, tasks still out cancelled when the pass stops), and
controls_pass.run recording each outcome as it arrives."""

from __future__ import annotations

import io
import os
import sys
import tempfile
import types

import pytest

from hidden_core.config import make_config
from hidden_core.methods import build_model
from hidden_core.paths import trial_subnet_path
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.subnet.state import save_subnet
from hidden_core.tune import controls_pass, controls_tasks
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


def test_the_driver_scores_while_that_is_sooner_then_sends_the_rest_to_tasks(tmp_path, monkeypatch):
    """On the CPU the driver (warm) scores the first trials itself (PROBE_TRIALS at least) while
    `worth_tasks` says a worker's start does not pay; from then on the rest go to tasks. With WORKER_START_S 0
    every trial goes to a task; on a GPU device too (the driver may have none)."""
    assert not controls_tasks.worth_tasks(24, 0.43, 2)  # the bench's 24 small trials on 2 cores: 5.2 s saved < 8 s
    assert controls_tasks.worth_tasks(24, 0.43, 16) and controls_tasks.worth_tasks(200, 0.43, 2) and not controls_tasks.worth_tasks(500, 9.0, 1)
    from hidden_core.tune import ray_setup

    monkeypatch.setattr(ray_setup, "cluster_nodes", lambda: [{"CPU": 2.0}])
    sent = []

    def gather(spec, store, work, plan, limit, data_refs, stop):
        sent.append([w.trial_id for w in work])
        return iter([TrialOutcome(w.trial_id, problem="sent") for w in work])

    monkeypatch.setattr(controls_tasks, "gather", gather)
    store = _store(tmp_path / "r", methods=("edge_popup",), seeds=(0, 1, 2, 3, 4))
    ids = [w.trial_id for w in controls_pass.pending(_spec(), store)]

    monkeypatch.setattr(controls_tasks, "WORKER_START_S", 1e-9)  # any trial's time pays for a worker: switch once PROBE_TRIALS are timed
    out = io.StringIO()
    report = controls_tasks.run(_spec(), store, out=out)
    probed = controls_tasks.PROBE_TRIALS
    assert sent == [ids[probed:]] and report.trials == probed and report.skipped == ids[probed:] and report.at_once == 2
    assert "in this process while that is sooner, else Ray tasks of 1 CPU, up to 2 at once" in out.getvalue()
    assert f"controls: the other {5 - probed} trials as Ray tasks of 1 CPU, up to 2 at once (" in out.getvalue()

    sent.clear()
    monkeypatch.setattr(controls_tasks, "WORKER_START_S", 1e9)  # never pays: all in the driver, no task
    report = controls_tasks.run(_spec(), store, out=io.StringIO())
    assert sent == [] and report.trials == 5 - probed and report.at_once == 1 and controls_pass.pending(_spec(), store) == []

    sent.clear()
    other = _store(tmp_path / "other", methods=("edge_popup",), seeds=(0, 1))
    monkeypatch.setattr(controls_tasks, "WORKER_START_S", 0)  # every trial to a task
    report = controls_tasks.run(_spec(), other, out=io.StringIO())
    assert len(sent) == 1 and len(sent[0]) == 2 and report.trials == 0


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
    monkeypatch.setattr(controls_tasks, "_DATA_CACHE", {})
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


def test_task_body_names_the_store_file_and_leaves_no_copy(tmp_path, monkeypatch):
    store = _store(tmp_path / "r", methods=("edge_popup",))
    [item] = controls_pass.pending(_spec(), store)
    path = store.subnet_path("s", item.trial_id)
    blob = bytearray(open(path, "rb").read())
    blob[-1] ^= 0xFF  # a flipped bit in the last tensor
    copies, real = [], tempfile.mkstemp

    def recorded(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        copies.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", recorded)
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

    def __init__(self, finish: list[str], lost: set[str] = frozenset()):
        self.finish, self.lost = finish, lost
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
        first = min(refs, key=lambda r: self.finish.index(self.results[r][0].trial_id))
        self.out.remove(first)
        return [first], [r for r in refs if r != first]

    def get(self, ref):
        item, outcome = self.results[ref]
        if item.trial_id in self.lost:
            raise _RayError("the worker died")
        return outcome

    def cancel(self, ref, force):
        self.cancelled.append(ref)


def _outcome(item, path, blob, device, threads, data_root, data_refs):
    return TrialOutcome(item.trial_id, rows=[{"control": "found", "draw": 0, "val_acc": 0.5, "test_acc": len(blob) % 7 / 10}], device=device)


def test_gather_keeps_at_most_limit_out_yields_as_they_finish_and_reports_lost_tasks(tmp_path, monkeypatch):
    store = _store(tmp_path / "r", methods=("edge_popup",), seeds=(0, 1, 2, 3, 4))
    work = controls_pass.pending(_spec(), store)
    ids = [w.trial_id for w in work]
    finish = ids[::-1]
    fake = _FakeRay(finish, lost={ids[2]})
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(controls_tasks, "evaluate_task", _outcome)
    plan = controls_tasks.TaskPlan(1, 0, "cpu", 1)
    outcomes = list(controls_tasks.gather(_spec(), store, work, plan, 2, {}))
    # two out at once, the later submitted finishing first: the first trial waits until the end
    assert [o.trial_id for o in outcomes] == [ids[1], ids[2], ids[3], ids[4], ids[0]]
    assert fake.most_out == 2 and fake.cancelled == []
    assert [o.trial_id for o in outcomes if o.problem] == [ids[2]] and "the worker died" in outcomes[1].problem

    # the pass stops (an exception while recording): the tasks still out are cancelled
    fake = _FakeRay(finish)
    monkeypatch.setitem(sys.modules, "ray", fake)
    running = controls_tasks.gather(_spec(), store, work, plan, 3, {})
    next(running)
    running.close()
    assert sorted(fake.cancelled) == sorted(f"ref-{i}" for i in ids[:3] if i != ids[2])

    # the driver got a signal (stop() true) after the first outcome: nothing more comes, nothing is left out
    fake = _FakeRay(finish)
    monkeypatch.setitem(sys.modules, "ray", fake)
    outcomes = []
    for o in controls_tasks.gather(_spec(), store, work, plan, 3, {}, stop=lambda: bool(outcomes)):
        outcomes.append(o)
    assert [o.trial_id for o in outcomes] == [ids[2]]
    assert sorted(fake.cancelled) == sorted(f"ref-{i}" for i in ids[:2])


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
