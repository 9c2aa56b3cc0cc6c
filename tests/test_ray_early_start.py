"""An embedded Ray started early (issue 23: the first trial in seconds): Ray's start overlaps
the driver's own (runner.ray_started_early, ray_setup.BackgroundStart). A refusal after the
early start (a trial too big for this machine, another driver's lease) still exits 2 with
nothing written and no Ray left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune import ray_setup, runner
from hidden_core.tune.lease import SweepLease, SweepLeaseHeld

ROOT = Path(__file__).resolve().parents[1]
GRID = {"name": "g", "base": {"dataset": "mnist1d", "model": "mlp", "epochs": 1}, "grid": {"seed": [0, 1]}}


class FakeStarted:
    """What a fake start_ray returns (no Ray)."""


@pytest.fixture
def fake_ray(monkeypatch):
    """start_ray / stop_ray without Ray: what was started and stopped, in order."""
    calls: list[tuple] = []

    def start_ray(address, num_cpus=None, *, checked=False):
        started = FakeStarted()
        calls.append(("start", num_cpus, started))
        return started

    monkeypatch.setattr(ray_setup, "start_ray", start_ray)
    monkeypatch.setattr(ray_setup, "stop_ray", lambda started: calls.append(("stop", started)))
    return calls


def test_background_start_stops_what_nobody_took_and_leaves_a_taken_ray_to_its_owner(fake_ray):
    early = ray_setup.BackgroundStart(2)
    early.stop()
    assert [c[0] for c in fake_ray] == ["start", "stop"] and fake_ray[1][1] is fake_ray[0][2]
    early.stop()  # idempotent
    assert len(fake_ray) == 2

    fake_ray.clear()
    ran: list[str] = []
    early = ray_setup.BackgroundStart(2, then=lambda: ran.append(threading.current_thread().name))
    assert early.result() is fake_ray[0][2] and early.taken
    assert ran == ["hidden-ray-start"]  # `then` ran in the start's thread
    assert early._thread.is_alive()  # Ray's processes die with the thread that started them (PR_SET_PDEATHSIG)
    early.stop()
    assert [c[0] for c in fake_ray] == ["start"] and not early._thread.is_alive()


def test_background_start_re_raises_the_start_error_in_the_caller(monkeypatch):
    def start_ray(*_args, **_kwargs):
        raise RuntimeError("no Ray today")

    monkeypatch.setattr(ray_setup, "start_ray", start_ray)
    early = ray_setup.BackgroundStart()
    with pytest.raises(RuntimeError, match="no Ray today"):
        early.result()
    early.stop()
    assert not early._thread.is_alive()


def test_a_refused_check_after_the_early_start_stops_that_ray(tmp_path, fake_ray, monkeypatch):
    """The CLI's memory check runs while Ray starts (torch not imported yet): its refusal leaves
    no Ray. Before: the check ran before Ray, and Ray's start began seconds after the call."""
    monkeypatch.setattr(runner, "_torch_imported", lambda: False)  # a fresh CLI process: torch not imported yet
    spec = parse_spec(GRID)

    def refuse():
        assert [c[0] for c in fake_ray] == ["start"]  # Ray is starting while the check runs
        raise ValueError("too big")

    with pytest.raises(ValueError, match="too big"), runner.ray_started_early(spec, ResultStore(str(tmp_path)), num_cpus=2, check=refuse):
        pass
    assert [c[0] for c in fake_ray] == ["start", "stop"] and fake_ray[0][1] == 2
    assert runner._EARLY == [] and not (tmp_path / "g").exists()


def test_with_torch_imported_the_check_runs_first_and_a_refusal_starts_no_ray(tmp_path, fake_ray, monkeypatch):
    monkeypatch.setattr(runner, "_torch_imported", lambda: True)  # the check takes milliseconds: nothing to overlap

    def refuse():
        raise ValueError("too big")

    with pytest.raises(ValueError, match="too big"), runner.ray_started_early(parse_spec(GRID), ResultStore(str(tmp_path)), check=refuse):
        pass
    assert fake_ray == []


def test_another_drivers_lease_after_the_early_start_stops_that_ray_and_writes_nothing(tmp_path, fake_ray):
    spec = parse_spec(GRID)
    with SweepLease(str(tmp_path), "g"):
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        with pytest.raises(SweepLeaseHeld):
            runner.run_sweep(spec, str(tmp_path), num_cpus=1, progress=False)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert [c[0] for c in fake_ray] == ["start", "stop"] and fake_ray[0][1] == 1


