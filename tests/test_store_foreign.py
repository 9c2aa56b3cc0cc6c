"""Hidden touches only what hidden wrote (issue 24, points 3, 4 and 8): a sweep is a folder
with hidden's marker (or, written before the marker, a trials/ table of hidden's schema),
never a folder name; a foreign Parquet file in a table folder is skipped by every reader
(list and show agree), never merged or deleted by compact, and named; delete leaves foreign
files and names them; an unreadable part of hidden's is set aside by the next writer."""

from __future__ import annotations

import hashlib
import io
import logging
import sys
import warnings

import pandas as pd
import pytest

from hidden_core import paths
from hidden_core.cli import main as cli_main
from hidden_core.store import ResultStore
from tests.synthetic_store import grid, write_synthetic_sweep


def _cli(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    capsys.readouterr()
    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_foreign_parquet_file_is_skipped_by_every_reader_and_left_by_compact(tmp_path, monkeypatch, capsys):
    store = ResultStore(tmp_path, compact_every=None)
    ids = write_synthetic_sweep(store, "s", grid(methods=("dense",), widths=(1, 2), seeds=(0, 1)), one_by_one=True)
    foreign = tmp_path / "s" / "trials" / "mine.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]}).to_parquet(foreign)
    lookalike = tmp_path / "s" / "trials" / "part-00000000000000000001-deadbeef.parquet"  # hidden's name, not its schema
    pd.DataFrame({"trial_id": ["zzz"], "value": [3]}).to_parquet(lookalike)
    kept = {foreign: _digest(foreign), lookalike: _digest(lookalike)}

    with pytest.warns(UserWarning, match="mine.parquet: not a file of hidden's trials table"):
        shown = store.load_trials("s")
    with pytest.warns(UserWarning):
        listed = store.list_sweeps()
    assert len(shown) == len(ids) == int(listed["trials"].iloc[0])  # list and show agree
    assert shown["trial_id"].notna().all()

    for _ in range(2):  # compact twice: neither merges nor deletes the foreign files, nor fails
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, out, err = _cli(["results", "compact", "s", "--results", str(tmp_path)], monkeypatch, capsys)
        assert code == 0, err
        assert "left 2 file(s) not written by hidden where they are: trials/mine.parquet, trials/part-00000000000000000001-deadbeef.parquet" in out
        assert {p: _digest(p) for p in kept} == kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        after = store.load_trials("s")
    assert sorted(after["trial_id"]) == sorted(ids) and after["status"].notna().all()


def test_a_folder_is_a_sweep_by_its_marker_not_by_its_subfolders(tmp_path, monkeypatch, capsys):
    project = tmp_path / "myproject"
    (project / "src" / "checkpoints").mkdir(parents=True)
    (project / "src" / "important.py").write_text("print('precious')")
    (project / "notes" / "trials").mkdir(parents=True)
    (project / "notes" / "trials" / "x.parquet").write_bytes(b"not hidden's")
    store = ResultStore(project)
    assert store.sweeps() == [] and store.sweep_folders() == []
    code, out, err = _cli(["results", "delete", "src", "--yes", "--results", str(project)], monkeypatch, capsys)
    assert code == 2 and "no sweep named 'src'" in err
    code, out, err = _cli(["results", "delete", "notes", "--yes", "--results", str(project)], monkeypatch, capsys)
    assert code == 2
    assert (project / "src" / "important.py").read_text() == "print('precious')" and (project / "notes" / "trials" / "x.parquet").exists()


def test_delete_leaves_foreign_files_and_names_them(tmp_path, monkeypatch, capsys):
    store = ResultStore(tmp_path, compact_every=None)
    write_synthetic_sweep(store, "s", grid(methods=("dense",), widths=(1,), seeds=(0,)), one_by_one=True)
    write_synthetic_sweep(store, "other", grid(methods=("dense",), widths=(1,), seeds=(0,)), one_by_one=True)
    assert (tmp_path / "s" / paths.SWEEP_MARKER).is_file()  # written by the first write
    (tmp_path / "s" / "README.txt").write_text("my notes")
    (tmp_path / "s" / "trials" / "mine.parquet").write_bytes(b"mine")
    code, out, err = _cli(["results", "delete", "s", "--yes", "--results", str(tmp_path)], monkeypatch, capsys)
    assert code == 0, err
    assert "kept 2 file(s) not written by hidden in s/: README.txt, trials/mine.parquet" in out
    left = sorted(str(p.relative_to(tmp_path / "s")) for p in (tmp_path / "s").rglob("*"))
    assert left == ["README.txt", "trials", "trials/mine.parquet"]
    assert store.sweeps() == ["other"]


def test_a_store_written_before_the_marker_is_still_a_sweep_and_gets_it_on_the_next_write(tmp_path):
    store = ResultStore(tmp_path, compact_every=None)
    write_synthetic_sweep(store, "old", grid(methods=("dense",), widths=(1,), seeds=(0,)), one_by_one=True)
    (tmp_path / "old" / paths.SWEEP_MARKER).unlink()  # as an older hidden left it
    fresh = ResultStore(tmp_path, compact_every=None)
    assert fresh.sweeps() == ["old"] and len(fresh.load_trials("old")) == 1
    write_synthetic_sweep(fresh, "old", grid(methods=("dense",), widths=(2,), seeds=(0,)), one_by_one=True)
    assert (tmp_path / "old" / paths.SWEEP_MARKER).is_file()


def test_an_unreadable_part_is_set_aside_by_the_next_driver(tmp_path, caplog):
    from hidden_core.spec import parse_spec
    from hidden_core.tune.planning import plan_todo
    from hidden_core.tune.runner import _finish_killed_driver

    store = ResultStore(tmp_path, compact_every=None)
    write_synthetic_sweep(store, "s", grid(methods=("dense",), widths=(1, 2), seeds=(0,)), one_by_one=True)
    victim = sorted((tmp_path / "s" / "trials").glob("part-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated by a full disk
    spec = parse_spec({"name": "s", "base": {"dataset": "mnist1d", "model": "mlp", "epochs": 1}, "grid": {"method": ["dense"], "seed": [0]}})
    with pytest.warns(UserWarning, match="skipping unreadable part file"):
        plan_todo(spec, store)
    with caplog.at_level(logging.WARNING):
        _finish_killed_driver(spec, store, str(tmp_path))
    assert "set aside 1 unreadable part file(s)" in caplog.text and victim.name in caplog.text
    assert not victim.exists() and victim.with_name(f".broken-{victim.name}").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no read warns any more
        assert len(ResultStore(tmp_path).load_trials("s")) == 1
