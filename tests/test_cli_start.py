"""What a fresh `hidden` process imports for the commands a user runs to look at a sweep:
`hidden sweep status` and `hidden results show` import the module of their own command
only, and neither torch nor Ray (a fresh CLI's start is most of their wall time on a large
store: benchmarks/bench_scale.py times them at 5,000 trials)."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hidden_core import cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "scipy", "matplotlib", "optuna")


def test_the_commands_table_names_what_each_module_registers():
    for module in cli.COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(f"hidden_core.cli.{module}").register(sub)
        assert sorted(sub.choices) == sorted(c for c, m in cli.COMMANDS.items() if m == module)
    assert cli.command_modules(["results", "show", "x"]) == ("results_cmd",)
    assert cli.command_modules(["--help"]) == cli.COMMAND_MODULES  # the top-level help lists every command
    assert cli.command_modules(["sweeps", "status"]) == cli.COMMAND_MODULES  # a typo: the hint needs every command


@pytest.fixture(scope="module")
def scale_store(tmp_path_factory) -> tuple[str, str]:
    from benchmarks.bench_scale import spec, synthetic_store

    folder = tmp_path_factory.mktemp("cli-start")
    results = str(folder / "results")
    assert synthetic_store(100, results) == 100
    spec_path = folder / "bench_scale.yaml"
    spec_path.write_text(yaml.safe_dump(spec(100)))
    return results, str(spec_path)


def _imported(args: list[str]) -> tuple[str, list[str]]:
    """(stdout, modules of interest imported) of `hidden ARGS` in a fresh process."""
    code = ("import contextlib, io, sys\n"
            "from hidden_core.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): code = main(sys.argv[1:])\n"
            "assert code == 0, code\n"
            "print(out.getvalue())\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m.startswith('hidden_core.cli.') or m == 'hidden_core.tune.runner'))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    *out, modules = done.stdout.strip().splitlines()
    return "\n".join(out), eval(modules)  # a printed list of names


def test_sweep_status_imports_its_own_command_and_no_torch_or_ray(scale_store):
    """Before: every command module (train's flags from the config models, analyze's and
    subnet's) on every command."""
    results, spec_path = scale_store
    out, modules = _imported(["sweep", "status", spec_path, "--results", results])
    assert "100 trials planned = 100 final" in out
    assert modules == ["hidden_core.cli.sweep_cmd"]


def test_sweep_status_watch_imports_no_run_module(scale_store):
    """--watch took plan_todo from the runner module (the run's lease, controls pass and
    Ray setup modules with it); planning has it."""
    results, spec_path = scale_store
    out, modules = _imported(["sweep", "status", spec_path, "--results", results, "--watch", "--interval", "1"])
    assert "every trial is final (100 of 100)" in out
    assert modules == ["hidden_core.cli.sweep_cmd"]


def test_results_show_imports_its_own_command_and_no_torch_or_ray(scale_store):
    results, _ = scale_store
    out, modules = _imported(["results", "show", "bench_scale", "--results", results, "--format", "csv"])
    assert len(out.strip().splitlines()) == 100 + 1
    assert modules == ["hidden_core.cli.results_cmd"]
