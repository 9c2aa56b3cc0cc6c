"""A subnet file from a training checkpoint: for a trial that ended without `train` writing
its file (a sweep's pruned trial, which Tune stops between epochs). Apart from state.py
because it reads training's checkpoint (hidden_core/checkpoint.py), and training imports
state.py."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from hidden_core import checkpoint as checkpoints
from hidden_core.catalog import LEVELS, method_info
from hidden_core.config import TrialConfig
from hidden_core.methods import build_model
from hidden_core.subnet.state import save_subnet
from hidden_core.training import EpochRecord, TrialResult, _result


def save_subnet_from_checkpoint(path: str | os.PathLike[str], checkpoint_folder: str | os.PathLike[str], config: TrialConfig, status: str) -> Path | None:
    """A trial that ended without writing its file (a sweep's pruned trial: Tune stops it
    between epochs) keeps what its latest checkpoint holds: the network of its last
    checkpointed epoch, with that epoch's metrics and `status` in the header. A lottery
    trial keeps its newest ticket: the level in training at its last checkpointed epoch,
    else the last finished level (with that level's summary). None when the folder has no
    checkpoint (nothing was learned yet)."""
    trained_on = torch.device("cpu")
    if method_info(config.method).runner == LEVELS:
        from hidden_core.lottery import latest_ticket

        found = latest_ticket(checkpoint_folder, config)
        if found is None:
            return None
        model, progress = found
        if isinstance(progress, TrialResult):  # a finished level: its own summary
            return save_subnet(path, model, config, result=dataclasses.replace(progress, status=status))
        history = progress
    else:
        state = checkpoints.load(checkpoint_folder, config.trial_id)  # another trial's: CheckpointMismatch
        if state is None:
            return None
        model = build_model(config, torch.device("cpu"))
        model.load_state_dict(state.model)
        history = [EpochRecord(**r) for r in state.history]
        trained_on = torch.device("cuda" if state.trained_on_cuda else "cpu")  # for the header: where its metrics were measured
    initial_states = build_model(config, torch.device("cpu")).weight_states()
    seconds = sum(r.seconds for r in history)
    result = _result(status, None, history, model, initial_states, seconds, 0.0, trained_on)
    return save_subnet(path, model, config, result=result)
