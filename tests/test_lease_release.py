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
import time

import numpy as np
import pytest
from synthetic_store import make_trial

from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.lease import read_lease
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
