"""The lease against hostile state (issue 24, points 1 and 5): a dead driver's lease on a
real S3 API (moto's server) taken over at once by conditional writes, every field
validated with a message naming it, broken and oversized files bounded and never a spin,
leftovers of interrupted drivers removed by the next one."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
import tracemalloc

import pytest

from hidden_core.tune import lease as lease_mod
from hidden_core.tune.lease import (
    MAX_LEASE_BYTES,
    SweepLease,
    SweepLeaseHeld,
    live_holder,
    read_lease,
)
from tests.s3_server import s3_server  # noqa: F401 (the fixture)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _holder(**fields) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started_at": "2026-01-01T00:00:00+00:00",
            "store": "/somewhere", "sweep": "s", "token": "other", "heartbeat_at": time.time(), **fields}


def _write(path, body, age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))


# ---- S3 (moto's server) ------------------------------------------------------------------------
def _put(s3, url: str, body: bytes) -> None:
    bucket, _, key = url.split("://", 1)[1].partition("/")
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)


def _get(s3, url: str) -> bytes | None:
    bucket, _, key = url.split("://", 1)[1].partition("/")
    try:
        return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:
        return None


@pytest.mark.parametrize("other_host", [True, False])
def test_s3_a_dead_drivers_lease_is_taken_over_at_once_without_spinning(s3_server, caplog, other_host):  # noqa: F811
    """Another host's lease with a heartbeat 600 s old, or this host's of a SIGKILLed pid."""
    root = s3_server.bucket("lease") + "/res"
    url = f"{root}/s/lease.json"
    fields = {"host": "elsewhere", "pid": 1, "heartbeat_at": time.time() - 600} if other_host else {"pid": _dead_pid()}
    _put(s3_server, url, json.dumps(_holder(**fields)).encode())
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), SweepLease(root, "s") as held:
        assert json.loads(_get(s3_server, url))["token"] == held.holder.token
    assert time.monotonic() - started < 1.5  # conditional writes: no settle wait, no retries
    assert caplog.text.count("taking over the lease") == 1
    assert _get(s3_server, url) is None  # released


def test_s3_conditional_create_lets_one_driver_in_and_heartbeat_notices_a_thief(s3_server):  # noqa: F811
    root = s3_server.bucket("lease") + "/res"
    first = SweepLease(root, "s", heartbeat_s=0.05)
    first.acquire()
    try:
        assert isinstance(first.file, lease_mod._S3File)
        with pytest.raises(SweepLeaseHeld, match=f"pid {os.getpid()}"):
            SweepLease(root, "s").acquire()
        _put(s3_server, f"{root}/s/lease.json", json.dumps(_holder(token="thief")).encode())
        assert first.lost.wait(3)
    finally:
        first.release()
    assert json.loads(_get(s3_server, f"{root}/s/lease.json"))["token"] == "thief"  # not ours to delete


def test_s3_a_fresh_junk_lease_is_named_not_racing(s3_server):  # noqa: F811
    root = s3_server.bucket("lease") + "/res"
    _put(s3_server, f"{root}/s/lease.json", b"\x00garbage")
    with pytest.raises(SweepLeaseHeld, match=r"is broken \(not JSON") as err:
        SweepLease(root, "s").acquire()
    assert "racing" not in str(err.value)


# ---- field validation --------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "named"), [
    ({"pid": "123"}, "field 'pid' is '123', expected an integer"),
    ({"heartbeat_at": "soon"}, "field 'heartbeat_at' is 'soon', expected a number"),
    ({"heartbeat_at": float("nan"), "host": "elsewhere"}, "field 'heartbeat_at' is nan, not a finite time"),
    ({"heartbeat_at": time.time() + 10 * 86400, "host": "elsewhere"}, "s in the future (clocks may differ by at most 60 s)"),
    ({"pid": True}, "field 'pid' is True"),
    ({"token": None}, "field 'token' is None, expected text"),
])
def test_every_field_is_checked_and_a_broken_lease_is_held_only_while_young(tmp_path, caplog, fields, named):
    path = tmp_path / "s" / "lease.json"
    body = json.dumps(_holder(**fields))
    _write(path, body.encode())
    with pytest.raises(SweepLeaseHeld) as err:
        SweepLease(str(tmp_path), "s").acquire()
    assert named in str(err.value) and "counts as held until it is 30 s old" in str(err.value)
    assert live_holder(read_lease(str(tmp_path), "s")) is None  # `results delete` sees no live driver, no traceback
    _write(path, body.encode(), age_s=31)
    with caplog.at_level(logging.WARNING), SweepLease(str(tmp_path), "s") as held:
        assert json.loads(path.read_text())["token"] == held.holder.token
    assert "a broken lease" in caplog.text and named.split(" (")[0] in caplog.text


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]", b"null"])
def test_a_fresh_empty_or_junk_lease_is_reported_as_broken(tmp_path, body):
    _write(tmp_path / "s" / "lease.json", body)
    with pytest.raises(SweepLeaseHeld, match="is broken") as err:
        SweepLease(str(tmp_path), "s").acquire()
    assert "racing" not in str(err.value)


def test_an_oversized_lease_is_refused_unread(tmp_path):
    path = tmp_path / "s" / "lease.json"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:  # sparse: 200 MB on paper, nothing on disk
        f.truncate(200 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(SweepLeaseHeld, match=f"209,715,200 bytes \\(a lease is at most {MAX_LEASE_BYTES:,}; not read\\)"):
            SweepLease(str(tmp_path), "s").acquire()
        assert live_holder(read_lease(str(tmp_path), "s")) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def test_leftovers_of_interrupted_drivers_are_removed_and_named(tmp_path, caplog):
    folder = tmp_path / "s"
    old = ["lease.json.broken-abc", f"lease.json.{_dead_pid()}.tmp", "lease.json.stale-def"]
    for name in old:
        _write(folder / name, b"x", age_s=120)
    _write(folder / "lease.json.99.tmp", b"x")  # young: maybe a live driver's heartbeat right now
    _write(folder / "notes.txt", b"mine", age_s=120)
    with caplog.at_level(logging.WARNING), SweepLease(str(tmp_path), "s"):
        pass
    assert sorted(p.name for p in folder.iterdir()) == ["lease.json.99.tmp", "notes.txt"]
    assert "removed 3 leftover lease file(s)" in caplog.text and all(n in caplog.text for n in old)
