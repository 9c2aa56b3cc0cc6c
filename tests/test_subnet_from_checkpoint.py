"""hidden_core/subnet/from_checkpoint.py: a trial stopped between epochs (a sweep's pruned
trial) gets its subnet file from its latest training checkpoint. The file holds the network
of the last checkpointed epoch (re-evaluating it gives that epoch's stored val/test accuracy
exactly), that epoch's metrics and the status given; a lottery trial keeps the ticket level
in training; a folder with no checkpoint gives None and writes nothing; another trial's
checkpoint is refused (CheckpointMismatch), never saved under this trial's name."""

from __future__ import annotations

import pytest

from hidden_core.checkpoint import CheckpointMismatch
from hidden_core.config import make_config, make_run_options
from hidden_core.subnet.evaluate import Evaluator
from hidden_core.subnet.fileformat import read_subnet_file
from hidden_core.subnet.from_checkpoint import save_subnet_from_checkpoint
from hidden_core.subnet.state import materialize
from hidden_core.trial import train


class Stopped(Exception):
    """What Tune's stop does to a trial between epochs, as far as its checkpoint folder sees."""


def _train_until(config, folder, stop_after: int) -> list:
    """Train `config` with a checkpoint every epoch, stopped after epoch record `stop_after`;
    returns the epoch records seen."""
    seen = []

    def on_epoch(record):
        seen.append(record)
        if len(seen) == stop_after:
            raise Stopped

    with pytest.raises(Stopped):
        train(config, make_run_options(device="cpu", threads=1, checkpoint_dir=str(folder), checkpoint_every_s=0), on_epoch=on_epoch)
    return seen


def _score(path) -> dict[str, float]:
    f = read_subnet_file(path)
    return Evaluator(f, device="cpu").accuracy(materialize(f, "cpu"))


def test_a_stopped_trial_keeps_its_last_checkpointed_epoch(tmp_path):
    config = make_config(method="edge_popup", dataset="digits", model="mlp", width=0.3, epochs=4, batch_size=128, keep_fraction=0.4)
    seen = _train_until(config, tmp_path / "ckpt", stop_after=2)
    path = save_subnet_from_checkpoint(tmp_path / "t.safetensors", tmp_path / "ckpt", config, "pruned")
    f = read_subnet_file(path)
    last = seen[-1]
    assert f.config == config and f.status == "pruned"
    assert f.metrics["epochs_run"] == 2 and (f.metrics["val_acc"], f.metrics["test_acc"]) == (last.val_acc, last.test_acc)
    assert f.metrics["best_val_acc"] == max(r.val_acc for r in seen)
    assert _score(path) == {"val_acc": last.val_acc, "test_acc": last.test_acc}  # the epoch-2 network itself, not a fresh one


def test_a_stopped_lottery_trial_keeps_the_ticket_level_in_training(tmp_path):
    """2 levels of 2 epochs: records 1-2 train the dense level 0, 3-4 the first pruned
    ticket; stopped after record 3 the file is that ticket after its first epoch."""
    config = make_config(method="lottery_ticket", dataset="digits", model="mlp", width=0.3, epochs=2, batch_size=128,
                         keep_fraction=0.64, prune_rate=0.2)
    seen = _train_until(config, tmp_path / "ckpt", stop_after=3)
    path = save_subnet_from_checkpoint(tmp_path / "t.safetensors", tmp_path / "ckpt", config, "pruned")
    f = read_subnet_file(path)
    last = seen[-1]
    assert f.status == "pruned" and (f.metrics["val_acc"], f.metrics["test_acc"]) == (last.val_acc, last.test_acc)
    masks = f.layers("mask")
    assert 0 < sum(int(m.sum()) for m in masks.values()) < sum(m.size for m in masks.values())  # a pruned ticket, not level 0
    assert _score(path) == {"val_acc": last.val_acc, "test_acc": last.test_acc}


def test_no_checkpoint_gives_none_and_no_file(tmp_path):
    for method, extra in (("edge_popup", {}), ("lottery_ticket", {"keep_fraction": 0.64})):
        config = make_config(method=method, dataset="digits", width=0.3, epochs=2, **extra)
        (tmp_path / method).mkdir()
        target = tmp_path / f"{method}.safetensors"
        assert save_subnet_from_checkpoint(target, tmp_path / method, config, "pruned") is None
        assert not target.exists()


def test_another_trials_checkpoint_is_refused(tmp_path):
    config = make_config(method="edge_popup", dataset="digits", model="mlp", width=0.3, epochs=3, batch_size=128)
    _train_until(config, tmp_path / "ckpt", stop_after=1)
    other = make_config(method="edge_popup", dataset="digits", model="mlp", width=0.3, epochs=3, batch_size=128, seed=1)
    with pytest.raises(CheckpointMismatch):
        save_subnet_from_checkpoint(tmp_path / "t.safetensors", tmp_path / "ckpt", other, "pruned")
    assert not (tmp_path / "t.safetensors").exists()
