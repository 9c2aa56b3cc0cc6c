"""Fixtures shared by several test modules (pytest finds them here by name)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def ray_root():
    """A private root for the embedded Rays' temp dirs (short: Ray's socket paths live there);
    afterwards whatever the test's drivers left (a killed driver's agents) is ended by pid."""
    from hidden_core.tune.ray_setup import processes_of

    root = Path(tempfile.mkdtemp(prefix="hr", dir=Path.home() / ".cache" if (Path.home() / ".cache").is_dir() else None))
    yield root
    for folder in list(root.iterdir()) if root.exists() else []:
        for pid in processes_of(str(folder)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mkstemp_calls(monkeypatch):
    """The paths of every temporary file tempfile.mkstemp makes during the test (to check
    that copies of a store's files are made, kept out of messages, and removed)."""
    made, real = [], tempfile.mkstemp

    def recorded(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        made.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", recorded)
    return made


def _starts_a_sweep(args) -> bool:
    words = [str(a) for a in (args if isinstance(args, list | tuple) else [args])]
    return any(w.endswith("reproduce") or w == "hidden_core.reproduce" for w in words) or ("sweep" in words and "run" in words)


_REAL_RAY_INIT: list = []  # the real ray.init, kept the first time the guard replaces it


def _restore_ray_init() -> None:
    """Put the real ray.init back if a guard's stand-in is still in place (a stand-in must
    never outlive its test: a slow test after it starts Ray for real)."""
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray.init, "_unit_loop_guard", False) and _REAL_RAY_INIT:
        ray.init = _REAL_RAY_INIT[0]


@contextlib.contextmanager
def _no_ray_and_no_sweep_subprocess():
    """ray.init and a sweep run in a subprocess fail the test, naming the rule."""
    import subprocess

    def refuse(*args, **kwargs):
        pytest.fail("this test starts Ray: mark it @pytest.mark.slow (tests/conftest.py)")

    refuse._unit_loop_guard = True  # type: ignore[attr-defined]
    real_popen_init = subprocess.Popen.__init__

    def popen(self, args, *rest, **kwargs):
        if _starts_a_sweep(args):
            pytest.fail(f"this test runs a sweep in a subprocess ({' '.join(map(str, args))[:80]}): mark it @pytest.mark.slow (tests/conftest.py)")
        real_popen_init(self, args, *rest, **kwargs)

    _restore_ray_init()
    with pytest.MonkeyPatch.context() as patch:
        try:
            import ray
        except ImportError:
            ray = None
        if ray is not None:
            if not _REAL_RAY_INIT:
                _REAL_RAY_INIT.append(ray.init)
            patch.setattr(ray, "init", refuse)
        patch.setattr(subprocess.Popen, "__init__", popen)
        yield
    _restore_ray_init()


def _guarded(item):
    """Around one phase of a test: the guard for a unit test, the real Ray for a slow one."""
    if item.get_closest_marker("slow") is not None:
        _restore_ray_init()
        return contextlib.nullcontext()
    return _no_ray_and_no_sweep_subprocess()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """`make test-fast` is the unit loop: a test not marked slow that starts Ray (in this
    process, its module- or session-scoped fixtures included: they are set up here) or a
    sweep in a subprocess fails, naming the rule, instead of making the loop slow."""
    with _guarded(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _guarded(item):
        yield
