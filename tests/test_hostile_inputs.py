"""Hostile input: every malformed spec of the corpus (tests/hostile_specs.py) is refused by
`hidden sweep run` with exit 2 and one message naming its path: no traceback, nothing
written, no Ray started. Run in-process (the CLI's main) so the corpus stays fast; a few
go through real subprocesses. Time and memory of the worst input are measured by
benchmarks/bench_hostile_inputs.py, not asserted here."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_specs import corpus

from hidden_core.cli import main as cli_main

CORPUS = corpus()


@pytest.fixture
def no_ray(monkeypatch):
    """A spec that slipped through would start Ray: fail the test instead."""
    import hidden_core.tune.runner as runner

    def refuse(*_args, **_kwargs):
        raise AssertionError("run_sweep was called: the spec was accepted")

    monkeypatch.setattr(runner, "run_sweep", refuse)


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "spec.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_corpus_is_large_and_covers_every_class():
    kinds = collections.Counter(h.kind for h in CORPUS)
    assert len(CORPUS) >= 100, len(CORPUS)
    assert len(kinds) == 9 and min(kinds.values()) >= 3, kinds
    assert len({h.id for h in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[h.id for h in CORPUS])
def test_hostile_spec_exits_2_naming_its_path(case, tmp_path, capsys, no_ray):
    import sys as _sys

    ray_was_up = "ray" in _sys.modules and _sys.modules["ray"].is_initialized()
    path = _write(tmp_path, case.text)
    results = tmp_path / "results"
    code = cli_main(["sweep", "run", str(path), "--results", str(results), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert case.expect in err, f"expected {case.expect!r} in:\n{err}"
    assert "Traceback" not in err and out == ""
    assert all(line.startswith("error: ") for line in err.splitlines())
    assert len(err) < 20_000, len(err)  # values are quoted short, problems capped
    assert not results.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing written
    if "ray" in _sys.modules:
        assert _sys.modules["ray"].is_initialized() == ray_was_up


@pytest.mark.slow  # seconds to a minute (a subprocess, a real training or a heavy import): not the unit loop
@pytest.mark.parametrize("case_id", ["alias-bomb", "duplicate-key-base", "latin-1", "ten-million-trials"])
def test_hostile_spec_in_a_real_process(case_id, tmp_path):
    case = next(h for h in CORPUS if h.id == case_id)
    path = _write(tmp_path, case.text)
    proc = subprocess.run(
        [sys.executable, "-m", "hidden_core.cli", "sweep", "run", str(path), "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert case.expect in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_max_trials_flag_raises_the_cap(tmp_path, capsys):
    path = _write(tmp_path, "name: capped\ngrid: {seed: [0, 1, 2], width: [1, 2]}\nmax_trials: 5\n")
    assert cli_main(["sweep", "run", str(path), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert "more than max_trials 5" in capsys.readouterr().err
    assert cli_main(["sweep", "run", str(path), "--dry-run", "--max-trials", "6", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "6 trials planned" in out
    assert "largest trial: " in out and " parameters, about " in out


def test_a_trial_that_cannot_fit_is_refused_before_ray(tmp_path, capsys, no_ray):
    path = _write(tmp_path, "name: huge\nbase: {mlp_units: 100000, depth: 20}\ngrid: {width: [1, 64]}\n")
    assert cli_main(["sweep", "run", str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "error: grid (width=64): a trial needs about" in err and "lower width" in err
    assert not (tmp_path / "r").exists()


def test_an_unwritable_store_is_refused_before_ray(tmp_path, capsys, no_ray):
    (tmp_path / "afile").write_text("")
    path = _write(tmp_path, "name: ok\ngrid: {width: [1]}\n")
    assert cli_main(["sweep", "run", str(path), "--results", str(tmp_path / "afile" / "results")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: results: ") and "is a file, not a folder" in err and len(err.splitlines()) == 1


def test_an_unknown_spec_name_suggests_the_near_miss(capsys):
    assert cli_main(["sweep", "run", "quickstar", "--dry-run"]) == 2
    assert "did you mean 'quickstart'?" in capsys.readouterr().err


HOSTILE_WHERE = [
    "method == 'dense' -- comment",
    "method == 'dense'  # comment",
    "seed == 99999999999999999999999",
    "'a' + 'b' == method",
    "finished_at > 'not a date'",
    " or ".join(["seed == 1"] * 30_000),
    "...",
    "seed == 2**64",
    "10**10**10 > seed",
    "__import__('os').system('true')",
    "widht > 1",
]


@pytest.mark.parametrize("where", HOSTILE_WHERE, ids=[str(i) for i in range(len(HOSTILE_WHERE))])
@pytest.mark.parametrize("command", [["results", "show", "demo"], ["analyze", "scaling", "demo"]], ids=["show", "analyze"])
def test_hostile_where_exits_2_with_one_line(command, where, tmp_path, capsys):
    from synthetic_store import grid, write_synthetic_sweep

    from hidden_core.store import ResultStore

    write_synthetic_sweep(ResultStore(tmp_path), "demo", grid(methods=("dense",), widths=(1, 2), seeds=(0,)))
    code = cli_main([*command, "--where", where, "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: where: ") and len(lines[0]) < 1500, err


def test_every_flag_and_subcommand_has_a_description():
    import argparse

    from hidden_core.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name} (subcommand)")
                    walk(sub, f"{path} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "hidden")
    assert not missing, missing
