"""A trial's training checkpoint: the one owner of its format, its writes and its reads.

A checkpoint is ``<folder>/checkpoint.pt`` (paths.CHECKPOINT_FILE), one `torch.save`d dict
whose keys are TrainingCheckpoint's fields:

    trial_id         the trial it belongs to (a hash of its whole config); resuming another
                     trial's checkpoint is a CheckpointMismatch, never a silent mix
    model            the HiddenNetwork's state_dict
    optimizer        the optimizer's state_dict (one seed's, as a one-network optimizer has it)
    schedule         the learning-rate schedule's state_dict
    history          the trained epochs' records (EpochRecord.to_dict(), in order)
    early_loss_peak  the first epoch's largest minibatch loss, raw (absent in older checkpoints: NaN)
    rng_cpu          the CPU random stream's state
    rng_cuda         the CUDA random stream's state, None for a trial trained off CUDA

`train_network` (training.py) and a vectorized cell (vectorized.py) write and read the same
format, so either resumes the other's; the level loop (lottery.py) keeps its own state dict
beside its segments' checkpoints, saved and loaded through `save_state`/`load_state` here.
Every write is atomic (a temporary file moved over the target): a kill or a reader never
sees half a checkpoint.

torch is imported inside the functions that need it: the Tune side (tune/trainable.py,
tune/checkpoints.py) imports this module without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hidden_core import paths
from hidden_core.records import EARLY_LOSS_PEAK

UNNAMED = "(unnamed: written before checkpoints named their trial)"


class CheckpointMismatch(ValueError):
    """A checkpoint folder holds another trial's checkpoint."""

    def __init__(self, path: str | os.PathLike[str], found: str, wanted: str):
        self.path, self.found, self.wanted = Path(path), found, wanted
        super().__init__(f"{path} is the checkpoint of trial {found}, not of trial {wanted} (another config); "
                         "use a separate checkpoint folder per trial")


@dataclass
class TrainingCheckpoint:
    """What a checkpoint holds (module docstring); its fields are the file's keys."""

    trial_id: str
    model: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    history: list[dict[str, Any]]  # EpochRecord(**row) reads one back (training.py; imported there, not here)
    rng_cpu: Any  # a torch.ByteTensor
    rng_cuda: Any = None  # a torch.ByteTensor, or None off CUDA
    early_loss_peak: float = math.nan

    @property
    def trained_on_cuda(self) -> bool:
        return self.rng_cuda is not None


_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingCheckpoint))


def checkpoint_path(folder: str | os.PathLike[str]) -> Path:
    """The checkpoint file of a trial's checkpoint folder."""
    return Path(folder) / paths.CHECKPOINT_FILE


def exists(folder: str | os.PathLike[str]) -> bool:
    return checkpoint_path(folder).exists()


def save(folder: str | os.PathLike[str], checkpoint: TrainingCheckpoint) -> Path:
    """Write `checkpoint` into `folder` (made if missing), atomically; returns the file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: getattr(checkpoint, name) for name in _FIELDS}
    path = checkpoint_path(folder)
    save_state(path, state)
    return path


def load(folder: str | os.PathLike[str], trial_id: str, map_location: Any = "cpu") -> TrainingCheckpoint | None:
    """The checkpoint in `folder` (None without one). Another trial's checkpoint (or one
    written before checkpoints named their trial) is a CheckpointMismatch naming both."""
    path = checkpoint_path(folder)
    if not path.exists():
        return None
    state = check_trial(path, load_state(path, map_location), trial_id)
    known = {name: state[name] for name in _FIELDS if name in state}
    if EARLY_LOSS_PEAK in known:  # the field of TrainingCheckpoint named as the metric it feeds
        known[EARLY_LOSS_PEAK] = float(known[EARLY_LOSS_PEAK])
    return TrainingCheckpoint(**known)


def history(folder: str | os.PathLike[str], trial_id: str | None = None) -> list[dict[str, Any]] | None:
    """The epoch records of the checkpoint in `folder` (None without one): what a resumed
    trial will not recompute. With `trial_id`, another trial's checkpoint is a
    CheckpointMismatch (without it, whoever wrote it)."""
    path = checkpoint_path(folder)
    if not path.exists():
        return None
    state = load_state(path)
    if trial_id is not None:
        check_trial(path, state, trial_id)
    return list(state["history"])


def check_trial(path: str | os.PathLike[str], state: dict[str, Any], trial_id: str, *, unnamed_ok: bool = False) -> dict[str, Any]:
    """`state` (read from `path`) if it is trial `trial_id`'s, else a CheckpointMismatch.
    unnamed_ok: a state that names no trial (written before it did) passes."""
    found = state.get("trial_id")
    if found != trial_id and not (unnamed_ok and found is None):
        raise CheckpointMismatch(path, found or UNNAMED, trial_id)
    return state


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """`torch.save` a state dict to `path` atomically: a temporary file in the same folder
    (hidden: a leading '.', so the object-store mirror never uploads it) moved over `path`."""
    import torch

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """A state dict `save_state` wrote (the whole pickle: optimizer states and RNG tensors
    are not plain tensors, so weights_only loading would refuse them)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=False)
