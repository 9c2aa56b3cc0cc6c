"""`hidden results delete SWEEP`: the sweep goes with all its files, after a confirmation,
never under a live driver; other sweeps stay byte for byte; a crash never leaves half a sweep
visible; compaction keeps subnet files."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hidden_core import paths
from hidden_core.cli import main as cli_main
from hidden_core.config import make_config
from hidden_core.store import ResultStore
from hidden_core.tune.lease import SweepLease


def _fill(store: ResultStore, sweep: str, seeds=(0, 1)) -> list[str]:
    """Rows, epochs, subnet files (their bytes are not read here), a checkpoint, studies."""
    ids = []
    for seed in seeds:
        config = make_config(method="edge_popup", seed=seed, width=0.3)
        store.write_trial(sweep, {"trial_id": config.trial_id, "cell_id": "c", "status": "completed", "val_acc": 0.5,
                                  "subnet_file": paths.subnet_file_name(sweep, config.trial_id), **config.model_dump()},
                          [{"epoch": 1, "val_acc": 0.5}])
        _put(store, paths.trial_subnet_path(store.root, sweep, config.trial_id), b"subnet bytes " + sweep.encode())
        ids.append(config.trial_id)
    _put(store, paths.join(paths.trial_checkpoint_dir(store.root, sweep, "feedbeef"), "checkpoint.pt"), b"ckpt")
    _put(store, paths.join(paths.sweep_dir(store.root, sweep), paths.STUDIES_FILE), b"sqlite")
    return ids


def _put(store: ResultStore, path: str, data: bytes) -> None:
    if store._local:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        return
    _, inner = _split(store, path)
    store.fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with store.fs.open_output_stream(inner) as f:
        f.write(data)


def _split(store: ResultStore, path: str) -> tuple[str, str]:
    return path, path.split("://", 1)[1] if "://" in path else path


def _snapshot(store: ResultStore, sweep: str) -> dict[str, bytes]:
    out = {}
    for info in store.sweep_files(sweep):
        with store.fs.open_input_stream(info.path) as f:
            out[info.path] = f.read()
    return out


@pytest.fixture
def two_sweeps(tmp_path):
    store = ResultStore(tmp_path, compact_every=None)
    _fill(store, "a")
    _fill(store, "b")
    return store


def _run(argv, monkeypatch, stdin: str | None = None, tty: bool = False) -> int:
    fake = io.StringIO(stdin or "")
    fake.isatty = lambda: tty  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", fake)
    return cli_main(argv)


def test_delete_removes_the_sweep_and_leaves_the_others_byte_for_byte(two_sweeps, monkeypatch, capsys):
    store = two_sweeps
    before = _snapshot(store, "b")
    rows_b = store.load_trials("b")
    assert _run(["results", "delete", "a", "--yes", "--results", store.root], monkeypatch) == 0
    assert "deleted sweep a" in capsys.readouterr().out
    assert not os.path.exists(paths.sweep_dir(store.root, "a"))
    assert store.sweeps() == ["b"] and store.sweep_folders() == ["b"]
    assert _snapshot(store, "b") == before
    assert store.load_trials("b").equals(rows_b)
    assert sorted(os.listdir(store.root)) == ["b"]  # no tombstone left


def test_confirmation_by_typing_the_name(two_sweeps, monkeypatch, capsys):
    store = two_sweeps
    assert _run(["results", "delete", "a", "--results", store.root], monkeypatch, stdin="b\n", tty=True) == 1
    out = capsys.readouterr().out
    assert "not deleted" in out and "2 trials, 2 subnet files" in out
    assert store.sweeps() == ["a", "b"]
    assert _run(["results", "delete", "a", "--results", store.root], monkeypatch, stdin="a\n", tty=True) == 0
    assert store.sweeps() == ["b"]


def test_without_a_terminal_delete_needs_yes(two_sweeps, monkeypatch, capsys):
    store = two_sweeps
    assert _run(["results", "delete", "a", "--results", store.root], monkeypatch, stdin="a\n", tty=False) == 2
    err = capsys.readouterr().err
    assert "--yes" in err and "terminal" in err
    assert store.sweeps() == ["a", "b"]


def test_real_process_without_tty_exits_2_and_keeps_the_sweep(two_sweeps):
    store = two_sweeps
    done = subprocess.run([sys.executable, "-m", "hidden_core.cli", "results", "delete", "a", "--results", store.root],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 2 and "--yes" in done.stderr and "Traceback" not in done.stderr
    assert store.sweeps() == ["a", "b"]


def test_unknown_sweep_lists_the_known_ones(two_sweeps, monkeypatch, capsys):
    assert _run(["results", "delete", "nope", "--yes", "--results", two_sweeps.root], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "no sweep named 'nope'" in err and "a, b" in err
    assert _run(["results", "delete", "../b", "--yes", "--results", two_sweeps.root], monkeypatch) == 2
    assert two_sweeps.sweeps() == ["a", "b"]


def test_a_live_driver_blocks_delete_and_a_dead_one_does_not(two_sweeps, monkeypatch, capsys):
    store = two_sweeps
    with SweepLease(store.root, "a"):
        assert _run(["results", "delete", "a", "--yes", "--results", store.root], monkeypatch) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and socket.gethostname() in err and "live driver" in err
        assert store.sweeps() == ["a", "b"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease = Path(paths.lease_path(store.root, "a"))
    lease.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started_at": "2026-01-01T00:00:00+00:00",
                                 "store": store.root, "sweep": "a", "token": "x", "heartbeat_at": time.time()}))
    assert _run(["results", "delete", "a", "--yes", "--results", store.root], monkeypatch) == 0
    assert store.sweeps() == ["b"]


def test_a_sweep_that_wrote_no_row_yet_can_be_deleted(tmp_path, monkeypatch):
    store = ResultStore(tmp_path, compact_every=None)
    _fill(store, "b")
    _put(store, paths.join(paths.trial_checkpoint_dir(store.root, "early", "feedbeef"), "checkpoint.pt"), b"ckpt")
    store.mark_sweep("early")  # its driver wrote the marker when it started (run_sweep)
    os.makedirs(tmp_path / "not-a-sweep")
    assert store.sweep_folders() == ["b", "early"]
    assert _run(["results", "delete", "early", "--yes", "--results", store.root], monkeypatch) == 0
    assert sorted(os.listdir(tmp_path)) == ["b", "not-a-sweep"]


def test_an_interrupted_local_delete_leaves_an_invisible_tombstone_the_next_one_removes(two_sweeps):
    store = two_sweeps
    real = store.fs

    class KilledAfterTheRename:  # pyarrow's file systems are immutable types: wrap instead
        def __getattr__(self, name):
            return getattr(real, name)

        def delete_dir(self, path):
            raise KeyboardInterrupt  # the process dies between the rename and the removal

    store.fs = KilledAfterTheRename()
    with pytest.raises(KeyboardInterrupt):
        store.delete_sweep("a")
    store.fs = real
    assert store.sweeps() == ["b"] and store.sweep_folders() == ["b"]  # all of a is gone from view at once
    tombstones = [n for n in os.listdir(store.root) if n.startswith(".deleted-a-")]
    assert len(tombstones) == 1
    store.delete_sweep("b")
    assert os.listdir(store.root) == []


def test_object_store_delete_removes_the_trials_table_last(monkeypatch, capsys):
    import hidden_core.store.storage as storage

    root = f"memory://bucket/delete-{os.getpid()}-{time.time_ns()}"
    store = ResultStore(root, compact_every=None)
    _fill(store, "a")
    _fill(store, "b")
    before = _snapshot(store, "b")
    order = []
    real = storage.delete_quietly
    monkeypatch.setattr(storage, "delete_quietly", lambda fs, path: (order.append(path), real(fs, path)))
    assert _run(["results", "delete", "a", "--yes", "--results", root], monkeypatch) == 0
    kinds = ["trials" if "/a/trials/" in p else "marker" if p.endswith(paths.SWEEP_MARKER) else "other" for p in order]
    assert kinds.index("trials") == kinds.count("other") and "trials" in kinds  # every other file went first
    assert kinds[-1] == "marker" and kinds.count("marker") == 1  # the sweep stays listed until its very end
    assert any("/a/subnets/" in p for p in order) and any("/a/checkpoints/" in p for p in order)
    fresh = ResultStore(root, compact_every=None)
    assert fresh.sweeps() == ["b"] and fresh.sweep_files("a") == []
    assert _snapshot(fresh, "b") == before


def test_compaction_keeps_subnet_files_and_their_column(two_sweeps, capsys):
    store = two_sweeps
    _fill(store, "a", seeds=(2, 3))
    before = {p: v for p, v in _snapshot(store, "a").items() if "/subnets/" in p}
    assert len(before) == 4
    assert cli_main(["results", "compact", "a", "--results", store.root]) == 0
    assert {p: v for p, v in _snapshot(store, "a").items() if "/subnets/" in p} == before
    rows = store.load_trials("a")
    assert len(rows) == 4
    for _, row in rows.iterrows():
        assert os.path.isfile(os.path.join(store.root, row["subnet_file"]))


def test_the_controls_table_is_named_as_the_sweeps_own(two_sweeps, monkeypatch, capsys):
    """The controls pass writes `<sweep>/controls/`: the confirmation must not call it a
    stranger's file ("not written by hidden"), and delete removes it with the rest."""
    store = two_sweeps
    trial_id = store.load_trials("a", columns=["trial_id", "write_id"]).iloc[0]
    store.write_controls("a", [{"trial_id": trial_id["trial_id"], "trial_write_id": trial_id["write_id"], "control": "found",
                                "draw": 0, "val_acc": 0.5, "test_acc": 0.5, "device": "cpu"}])
    assert os.path.isdir(os.path.join(paths.sweep_dir(store.root, "a"), "controls"))
    assert _run(["results", "delete", "a", "--results", store.root], monkeypatch, stdin="", tty=False) == 2
    assert "not written by hidden" not in capsys.readouterr().err
    assert _run(["results", "delete", "a", "--yes", "--results", store.root], monkeypatch) == 0
    assert store.sweep_folders() == ["b"]


def test_the_files_counted_are_the_files_asked_about(two_sweeps, monkeypatch, capsys):
    """The delete holds the sweep's lease while it deletes: its own lease file is not one
    of the sweep's files ("This deletes ... N files" then "deleted ... N files")."""
    import re

    store = two_sweeps
    assert _run(["results", "delete", "a", "--results", store.root], monkeypatch) == 2
    asked = re.search(r"(\d+) files", capsys.readouterr().err).group(1)
    assert _run(["results", "delete", "a", "--yes", "--results", store.root], monkeypatch) == 0
    assert re.search(r"(\d+) files", capsys.readouterr().out).group(1) == asked
