"""The sweep lease without Ray: one holder, a live holder refused with its name, a dead one
taken over, the heartbeat, and a lease lost to another driver noticed."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time

import pytest

from hidden_core.config import ConfigError
from hidden_core.tune.lease import SweepLease, SweepLeaseHeld


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _write(path, **fields) -> None:
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": "2026-01-01T00:00:00+00:00",
              "store": "/somewhere", "sweep": "s", "token": "other", "heartbeat_at": time.time(), **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder))


def test_a_second_driver_is_refused_naming_the_first(tmp_path):
    with SweepLease(str(tmp_path), "s") as first:
        lease_file = tmp_path / "s" / "lease.json"
        assert json.loads(lease_file.read_text())["pid"] == os.getpid()
        with pytest.raises(SweepLeaseHeld) as err:
            SweepLease(str(tmp_path), "s").acquire()
        text = str(err.value)
        assert isinstance(err.value, ConfigError)  # the CLI's exit 2
        for part in (f"pid {os.getpid()}", socket.gethostname(), first.holder.started_at, str(tmp_path), "lease.json"):
            assert part in text
        SweepLease(str(tmp_path), "other-sweep").acquire()  # another sweep is free
    assert not lease_file.exists()  # released
    SweepLease(str(tmp_path), "s").acquire()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path, caplog):
    _write(tmp_path / "s" / "lease.json", pid=_dead_pid())
    with caplog.at_level(logging.WARNING), SweepLease(str(tmp_path), "s") as lease:
        assert json.loads((tmp_path / "s" / "lease.json").read_text())["token"] == lease.holder.token
    assert "taking over the lease" in caplog.text and "is gone" in caplog.text
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == []  # no renamed stale file left


def test_another_hosts_holder_is_live_until_its_heartbeat_is_stale(tmp_path):
    path = tmp_path / "s" / "lease.json"
    _write(path, host="elsewhere", pid=1, heartbeat_at=time.time() - 5)
    with pytest.raises(SweepLeaseHeld, match="host elsewhere"):
        SweepLease(str(tmp_path), "s", stale_after_s=30).acquire()
    _write(path, host="elsewhere", pid=1, heartbeat_at=time.time() - 31)
    with SweepLease(str(tmp_path), "s", stale_after_s=30) as lease:
        assert json.loads(path.read_text())["token"] == lease.holder.token


def test_heartbeat_renews_and_a_lost_lease_is_noticed(tmp_path):
    path = tmp_path / "s" / "lease.json"
    lease = SweepLease(str(tmp_path), "s", heartbeat_s=0.05)
    lease.acquire()
    try:
        first = json.loads(path.read_text())["heartbeat_at"]
        time.sleep(0.3)
        assert json.loads(path.read_text())["heartbeat_at"] > first
        _write(path, token="thief")  # another driver took it (we looked dead to it)
        assert lease.lost.wait(2)
        assert json.loads(path.read_text())["token"] == "thief"  # never overwritten
    finally:
        lease.release()
    assert json.loads(path.read_text())["token"] == "thief"  # not ours to delete


def test_a_run_that_wrote_nothing_leaves_no_folder_behind(tmp_path):
    with SweepLease(str(tmp_path / "new" / "results"), "s"):
        assert (tmp_path / "new" / "results" / "s" / "lease.json").exists()
    assert not (tmp_path / "new").exists()
