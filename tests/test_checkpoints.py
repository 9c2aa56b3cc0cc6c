"""Trial-keyed checkpoint folders without Ray: the object-store path (through pyarrow, here
on a file:// URL treated as remote), the final-trial deletion hook, and the best-effort
object-store lease."""

from __future__ import annotations

import json

import pytest

from hidden_core import paths
from hidden_core.paths import CHECKPOINT_FILE, TRIAL_FILE
from hidden_core.tune import checkpoints, lease
from hidden_core.tune.checkpoints import TrialCheckpoint


@pytest.fixture
def as_remote(monkeypatch, tmp_path):
    """file:// URLs go through the object-store code (pyarrow filesystems), and so do
    fakebucket://<path> ones (an object store on local disk; paths.py keeps them URLs)."""
    import pyarrow.fs as pafs

    monkeypatch.setattr(paths, "is_url", lambda root: "://" in root)
    monkeypatch.setattr(checkpoints, "_fs", lambda url: (pafs.LocalFileSystem(), url.split("://", 1)[1]))
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


def test_remote_push_uploads_only_a_checkpoint_written_since_the_last_push(as_remote, tmp_path):
    remote = tmp_path / "bucket" / "s" / "checkpoints" / "t2"
    trial = TrialCheckpoint(f"file://{remote}", "t2")
    local = tmp_path / "staging" / "t2" / CHECKPOINT_FILE
    trial.open()
    trial.push()  # no checkpoint yet (checkpoint_every_s not reached): nothing to upload
    assert not (remote / CHECKPOINT_FILE).exists()
    local.write_bytes(b"epoch 1")
    trial.push()
    assert (remote / CHECKPOINT_FILE).read_bytes() == b"epoch 1"
    (remote / CHECKPOINT_FILE).write_bytes(b"marker")  # a second push of the same checkpoint would overwrite this
    trial.push()
    assert (remote / CHECKPOINT_FILE).read_bytes() == b"marker"
    local.write_bytes(b"epoch 2 and more")
    trial.push()
    assert (remote / CHECKPOINT_FILE).read_bytes() == b"epoch 2 and more"
    trial.close()


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


# ---- a final trial keeps its subnet file (the checkpoint goes after it) --------------------------
def _checkpointed_trial(folder):
    """A short real trial that checkpointed into `folder` but wrote no subnet file (as a
    pruned sweep trial, which Tune stops between epochs)."""
    from hidden_core import make_config, train
    from hidden_core.config import make_run_options

    config = make_config(method="edge_popup", dataset="digits", epochs=2, width=0.3, batch_size=256, keep_fraction=0.5)
    result = train(config, make_run_options(device="cpu", checkpoint_dir=str(folder)))
    return config, result


@pytest.mark.parametrize("remote", [False, True], ids=["local", "object-store"])
def test_a_pruned_trial_keeps_its_subnet_from_its_checkpoint(remote, request, tmp_path):
    from hidden_core.subnet.evaluate import Evaluator
    from hidden_core.subnet.fileformat import read_subnet_file
    from hidden_core.subnet.state import materialize

    if remote:
        request.getfixturevalue("as_remote")
    root = f"fakebucket://{tmp_path / 'bucket'}" if remote else str(tmp_path / "results")
    local_root = tmp_path / "bucket" if remote else tmp_path / "results"
    config, result = _checkpointed_trial(local_root / "s" / "checkpoints" / "probe")
    folder = local_root / "s" / "checkpoints" / config.trial_id
    (local_root / "s" / "checkpoints" / "probe").rename(folder)

    checkpoints.trial_final(root, "s", config.trial_id, config.model_dump(mode="json"), "pruned")
    assert not folder.exists()  # the checkpoint went, after the file was made
    stored = local_root / "s" / "subnets" / f"{config.trial_id}.safetensors"
    f = read_subnet_file(stored)
    assert f.status == "pruned" and f.config == config
    assert f.metrics["test_acc"] == result.test_acc and f.metrics["epochs_run"] == 2  # its last checkpointed epoch
    evaluator = Evaluator(f, device="cpu")
    assert evaluator.accuracy(materialize(f, evaluator.device)) == {"val_acc": result.val_acc, "test_acc": result.test_acc}

    # a file that is there already (written by `train` when the trial returned) is kept as is
    before = stored.read_bytes()
    checkpoints.trial_final(root, "s", config.trial_id, config.model_dump(mode="json"), "completed")
    assert stored.read_bytes() == before


def test_the_checkpoint_stays_when_the_subnet_file_cannot_be_made(tmp_path):
    config, _ = _checkpointed_trial(tmp_path / "s" / "checkpoints" / "other")
    folder = tmp_path / "s" / "checkpoints" / "other"
    other = config.model_copy(update={"seed": 7})
    target = tmp_path / "s" / "checkpoints" / other.trial_id
    folder.rename(target)  # another trial's checkpoint under this trial's id
    with pytest.raises(ValueError, match="not of trial"):
        checkpoints.trial_final(str(tmp_path), "s", other.trial_id, other.model_dump(mode="json"), "pruned")
    assert (target / CHECKPOINT_FILE).exists()
    assert not (tmp_path / "s" / "subnets" / f"{other.trial_id}.safetensors").exists()


def test_trials_without_a_checkpoint_keep_no_file(tmp_path):
    from hidden_core import make_config

    lottery = make_config(method="lottery_ticket", dataset="digits", epochs=2, keep_fraction=0.5)
    plain = make_config(method="dense", dataset="digits", epochs=2)
    for config in (lottery, plain):
        folder = tmp_path / "s" / "checkpoints" / config.trial_id
        folder.mkdir(parents=True)
        assert checkpoints.keep_subnet(str(tmp_path), "s", config.trial_id, str(folder), config.model_dump(mode="json"), "completed") is None
    assert not (tmp_path / "s" / "subnets").exists()
