"""The `hidden` command's own behaviour (hidden_core/cli/__init__.py): --version, and the
hints its usage errors give; plus the messages a mistyped spec name or filter gets."""

import importlib.metadata
import json
import os

import pytest

from hidden_core.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_comes_from_the_package_metadata(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"hidden {importlib.metadata.version('hidden-core')}"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["analyze", "masks", "quickstart"], "did you mean `hidden subnet masks`?"),
        (["subnet", "scaling"], "did you mean `hidden analyze scaling`?"),
        (["analyse", "scaling"], "did you mean `hidden analyze`?"),
    ],
)
def test_a_command_of_another_group_is_named(argv, hint, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2 and hint in err


def test_an_underscored_flag_names_the_dashed_one_with_the_sub_commands_usage(capsys):
    code, _, err = run(["train", "--keep_fraction", "0.5"], capsys)
    assert code == 2
    assert "usage: hidden train" in err  # not the top level's `hidden [-h] COMMAND ...`
    assert "did you mean --keep-fraction?" in err


def test_a_misspelled_flag_names_the_near_one(capsys):
    code, _, err = run(["results", "show", "quickstart", "--group-bye", "method"], capsys)
    assert code == 2 and "usage: hidden results show" in err and "--group-by" in err


def test_inspect_takes_the_per_layer_units(capsys):
    code, out, err = run(["inspect", "--model", "mlp", "--dataset", "mnist1d", "--mlp-layer-units", "300,100"], capsys)
    assert code == 0, err
    stats = json.loads(out)
    # MNIST-1D: 40 inputs, 10 classes, no biases: 40*300 + 300*100 + 100*10
    assert stats["depth"] == 2 and stats["params_total"] == 40 * 300 + 300 * 100 + 100 * 10


@pytest.mark.parametrize(
    ("name", "tried"),
    [
        ("nope.yaml", "(nor sweeps/nope.yaml)"),
        ("sweeps/nope", "(nor sweeps/nope.yaml)"),
        ("nope", "(nor nope.yaml, sweeps/nope, sweeps/nope.yaml)"),
    ],
)
def test_a_missing_spec_names_the_files_tried(name, tried, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    code, _, err = run(["sweep", "run", name, "--dry-run", "--results", str(tmp_path)], capsys)
    assert code == 2
    assert tried in err, err
    assert "sweeps/sweeps" not in err and ".yaml.yaml" not in err


def test_an_unquoted_text_in_a_filter_gets_the_quoted_form(capsys, tmp_path):
    from synthetic_store import grid, write_synthetic_sweep

    from hidden_core.store import ResultStore

    write_synthetic_sweep(ResultStore(tmp_path), "s", grid(methods=("dense", "edge_popup"), widths=(1,), seeds=(0,)))
    code, _, err = run(["results", "show", "s", "--where", "method == edge_popup", "--results", str(tmp_path)], capsys)
    assert code == 2
    assert "unknown column 'edge_popup'" in err and "method == 'edge_popup'" in err
    code, out, err = run(["results", "show", "s", "--where", "method == 'edge_popup'", "--results", str(tmp_path)], capsys)
    assert code == 0, err
