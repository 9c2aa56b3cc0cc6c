"""hidden_core/checkpoint.py, the one owner of the training checkpoint's format: what it
holds, the atomic save, the load with its trial_id check, the history reader; and the
readers that go through it (the level loop's state, the trainable's resume)."""

from __future__ import annotations

import math

import pytest
import torch
from synthetic_splits import synthetic_splits

from hidden_core import checkpoint, paths
from hidden_core.checkpoint import CheckpointMismatch, TrainingCheckpoint
from hidden_core.config import RunOptions, make_config
from hidden_core.trial import train
from hidden_core.tune.trainable import _resumed

# The keys every checkpoint written so far holds (early_loss_peak since it was kept):
# existing checkpoints must stay readable, and what is written stays readable by them.
FORMAT = {"trial_id", "model", "optimizer", "schedule", "history", "early_loss_peak", "rng_cpu", "rng_cuda"}
ROW = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_acc": 0.7, "test_acc": 0.6, "lr": 0.1, "seconds": 1.0,
       "level": None, "branch": None, "level_epoch": None, "density": None}


def _checkpoint(trial_id: str = "t1", **fields) -> TrainingCheckpoint:
    values = dict(trial_id=trial_id, model={"w": torch.arange(3.0)}, optimizer={"state": {}, "param_groups": []}, schedule={"last_epoch": 1},
                  history=[ROW], early_loss_peak=2.5, rng_cpu=torch.get_rng_state(), rng_cuda=None)
    return TrainingCheckpoint(**{**values, **fields})


def test_save_writes_the_format_and_load_reads_it_back(tmp_path):
    path = checkpoint.save(tmp_path / "new", _checkpoint())
    assert path == tmp_path / "new" / paths.CHECKPOINT_FILE
    assert set(torch.load(path, weights_only=False)) == FORMAT
    back = checkpoint.load(tmp_path / "new", "t1")
    assert back.trial_id == "t1" and torch.equal(back.model["w"], torch.arange(3.0)) and back.history == [ROW]
    assert back.early_loss_peak == 2.5 and torch.equal(back.rng_cpu, torch.get_rng_state()) and not back.trained_on_cuda
    assert checkpoint.history(tmp_path / "new", "t1") == [ROW] and checkpoint.history(tmp_path / "new") == [ROW]
    assert checkpoint.load(tmp_path / "none", "t1") is None and checkpoint.history(tmp_path / "none") is None


def test_a_checkpoint_written_before_early_loss_peak_was_kept_still_loads(tmp_path):
    (tmp_path / "old").mkdir()
    old = {"trial_id": "t1", "model": {}, "optimizer": {}, "schedule": {}, "history": [ROW], "rng_cpu": torch.get_rng_state(), "rng_cuda": None}
    torch.save(old, tmp_path / "old" / paths.CHECKPOINT_FILE)
    back = checkpoint.load(tmp_path / "old", "t1")
    assert math.isnan(back.early_loss_peak) and back.history == [ROW]


def test_another_trials_checkpoint_is_a_mismatch_naming_both(tmp_path):
    checkpoint.save(tmp_path, _checkpoint("abc"))
    with pytest.raises(CheckpointMismatch, match="checkpoint of trial abc, not of trial xyz"):
        checkpoint.load(tmp_path, "xyz")
    with pytest.raises(CheckpointMismatch, match="not of trial xyz"):
        checkpoint.history(tmp_path, "xyz")
    unnamed = {k: v for k, v in torch.load(tmp_path / paths.CHECKPOINT_FILE, weights_only=False).items() if k != "trial_id"}
    torch.save(unnamed, tmp_path / paths.CHECKPOINT_FILE)
    with pytest.raises(CheckpointMismatch, match="unnamed"):
        checkpoint.load(tmp_path, "abc")


def test_a_failed_save_keeps_the_last_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, _checkpoint(history=[ROW]))

    def broken(state, f):  # a full disk: half a file, then the error
        open(f, "wb").write(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, _checkpoint(history=[ROW, {**ROW, "epoch": 2}]))
    monkeypatch.undo()
    assert checkpoint.history(tmp_path, "t1") == [ROW]
    assert sorted(p.name for p in tmp_path.iterdir()) == [paths.CHECKPOINT_FILE]


def test_the_trainable_never_resends_another_trials_epochs(tmp_path):
    config = make_config(method="dense", model="mlp", epochs=2)
    checkpoint.save(tmp_path / "own", _checkpoint(config.trial_id, history=[ROW, {**ROW, "epoch": 2}]))
    assert _resumed(str(tmp_path / "own"), config) == ([ROW, {**ROW, "epoch": 2}], 2)
    checkpoint.save(tmp_path / "other", _checkpoint("another-trial"))
    assert _resumed(str(tmp_path / "other"), config) == ([], 0)  # `train` then fails the trial, naming both
    assert _resumed(str(tmp_path / "empty"), config) == ([], 0)


def test_a_lottery_folder_of_another_trial_is_a_mismatch(tmp_path):
    # the level loop's state names its trial: another trial's masks are never resumed
    base = dict(method="lottery_ticket", model="mlp", depth=2, mlp_units=16, epochs=1, batch_size=64, keep_fraction=0.6, prune_rate=0.4)
    first, second = make_config({**base, "seed": 0}), make_config({**base, "seed": 1})
    run = RunOptions(device="cpu", threads=1, checkpoint_dir=str(tmp_path))
    data = synthetic_splits()
    train(first, run, data=data)
    assert (tmp_path / paths.LOTTERY_STATE_FILE).exists()
    with pytest.raises(CheckpointMismatch, match=f"not of trial {second.trial_id}"):
        train(second, run, data=data)
    from hidden_core.lottery import resumed_epochs

    assert resumed_epochs(tmp_path, first.trial_id) == 3  # its own: the 3 rows of plan() (level 0 ticket; level 1 ticket, supermask)
