"""Every JSON the `hidden` command prints is strict JSON (issue 22, point 6): NaN and
infinity are null, so JavaScript's JSON.parse and jq read it. Each command that has `--json`
or `--format json` is run and its output parsed with a parser that refuses NaN/Infinity; a
new JSON output the CLI grows without a case here fails test_every_json_command_is_covered."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from synthetic_store import grid, make_trial

import hidden_core.cli as cli
from hidden_core.store import ResultStore
from hidden_core.strict_json import dumps, loads_strict

# commands whose output is JSON whatever the flags say
ALWAYS_JSON = {("inspect",)}


def json_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The command paths (e.g. ('results', 'show')) with a --json flag or a json --format."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= json_commands(sub, (*path, name))
        elif "--json" in action.option_strings or ("--format" in action.option_strings and "json" in (action.choices or ())):
            found.add(path)
    return found


COVERED = {("train",), ("inspect",), ("sweep", "run"), ("results", "list"), ("results", "show"), ("results", "best"),
           ("subnet", "eval"), ("subnet", "controls"), ("subnet", "masks"), ("methods",)}


def test_every_json_command_is_covered():
    assert json_commands(cli.build_parser()) | ALWAYS_JSON == COVERED


def test_the_parser_used_here_refuses_what_strict_parsers_refuse():
    for bad in ('{"a": NaN}', '[Infinity]', '[-Infinity]'):
        with pytest.raises(ValueError, match="not strict JSON"):
            loads_strict(bad)
    assert loads_strict(dumps({"a": float("nan"), "b": [float("inf"), np.float32(-np.inf), np.int64(3)]})) == {"a": None, "b": [None, None, 3]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny edge_popup training through `hidden train --json` (its output and file)."""
    folder = tmp_path_factory.mktemp("strict")
    outputs, files = [], []
    for seed in (0,):
        path = folder / f"ep{seed}.safetensors"
        outputs.append(_run(["train", "--method", "edge_popup", "--dataset", "digits", "--epochs", "1", "--width", "0.3", "--device", "cpu",
                             "--seed", str(seed), "--save-subnet", str(path), "--json", "--quiet"], last_line=True))
        files.append(path)
    return folder, outputs, files


def _run(argv: list[str], *, last_line: bool = False) -> object:
    """Run `hidden ARGV` in this process; its stdout (or last line) parsed strictly."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    assert code == 0, argv
    text = out.getvalue().strip()
    return loads_strict(text.splitlines()[-1] if last_line else text)


def test_train_json_has_null_for_what_was_not_measured(trained):
    _, outputs, _ = trained
    result = outputs[0]
    assert result["disabled_features"] is None  # NaN for a method that switches no feature off
    assert isinstance(result["test_acc"], float)


def test_methods_json():
    records = _run(["methods", "--json"])
    assert isinstance(records, list) and {"method", "options", "learns"} <= set(records[0])


def test_inspect_json(trained):
    stats = _run(["inspect", "--method", "edge_popup", "--dataset", "digits", "--json"])
    assert stats["disabled_features"] is None and stats["params_total"] > 0


def test_subnet_eval_controls_and_masks_json(trained):
    folder, _, files = trained
    report = _run(["subnet", "eval", str(files[0]), "--device", "cpu", "--json"], last_line=True)
    assert report["matches_stored"] is True
    table = _run(["subnet", "controls", str(files[0]), "--device", "cpu", "--draws", "2", "--json", "--output", str(folder / "c.csv")])
    assert isinstance(table, list) and table
    masks = _run(["subnet", "masks", "--files", *map(str, files), "--format", "json", "--plot", str(folder / "m.png")])
    assert isinstance(masks, list) and masks and masks[0]["jaccard"] is None  # one seed: no pair to compare


def test_results_json_outputs_null_for_nan_and_infinity(tmp_path):
    store = ResultStore(tmp_path)
    rng = np.random.default_rng(0)
    rows = [make_trial(c, noise=0.01, rng=rng, index=i)[0] for i, c in enumerate(grid(methods=("dense",), widths=(1, 2), seeds=(0, 1)))]
    rows[0]["train_loss"] = math.inf  # a diverged loss
    rows[1]["best_val_acc"] = math.nan
    store.write_trials("s", rows)
    shown = _run(["results", "show", "s", "--columns", "trial_id", "train_loss", "best_val_acc", "disabled_features", "finished_at",
                  "--format", "json", "--results", str(tmp_path)])
    assert {r["train_loss"] for r in shown} >= {None} and all(r["disabled_features"] is None for r in shown)
    assert _run(["results", "list", "--format", "json", "--results", str(tmp_path)])[0]["sweep"] == "s"
    assert _run(["results", "best", "s", "--by", "width", "--format", "json", "--results", str(tmp_path)])
    grouped = _run(["results", "show", "s", "--group-by", "method", "--columns", "train_loss", "--format", "json", "--results", str(tmp_path)])
    assert grouped[0]["train_loss_mean"] is None  # the mean with an infinite loss


def test_sweep_run_json_report_is_strict(tmp_path, monkeypatch):
    """The report of `sweep run --json` with a NaN efficiency (nothing was fitted); the sweep
    itself is replaced (its own tests run real ones)."""
    import hidden_core.tune.runner as runner
    from hidden_core.tune.report import SweepReport

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {epochs: 1, dataset: digits}\ngrid: {seed: [0]}\n")
    monkeypatch.setattr(runner, "run_sweep", lambda spec, uri, **kw: SweepReport(sweep=spec.name, planned=1, skipped=1))
    report = _run(["sweep", "run", str(spec), "--results", str(tmp_path / "results"), "--json"], last_line=True)
    assert report["efficiency"] is None and report["planned"] == 1
