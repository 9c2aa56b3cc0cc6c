"""Trial-keyed checkpoint folders without Ray: the object-store path (through pyarrow, here
on a file:// URL treated as remote), the final-trial deletion hook, and the best-effort
object-store lease."""

from __future__ import annotations

import json

import pytest

from hidden_core import paths
from hidden_core.tune import checkpoints, lease
from hidden_core.tune.checkpoints import CHECKPOINT_FILE, TRIAL_FILE, TrialCheckpoint


@pytest.fixture
def as_remote(monkeypatch, tmp_path):
    """file:// URLs go through the object-store code (pyarrow filesystems)."""
    monkeypatch.setattr(paths, "is_url", lambda root: "://" in root)
    monkeypatch.setattr(checkpoints, "staging_root", lambda: tmp_path / "staging")
    monkeypatch.setattr(lease, "OBJECT_STORE_SETTLE_S", 0.01)


def test_remote_checkpoint_uploads_downloads_and_is_discarded(as_remote, tmp_path):
    remote = tmp_path / "bucket" / "s" / "checkpoints" / "t1"
    url = f"file://{remote}"
    first = TrialCheckpoint(url, "t1")
    local = first.open()
    assert local == str(tmp_path / "staging" / "t1")
    started = first.started_at(now=123.0)
    assert started == 123.0 and json.loads((remote / TRIAL_FILE).read_text())["started_at"] == 123.0
    (tmp_path / "staging" / "t1" / CHECKPOINT_FILE).write_bytes(b"epoch 3")  # what train writes
    first.push()
    first.close()
    assert (remote / CHECKPOINT_FILE).read_bytes() == b"epoch 3" and not (tmp_path / "staging" / "t1").exists()

    again = TrialCheckpoint(url, "t1")  # another worker, another attempt
    local = again.open()
    assert (tmp_path / "staging" / "t1" / CHECKPOINT_FILE).read_bytes() == b"epoch 3"
    assert again.started_at(now=999.0) == 123.0  # the first start, kept across resumes
    again.close()
    checkpoints.discard(url)
    assert not remote.exists()


def test_trial_final_deletes_the_trials_folder_only(tmp_path):
    for trial in ("a", "b"):
        folder = tmp_path / "s" / "checkpoints" / trial
        folder.mkdir(parents=True)
        (folder / CHECKPOINT_FILE).write_bytes(b"x")
    checkpoints.trial_final(str(tmp_path), "s", "a")
    assert sorted(p.name for p in (tmp_path / "s" / "checkpoints").iterdir()) == ["b"]
    checkpoints.remove_empty_root(str(tmp_path), "s")
    assert (tmp_path / "s" / "checkpoints").exists()  # b still has one
    checkpoints.trial_final(str(tmp_path), "s", "b")
    checkpoints.remove_empty_root(str(tmp_path), "s")
    assert not (tmp_path / "s" / "checkpoints").exists()


def test_object_store_lease_is_check_put_read_back(as_remote, tmp_path):
    root = f"file://{tmp_path / 'bucket'}"
    with lease.SweepLease(root, "s") as held:
        assert json.loads((tmp_path / "bucket" / "s" / "lease.json").read_text())["token"] == held.holder.token
        with pytest.raises(lease.SweepLeaseHeld, match=f"pid {held.holder.pid}"):
            lease.SweepLease(root, "s").acquire()
    assert not (tmp_path / "bucket" / "s" / "lease.json").exists()
