"""Fixtures shared by several test modules (pytest finds them here by name)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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


def _starts_a_sweep(args) -> bool:
    words = [str(a) for a in (args if isinstance(args, list | tuple) else [args])]
    return any(w.endswith("reproduce") or w == "hidden_core.reproduce" for w in words) or ("sweep" in words and "run" in words)


@contextlib.contextmanager
def _no_ray_and_no_sweep_subprocess():
    """ray.init and a sweep run in a subprocess fail the test, naming the rule."""
    import subprocess

    def refuse(*args, **kwargs):
        pytest.fail("this test starts Ray: mark it @pytest.mark.slow (tests/conftest.py)")

    real_popen_init = subprocess.Popen.__init__

    def popen(self, args, *rest, **kwargs):
        if _starts_a_sweep(args):
            pytest.fail(f"this test runs a sweep in a subprocess ({' '.join(map(str, args))[:80]}): mark it @pytest.mark.slow (tests/conftest.py)")
        real_popen_init(self, args, *rest, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        try:
            import ray
        except ImportError:
            ray = None
        if ray is not None:
            patch.setattr(ray, "init", refuse)
        patch.setattr(subprocess.Popen, "__init__", popen)
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """`make test-fast` is the unit loop: a test not marked slow that starts Ray (in this
    process, its module- or session-scoped fixtures included: they are set up here) or a
    sweep in a subprocess fails, naming the rule, instead of making the loop slow."""
    if item.get_closest_marker("slow") is not None:
        yield
        return
    with _no_ray_and_no_sweep_subprocess():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if item.get_closest_marker("slow") is not None:
        yield
        return
    with _no_ray_and_no_sweep_subprocess():
        yield
