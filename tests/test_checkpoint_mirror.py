"""A trial's checkpoint folder on an object store is a mirror of its whole staging folder:
every file (a lottery trial's state and segment sub-folders too), only changed files per
push, deletions followed, restored in full on a fresh machine. The object store here is a
`fakebucket://<path>` URL (a URL to paths.py, so every path of the sweep goes through the
object-store code) served by pyarrow's local filesystem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from synthetic_splits import synthetic_splits

from hidden_core import make_config, paths, train
from hidden_core.config import RunOptions, make_run_options
from hidden_core.lottery import plan
from hidden_core.paths import LOTTERY_STATE_FILE as STATE_FILE
from hidden_core.subnet.fileformat import read_subnet_file
from hidden_core.tune import checkpoints
from hidden_core.tune.checkpoints import TRIAL_FILE, TrialCheckpoint


@pytest.fixture
def machines(monkeypatch, tmp_path):
    """fakebucket:// URLs are an object store on local disk; `machines.fresh()` is another
    machine (an empty staging root)."""
    monkeypatch.setattr(checkpoints, "_fs", lambda url: (pafs.LocalFileSystem(), url.split("://", 1)[1]))

    class Machines:
        count = 0

        def fresh(self):
            self.count += 1
            staging = tmp_path / f"machine-{self.count}" / "staging"
            monkeypatch.setattr(checkpoints, "staging_root", lambda: staging)
            return staging

    m = Machines()
    m.fresh()
    return m


def _remote_files(remote):
    return sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())


def test_the_whole_folder_is_mirrored_changes_only_deletions_followed(machines, tmp_path):
    remote = tmp_path / "bucket" / "s" / "checkpoints" / "t1"
    cp = TrialCheckpoint(f"fakebucket://{remote}", "t1")
    local = cp.open()
    cp.started_at(now=1.0)
    os.makedirs(f"{local}/segment-0")
    for rel, data in (("lottery.pt", b"state 0"), ("segment-0/checkpoint.pt", b"epoch 1"), (".lottery-x.tmp", b"half"), ("segment-0/.checkpoint-y.tmp", b"half")):
        with open(f"{local}/{rel}", "wb") as f:
            f.write(data)
    assert cp.push() == 2  # trial.json went at its start; temporary files never go
    assert _remote_files(remote) == ["lottery.pt", "segment-0/checkpoint.pt", TRIAL_FILE]
    assert cp.push() == 0  # nothing changed: nothing uploaded

    checkpoints._write_atomic(f"{local}/segment-0/checkpoint.pt", b"epoch 2")  # same size, a new file
    assert cp.push() == 1 and (remote / "segment-0" / "checkpoint.pt").read_bytes() == b"epoch 2"

    # the segment is finished: the state moves on, its folder goes, the next one starts
    checkpoints._write_atomic(f"{local}/lottery.pt", b"state 1")
    shutil.rmtree(f"{local}/segment-0")  # as lottery.py does
    os.makedirs(f"{local}/segment-1")
    checkpoints._write_atomic(f"{local}/segment-1/checkpoint.pt", b"epoch 1")
    assert cp.push() == 3
    assert _remote_files(remote) == ["lottery.pt", "segment-1/checkpoint.pt", TRIAL_FILE]
    assert not (remote / "segment-0").exists()
    assert not [p for p in remote.rglob(".*")]  # uploads went through temporary names, none left

    # another machine: its staging folder is restored in full, whatever this one holds
    machines.fresh()
    again = TrialCheckpoint(f"fakebucket://{remote}", "t1")
    restored = again.open()
    assert restored != local and _remote_files(Path(restored)) == _remote_files(remote)
    assert open(f"{restored}/segment-1/checkpoint.pt", "rb").read() == b"epoch 1"
    assert again.started_at(now=2.0) == 1.0
    assert again.push() == 0  # what was restored is not sent back


def test_a_stale_staging_folder_is_replaced_by_the_stores_copy(machines, tmp_path):
    """A worker that died on this machine left files never uploaded: the store's state is the
    trial's, so they do not mix into the resumed one."""
    remote = tmp_path / "bucket" / "t2"
    cp = TrialCheckpoint(f"fakebucket://{remote}", "t2")
    local = cp.open()
    checkpoints._write_atomic(f"{local}/{STATE_FILE}", b"state 3")
    cp.push()
    os.makedirs(f"{local}/segment-4")
    checkpoints._write_atomic(f"{local}/segment-4/checkpoint.pt", b"never uploaded")
    checkpoints._write_atomic(f"{local}/{STATE_FILE}", b"state 4 never uploaded")
    again = TrialCheckpoint(f"fakebucket://{remote}", "t2")
    assert again.open() == local
    assert sorted(os.listdir(local)) == [STATE_FILE] and open(f"{local}/{STATE_FILE}", "rb").read() == b"state 3"


# ---- a lottery trial, killed on one machine, resumed on another -----------------------------------


class Killed(Exception):
    pass


def _strip(rows):
    return [{k: repr(v) for k, v in r.to_dict().items() if k != "seconds"} for r in rows]  # repr: nan == nan


