"""A sweep that ended leaves no lease behind, on a local folder and on a real S3 API (moto's
server): a re-run that finds every trial final still clears the lease of a driver that was
killed after its last trial (the end-to-end test's flake: its SIGKILL can land after both
seeds of the one vectorized cell are final, while the driver is stopping Ray), and never
touches a live driver's lease."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from synthetic_store import make_trial

from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.lease import SweepLease, read_lease
from tests.s3_server import s3_server  # noqa: F401 (the fixture)

SPEC = {
    "name": "s3sweep",
    "base": {"dataset": "mnist1d", "model": "mlp", "width": 0.25, "epochs": 2, "optimizer": "adam", "lr": 0.01},
    "grid": {"method": ["edge_popup"], "keep_fraction": [0.5], "seed": [0, 1]},
}


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "results")
    return request.getfixturevalue("s3_server").bucket("ended") + "/results"


def _finished_sweep(root: str):
    """Every trial of SPEC final in the store, as a driver killed after its last trial left it."""
    spec = parse_spec(SPEC)
    store = ResultStore(root, compact_every=None)
    for i, planned in enumerate(spec.plan().trials):
        row, _ = make_trial(planned.config.model_dump(), noise=0.01, rng=np.random.default_rng(i), index=i,
                            epochs=planned.config.epochs, cell_id=planned.cell_id)
        assert row["trial_id"] == planned.trial_id
        store.write_trial(spec.name, row)
    store.mark_sweep(spec.name)
    return spec


def _put_lease(root: str, **fields) -> bytes:
    import pyarrow.fs as pafs

    from hidden_core import paths
    from hidden_core.store.storage import open_filesystem

    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started_at": "2026-01-01T00:00:00+00:00",
                       "store": root, "sweep": SPEC["name"], "token": "killed", "heartbeat_at": time.time(), **fields}).encode()
    fs, path = open_filesystem(paths.lease_path(root, SPEC["name"]))
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(body)
    return body


def test_a_rerun_with_nothing_to_do_removes_a_killed_drivers_lease(root, caplog):
    from hidden_core.tune.runner import run_sweep

    spec = _finished_sweep(root)
    _put_lease(root, pid=_dead_pid())
    assert read_lease(root, spec.name) is not None
    with caplog.at_level(logging.WARNING):
        report = run_sweep(spec, root, progress=False)
    assert (report.to_run, report.skipped) == (0, 2)
    assert read_lease(root, spec.name) is None  # failed before: the dead driver's lease stayed for good
    assert caplog.text.count("taking over the lease") == 1 and "is gone" in caplog.text


def test_a_rerun_with_nothing_to_do_leaves_a_live_drivers_lease(root):
    from hidden_core.tune.runner import run_sweep

    spec = _finished_sweep(root)
    body = _put_lease(root)  # this process: alive (a driver still stopping Ray after its last trial)
    report = run_sweep(spec, root, progress=False)
    assert report.to_run == 0
    seen = read_lease(root, spec.name)
    assert seen is not None and seen.data == body  # not ours: neither refused nor touched


# ---- a heartbeat write in flight when the driver ends ------------------------------------------
def _short_join(lease, wait_s: float = 0.2) -> None:
    """The release's wait for the heartbeat thread, cut from 10 s to `wait_s`: a heartbeat
    write slower than that wait (a slow or retrying store) is what these tests stand for."""
    thread = lease._thread
    real_join = thread.join
    thread.join = lambda timeout=None: real_join(min(wait_s, timeout) if timeout is not None else wait_s)


def test_s3_a_heartbeat_applied_but_unanswered_at_release_is_waited_for_then_removed(s3_server, monkeypatch):  # noqa: F811
    """The store applied a heartbeat PUT and has not answered yet when the driver ends. Before,
    the release gave up waiting and sent its DELETE with the ETag that PUT had replaced: the
    store refused it (If-Match) and lease.json stayed behind. Now the DELETE waits for the
    answer and names the lease's ETag."""
    root = s3_server.bucket("beat") + "/res"
    lease = SweepLease(root, "s", heartbeat_s=0.02)
    lease.acquire()
    client = lease.file.client
    real_put, real_delete = client.put_object, client.delete_object
    applied, answer, deleting = threading.Event(), threading.Event(), threading.Event()

    def slow_put(**kwargs):
        out = real_put(**kwargs)  # applied by the store ...
        applied.set()
        answer.wait(10)  # ... answered late
        return out

    def delete(**kwargs):
        deleting.set()
        return real_delete(**kwargs)

    monkeypatch.setattr(client, "put_object", slow_put)
    monkeypatch.setattr(client, "delete_object", delete)
    _short_join(lease)
    assert applied.wait(5)
    releaser = threading.Thread(target=lease.release)
    releaser.start()
    sent_early = deleting.wait(1.0)  # before: sent after the 0.2 s join, naming the replaced ETag
    answer.set()
    releaser.join(10)
    assert not releaser.is_alive()
    assert read_lease(root, "s") is None, "the lease was left behind"
    assert not sent_early
    time.sleep(0.1)  # a heartbeat after the release would show now
    assert read_lease(root, "s") is None


def test_local_a_heartbeat_in_flight_at_release_never_writes_the_lease_again(tmp_path, monkeypatch):
    """A heartbeat that checked its token and is writing when the driver ends. Before, the
    release gave up waiting, removed the file, and the heartbeat's rename then put it back:
    a released lease re-created by its own renewer. Now the release waits for that write
    and removes what it wrote; no heartbeat runs after it."""
    lease = SweepLease(str(tmp_path), "s", heartbeat_s=0.02)
    path = tmp_path / "s" / "lease.json"
    lease.acquire()
    real_replace = os.replace
    writing, go_on = threading.Event(), threading.Event()

    def slow_replace(src, dst, *args, **kwargs):
        if os.fspath(dst) == str(path):
            writing.set()
            go_on.wait(10)  # a slow disk: the token is checked, the new file not yet in place
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", slow_replace)
    _short_join(lease)
    assert writing.wait(5)
    releaser = threading.Thread(target=lease.release)
    releaser.start()
    releaser.join(1.0)  # before: the release was done here (file removed), the write still to come
    go_on.set()
    releaser.join(10)
    assert not releaser.is_alive()
    time.sleep(0.1)  # a heartbeat after the release would show now
    assert not path.exists(), "the heartbeat re-created the lease after its release"
