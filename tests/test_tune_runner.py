"""hidden_core/tune/runner.py: run_sweep's options as one frozen SweepOptions object, its
fields also taken as keyword arguments (the call every existing caller makes)."""

from __future__ import annotations

import dataclasses
import io
import sys

import pytest

from hidden_core.tune import runner
from hidden_core.tune.runner import SWEEP_OPTIONS, SweepOptions, run_sweep


@pytest.fixture
def seen(monkeypatch):
    """The options run_sweep hands to the run, which is not started."""
    calls: list[SweepOptions] = []

    def fake_run(spec, results_root, report, options, started):
        calls.append(options)
        return report

    monkeypatch.setattr(runner, "_run_sweep", fake_run)
    return calls


def test_keywords_and_an_options_object_are_the_same_call(seen):
    out = io.StringIO()
    run_sweep("unused.yaml", "results", num_cpus=2, progress=False, out=out, callbacks=[1])
    run_sweep("unused.yaml", "results", options=SweepOptions(num_cpus=2, progress=False, out=out, callbacks=(1,)))
    assert seen[0] == seen[1] and seen[0].callbacks == (1,)


def test_keywords_override_the_options_object_and_out_defaults_to_stdout(seen):
    base = SweepOptions(num_cpus=2, max_concurrent=3)
    run_sweep("unused.yaml", options=base, num_cpus=4)
    assert seen[0] == dataclasses.replace(base, num_cpus=4, out=sys.stdout)
    assert base.num_cpus == 2 and base.out is None  # the caller's object is left as it was


def test_an_unknown_option_is_refused_naming_the_allowed_ones(seen):
    with pytest.raises(TypeError, match=r"unknown option num_cpu; SweepOptions has address, .*num_cpus"):
        run_sweep("unused.yaml", num_cpu=2)
    assert seen == []  # refused before anything ran


def test_options_are_frozen_and_keep_no_reference_to_a_callers_list():
    callbacks = ["a"]
    options = SweepOptions(callbacks=callbacks)
    callbacks.append("b")
    assert options.callbacks == ("a",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.num_cpus = 2  # type: ignore[misc]
    assert SWEEP_OPTIONS == tuple(f.name for f in dataclasses.fields(SweepOptions)) and len(SWEEP_OPTIONS) == 11