def _summary(result):
    d = result.to_dict()
    for key in ("train_seconds", "samples_per_second"):
        d.pop(key)
    return {k: repr(v) for k, v in d.items()}


def _run_pushing(config, url, data, *, push_every=1, kill_at=None, seen=None):
    """What the trainable does with a remote checkpoint folder: open (restore), train in the
    staging folder, push after a report (every `push_every` epochs: reports may be spaced);
    `kill_at` kills the worker after that epoch's push, leaving the staging folder behind."""
    cp = TrialCheckpoint(url, config.trial_id)
    folder = cp.open()
    cp.started_at()
    pushed = []

    def on_epoch(record):
        if seen is not None:
            seen.append(record)
        if record.epoch % push_every == 0:
            pushed.append(cp.push())
        if record.epoch == kill_at:
            raise Killed

    result = train(config, RunOptions(device="cpu", threads=1, checkpoint_dir=folder, checkpoint_every_s=0), data=data, on_epoch=on_epoch)
    cp.close()
    return result, pushed


@pytest.mark.parametrize("kill_at,push_every", [(5, 1), (9, 2)], ids=["in-a-ticket-level", "in-a-control-reports-spaced"])
def test_a_lottery_trial_killed_mid_level_resumes_on_a_fresh_machine(machines, tmp_path, kill_at, push_every):
    config = make_config(method="lottery_ticket", model="mlp", depth=2, mlp_units=24, epochs=3, batch_size=32, lr=0.05,
                         keep_fraction=0.6, prune_rate=0.4, lottery_controls=True, rewind_epoch=1)
    data = synthetic_splits()
    whole = train(config, RunOptions(device="cpu", threads=1), data=data)
    remote = tmp_path / "bucket" / "s" / "checkpoints" / config.trial_id
    url = f"fakebucket://{remote}"

    with pytest.raises(Killed):
        _run_pushing(config, url, data, push_every=push_every, kill_at=kill_at)
    last_pushed = kill_at - kill_at % push_every  # the store holds the trial as it was then
    segments = plan(config, 1)
    in_training = next(i for i, s in enumerate(segments) if s.offset < last_pushed <= s.offset + s.rows)
    held = _remote_files(remote)
    assert STATE_FILE in held and f"segment-{in_training}/checkpoint.pt" in held
    assert not [f for f in held if f.startswith("segment-") and f != f"segment-{in_training}/checkpoint.pt"]  # finished ones went

    machines.fresh()  # nothing of the first machine's staging folder is there
    seen = []
    resumed, pushed = _run_pushing(config, url, data, seen=seen)
    assert seen[0].epoch == last_pushed + 1  # resumed from the last upload, inside the level
    assert _strip(resumed.history) == _strip(whole.history)
    assert _summary(resumed) == _summary(whole)
    assert max(pushed) <= 3  # a report uploads what changed: a segment's checkpoint, the state, a deletion


@pytest.mark.parametrize("where", ["ticket", "control"])
def test_a_pruned_remote_lottery_trial_keeps_its_newest_ticket(machines, tmp_path, where):
    """As test_subnet_lottery's local test, on an object store: the subnet file is made from
    the mirrored state and segment folders (downloaded by whoever finalizes the trial)."""
    config = make_config(method="lottery_ticket", dataset="digits", model="mlp", width=0.3, epochs=2, batch_size=128,
                         keep_fraction=0.64, prune_rate=0.2, norm="batchnorm", lottery_controls=True)
    segments = plan(config, 2)
    target = next(s for s in segments if (s.level, s.branch) == ((2, "ticket") if where == "ticket" else (1, "reinit")))
    root = f"fakebucket://{tmp_path / 'bucket'}"
    url = paths.trial_checkpoint_dir(root, "s", config.trial_id)
    seen = []
    cp = TrialCheckpoint(url, config.trial_id)
    folder = cp.open()

    def stop(record):
        seen.append(record)
        cp.push()
        if record.epoch == target.offset + 1:
            raise Killed  # Tune stops a pruned trial between reports

    with pytest.raises(Killed):
        train(config, make_run_options(device="cpu", threads=1, checkpoint_dir=folder, checkpoint_every_s=0), on_epoch=stop)
    machines.fresh()  # the driver finalizes it elsewhere
    checkpoints.trial_final(root, "s", config.trial_id, config.model_dump(mode="json"), "pruned")
    assert not (tmp_path / "bucket" / "s" / "checkpoints" / config.trial_id).exists()
    f = read_subnet_file(tmp_path / "bucket" / "s" / "subnets" / f"{config.trial_id}.safetensors")
    level = 2 if where == "ticket" else 1
    ticket_rows = [r for r in seen if r.level == level and r.branch == "ticket"]
    assert f.status == "pruned"
    assert (f.metrics["val_acc"], f.metrics["test_acc"]) == (ticket_rows[-1].val_acc, ticket_rows[-1].test_acc)
    masks = f.layers("mask")
    assert sum(int(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values()) == pytest.approx(ticket_rows[-1].density)