_CLI_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import hidden_core.tune.ray_setup as ray_setup
    seen = {}
    start_ray = ray_setup.start_ray
    def timed(*args, **kwargs):
        started = start_ray(*args, **kwargs)
        seen.update(started=type(started).__name__, pids=len(ray_setup.processes_of(started.folder)), torch="torch" in sys.modules)
        return started
    ray_setup.start_ray = timed
    from hidden_core.cli import main
    code = main(sys.argv[1:])
    print(json.dumps(seen))
    sys.exit(code)
    """
)


@pytest.mark.slow  # a real embedded Ray started and stopped (seconds)
def test_a_trial_too_big_refused_after_ray_started_early_exits_2_leaving_no_ray_and_no_store(tmp_path, ray_root):
    spec = tmp_path / "huge.yaml"
    spec.write_text("name: huge\nbase: {mlp_units: 100000, depth: 20}\ngrid: {width: [1, 64]}\n")
    env = {**os.environ, "HIDDEN_RAY_TEMP": str(ray_root), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CLI_CHILD, "sweep", "run", str(spec), "--results", str(tmp_path / "r"), "--num-cpus", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "error: grid (width=64): a trial needs about" in done.stderr and "Traceback" not in done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["started"] == "EmbeddedRay" and seen["pids"] > 0  # Ray did start: the refusal came after
    assert not (tmp_path / "r").exists()
    assert not ray_root.exists() or list(ray_root.iterdir()) == []  # its temp dir (and so its processes) gone
    time.sleep(0.5)
    assert not any(ray_setup.processes_of(str(ray_root)))




def test_a_signal_during_the_check_is_raised_once_the_check_is_done_not_inside_its_imports(tmp_path, fake_ray, monkeypatch):
    """The check imports torch while Ray's start imports Ray in its thread. SweepInterrupted
    raised inside an import (a signal handler runs between any two bytecodes, also while
    importlib holds its global import lock) left that lock held: the start's thread blocked
    forever on its next import and `hidden sweep run` hung after Ctrl-C (seen: SIGINT 1.5 s
    after the call, py-spy showed the start's thread in _get_module_lock and the main thread
    in BackgroundStart.stop). The signal is now held until the check returns."""
    import signal

    from hidden_core.tune.report import SweepInterrupted

    monkeypatch.setattr(runner, "_torch_imported", lambda: False)
    done: list[str] = []

    def check():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the check (an import, in the CLI) runs
        time.sleep(0.05)  # the handler runs here at the latest
        done.append("check")

    entered = False
    with pytest.raises(SweepInterrupted):  # noqa: PT012
        with runner.ray_started_early(parse_spec(GRID), ResultStore(str(tmp_path)), num_cpus=1, check=check):
            entered = True
    assert done == ["check"] and not entered  # the check ran to its end; the run itself never began
    assert [c[0] for c in fake_ray] == ["start", "stop"] and runner._EARLY == []


def test_a_signal_while_a_refusal_waits_for_the_early_ray_still_stops_that_ray(tmp_path, monkeypatch):
    """A refused check waits for Ray to finish starting, then stops it (seconds, nothing
    printed yet): a Ctrl-C then used to raise inside that wait, so the Ray went on starting
    and nothing stopped it (its processes died with the driver, its temp dir stayed)."""
    import signal

    from hidden_core.tune.report import SweepInterrupted

    calls: list[str] = []
    go = threading.Event()

    def start_ray(address, num_cpus=None, *, checked=False):
        go.wait(10)  # Ray's processes still coming up
        calls.append("start")
        return FakeStarted()

    monkeypatch.setattr(ray_setup, "start_ray", start_ray)
    monkeypatch.setattr(ray_setup, "stop_ray", lambda started: calls.append("stop"))
    monkeypatch.setattr(runner, "_torch_imported", lambda: False)

    def ctrl_c_then_ray_up():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        go.set()

    def refuse():
        threading.Thread(target=ctrl_c_then_ray_up, daemon=True).start()
        raise ValueError("too big")

    with pytest.raises(SweepInterrupted) as stopped:  # noqa: PT012
        with runner.ray_started_early(parse_spec(GRID), ResultStore(str(tmp_path)), num_cpus=1, check=refuse):
            pass
    assert isinstance(stopped.value.__context__, ValueError)  # the refusal, chained
    assert calls == ["start", "stop"] and runner._EARLY == []


def test_a_signal_as_the_early_ray_is_handed_over_still_stops_it(tmp_path, fake_ray, monkeypatch):
    """A signal landing as BackgroundStart.result() returned (taken, but not yet assigned in
    _run) left that Ray to nobody: _run had no Ray to stop and BackgroundStart.stop leaves a
    taken Ray to its owner. The hand-over now holds the signal until _run has the Ray."""
    import signal

    from hidden_core.tune import sweep_data
    from hidden_core.tune.report import SweepInterrupted

    monkeypatch.setattr(sweep_data, "check_data", lambda *_a, **_k: None)
    monkeypatch.setattr(sweep_data, "load_data", lambda *_a, **_k: {})
    monkeypatch.setattr(runner, "_import_fit_modules", lambda: None)
    result = ray_setup.BackgroundStart.result

    def handed_over_then_signal(self):
        started = result(self)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here at the latest
        return started

    monkeypatch.setattr(ray_setup.BackgroundStart, "result", handed_over_then_signal)
    with pytest.raises(SweepInterrupted):
        runner.run_sweep(parse_spec(GRID), str(tmp_path), num_cpus=1, progress=False)
    assert [c[0] for c in fake_ray] == ["start", "stop"] and fake_ray[1][1] is fake_ray[0][2]
