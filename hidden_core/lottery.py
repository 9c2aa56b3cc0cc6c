"""The lottery_ticket level loop (open_lth's lottery runner and branches): train, prune,
rewind, repeat, then the controls of each level. Pure PyTorch, no Ray.

One trial runs a fixed plan of segments, each one training (or one evaluation):

- level 0 `ticket`: the dense network, `epochs` epochs from its initialization;
- level l >= 1 `ticket`: the survivors of level l's magnitude mask, rewound to their values
  after `rewind_epoch` (0 = the initialization), trained epochs rewind_epoch+1..epochs with
  the schedule continued from there and a fresh optimizer (open_lth's start_step);
- level l >= 1 `supermask` (Zhou et al. 2019): level l's mask on the initial weights,
  evaluated without training (one row, level_epoch 0);
- with lottery_controls, level l >= 1 `reinit` (open_lth's randomly_reinitialize: level l's
  mask on freshly drawn weights) and `random_prune` (randomly_prune, layerwise: each layer's
  mask permuted, same per-layer density, on the rewound weights), trained like the ticket.

Each segment's epochs are numbered on from the previous segment's, so `epoch` is the row's
index in the trial (the epochs table's key, and the step the Optuna pruner sees: step s is
the same level, branch and epoch in every trial of a cell) and `level`, `branch`,
`level_epoch`, `density` say what it is. The trial's summary is the last ticket level's.

Checkpoints: with run.checkpoint_dir set, each segment trains with its own sub-folder
(``segment-<i>/``, a training checkpoint: a killed trial resumes inside its level) and the
loop keeps its own state beside them (``lottery.pt``: its trial_id, masks, the rewind
weights, finished segments' rows, the latest trained ticket), saved atomically after every
segment (hidden_core/checkpoint.py writes and reads both; paths.py names them).

The subnet file (run.save_subnet; docs/subnetworks.md) is the ticket the summary describes:
the last ticket level's network as it ended (final mask bits, the kept weights' trained
values, biases and BatchNorm state), written when the whole plan is done. `latest_ticket`
gives the newest ticket of an unfinished trial's checkpoint folder (a pruned sweep trial).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hidden_core import checkpoint as checkpoints
from hidden_core import paths
from hidden_core.config import RunOptions, TrialConfig
from hidden_core.data import DataSplits, DeviceData, load_data
from hidden_core.methods import HiddenNetwork, build_model
from hidden_core.methods.base import parametrization_of, weight_layers
from hidden_core.methods.lottery_ticket import (
    layer_masks,
    level_count,
    level_keep_counts,
    magnitude_masks,
    shuffled_masks,
    trained_weights,
)
from hidden_core.records import (
    BEST_EPOCH,
    DIVERGED,
    DIVERGED_EPOCH,
    EPOCHS_RUN,
    RANDOM_PRUNE,
    REINIT,
    SUPERMASK,
    TICKET,
    TRAIN_SECONDS,
)
from hidden_core.training import (
    EpochRecord,
    TrialResult,
    evaluate,
    resolve_device,
    train_network,
)

_CONTROL_STREAM = {REINIT: 1, RANDOM_PRUNE: 2}


@dataclass(frozen=True)
class Segment:
    level: int
    branch: str
    offset: int  # rows of the segments before it
    rows: int


def plan(config: TrialConfig, levels: int) -> list[Segment]:
    later = config.epochs - config.rewind_epoch
    shape = [(0, TICKET, config.epochs)]
    for level in range(1, levels + 1):
        shape += [(level, TICKET, later), (level, SUPERMASK, 1)]
        if config.lottery_controls:
            shape += [(level, REINIT, later), (level, RANDOM_PRUNE, later)]
    segments, offset = [], 0
    for level, branch, rows in shape:
        segments.append(Segment(level, branch, offset, rows))
        offset += rows
    return segments


def planned_epochs(config: TrialConfig) -> int:
    """Rows a lottery trial writes to the epochs table when it runs to the end (the last
    step the Optuna pruner will see)."""
    segments = plan(config, level_count(config.keep_fraction, config.prune_rate))
    return segments[-1].offset + segments[-1].rows


def control_seed(config: TrialConfig, level: int, branch: str) -> int:
    """A seed per (trial seed, level, control), independent of the trial's own draws."""
    return int(np.random.SeedSequence((config.seed, level, _CONTROL_STREAM[branch])).generate_state(1)[0])


def set_masks(model: HiddenNetwork, masks: list[torch.Tensor], weights: list[torch.Tensor] | None = None) -> None:
    """Put `masks` on the model's weight layers, over `weights` (default: its current ones)."""
    layers = weight_layers(model.net)
    for i, (layer, mask) in enumerate(zip(layers, masks, strict=True)):
        p = parametrization_of(layer)
        values = p.trained.detach() if weights is None else weights[i]
        p.reset(values.to(p.trained.device), mask.to(p.mask.device))


def rewind(model: HiddenNetwork, snapshot: dict[str, torch.Tensor], masks: list[torch.Tensor]) -> None:
    """Every tensor of the model back to `snapshot` (a state_dict), then `masks` on top."""
    model.load_state_dict(snapshot)
    set_masks(model, masks)


def mask_density(masks: list[torch.Tensor]) -> float:
    return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def train_lottery(
    config: TrialConfig,
    run: RunOptions,
    *,
    data: DataSplits | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrialResult:
    device = resolve_device(run.device)
    splits = data if data is not None else load_data(config, run)
    folder = Path(run.checkpoint_dir) if run.checkpoint_dir else None
    state = {**_new_state(), **(_load_state(folder, config.trial_id) or {}), "trial_id": config.trial_id}
    records = [EpochRecord(**r) for r in state["records"]]

    def fresh(seed_config: TrialConfig = config) -> HiddenNetwork:
        return build_model(seed_config, device)

    initial = {k: v.detach().clone() for k, v in fresh().state_dict().items()}
    if not state["masks"]:
        state["masks"].append(layer_masks(fresh().net))  # level 0: every weight
    sizes = [m.numel() for m in state["masks"][0]]
    counts = level_keep_counts(sizes, config.keep_fraction, config.prune_rate, config.prune_scope)
    segments = plan(config, len(counts) - 1)

    for index in range(state["done"], len(segments)):
        seg = segments[index]
        masks = state["masks"][seg.level]
        density = mask_density(masks)
        if seg.branch == SUPERMASK:
            model = fresh()
            set_masks(model, masks, _originals(model))
            started = time.perf_counter()
            val_acc, test_acc = evaluate(model, DeviceData(splits, device, augment=False), ("val", "test"), run.eval_batch_size)
            nan = float("nan")
            record = EpochRecord(seg.offset + 1, nan, nan, val_acc, test_acc, nan, time.perf_counter() - started, seg.level, seg.branch, 0, density)
            if on_epoch is not None:
                on_epoch(record)
            rows = [record]
        else:
            model, first = _segment_model(config, seg, state, masks, initial, fresh)
            segment_run = run.model_copy(update={"save_subnet": None})  # the trial's file is written once, below
            if folder is not None:
                sub = folder / paths.segment_dir_name(index)
                if seg.level == 0 and config.rewind_epoch > 0 and state["rewind"] is None and sub.exists():
                    shutil.rmtree(sub)  # killed past the rewind epoch before it was kept: redo level 0
                segment_run = segment_run.model_copy(update={"checkpoint_dir": str(sub)})

            def as_row(r: EpochRecord, seg: Segment = seg, first: int = first, density: float = density) -> EpochRecord:
                return dataclasses.replace(r, epoch=seg.offset + r.epoch - first, level=seg.level, branch=seg.branch, level_epoch=r.epoch, density=density)

            def report(r: EpochRecord, as_row=as_row, seg: Segment = seg, model: HiddenNetwork = model) -> None:
                if seg.level == 0 and r.epoch == config.rewind_epoch and config.rewind_epoch > 0:
                    state["rewind"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    _save_state(folder, state)
                if on_epoch is not None:
                    on_epoch(as_row(r))

            result = train_network(config, segment_run, data=splits, on_epoch=report, model=model, start_epoch=first)
            rows = [as_row(r) for r in result.history]
            if seg.branch == TICKET:
                # the newest ticket (what the subnet file keeps), beside the rows of its level
                state["ticket"] = {"level": seg.level, "model": _cpu_state(model), "summary": _summary(result, rows)}
                if result.status == DIVERGED or seg.level == len(counts) - 1:
                    state["final"] = _summary(result, rows)
                if result.status != DIVERGED and seg.level < len(counts) - 1:
                    state["masks"].append(magnitude_masks(trained_weights(model.net), masks, counts[seg.level + 1], config.prune_scope))
        records += rows
        state["records"] = [r.to_dict() for r in records]
        state["done"] = index + 1
        stop = seg.branch == TICKET and state["final"] is not None and state["final"]["status"] == DIVERGED
        if stop:
            state["done"] = len(segments)
        _save_state(folder, state)
        if folder is not None:
            shutil.rmtree(folder / paths.segment_dir_name(index), ignore_errors=True)
        if stop:
            break

    final = dict(state["final"])
    final[EPOCHS_RUN] = len(records)
    final[TRAIN_SECONDS] = sum(r.seconds for r in records if math.isfinite(r.seconds))
    result = TrialResult(**final, history=records)
    if run.save_subnet and state["ticket"] is None:  # resumed from a state of a hidden that kept no ticket
        import warnings

        warnings.warn(f"trial {config.trial_id}: no subnet file: its checkpoint {folder} does not hold the final ticket "
                      "(written by an older hidden); delete the folder and re-run the trial to get one", stacklevel=2)
    elif run.save_subnet:  # the ticket the summary describes (imported only when asked)
        from hidden_core.subnet.state import save_subnet

        save_subnet(run.save_subnet, ticket_network(config, state["ticket"]["model"]), config, result=result, run=run)
    return result


def _new_state() -> dict:
    return {"done": 0, "masks": [], "rewind": None, "records": [], "final": None, "ticket": None}


def _cpu_state(model: HiddenNetwork) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def ticket_network(config: TrialConfig, model_state: dict[str, torch.Tensor]) -> HiddenNetwork:
    """A lottery network (on the CPU) holding `model_state`: its masks, trained weights, BN."""
    model = build_model(config, torch.device("cpu"))
    model.load_state_dict(model_state)
    return model


def latest_ticket(folder: str | os.PathLike[str], config: TrialConfig) -> tuple[HiddenNetwork, TrialResult | list[EpochRecord]] | None:
    """The newest ticket in the checkpoint folder of an unfinished (e.g. pruned) trial: the
    ticket level in training at its last checkpointed epoch, else the last finished ticket
    level. Returns (network, its level's summary as a TrialResult) for a finished level, or
    (network, the level's epoch records so far) for one in training; None when the folder
    holds no trained epoch of a ticket (nothing was learned yet)."""
    folder = Path(folder)
    state = {**_new_state(), **(_load_state(folder, config.trial_id) or {})}
    segments = plan(config, level_count(config.keep_fraction, config.prune_rate))
    if state["done"] < len(segments) and segments[state["done"]].branch == TICKET:
        saved = checkpoints.load(folder / paths.segment_dir_name(state["done"]), config.trial_id)
        if saved is not None:
            return ticket_network(config, saved.model), [EpochRecord(**r) for r in saved.history]
    if state.get("ticket") is None:
        return None
    ticket = state["ticket"]
    return ticket_network(config, ticket["model"]), TrialResult(**ticket["summary"], history=[])


def resumed_epochs(folder: str | os.PathLike[str], trial_id: str) -> int:
    """How many of the trial's epoch rows a resume from `folder` does not recompute: every
    finished segment's plus the checkpointed epochs of the segment in training (the trial's
    `resumed_from`; a lottery folder has no top-level checkpoint.pt). Another trial's
    folder is a CheckpointMismatch."""
    folder = Path(folder)
    state = _load_state(folder, trial_id)
    if state is None:
        return 0
    in_training = checkpoints.history(folder / paths.segment_dir_name(state["done"]), trial_id)
    return len(state["records"]) + len(in_training or [])


def _originals(model: HiddenNetwork) -> list[torch.Tensor]:
    return [layer.parametrizations.weight.original.detach() for layer in weight_layers(model.net)]


def _segment_model(config, seg: Segment, state, masks, initial, fresh) -> tuple[HiddenNetwork, int]:
    """The network a training segment starts from, and the epoch it starts after."""
    if seg.level == 0:
        return fresh(), 0
    snapshot = state["rewind"] if config.rewind_epoch > 0 else initial
    if seg.branch == TICKET:
        model = fresh()
        rewind(model, snapshot, masks)
    elif seg.branch == REINIT:
        model = fresh(config.model_copy(update={"seed": control_seed(config, seg.level, REINIT)}))
        set_masks(model, masks)
    else:  # random_prune
        generator = torch.Generator().manual_seed(control_seed(config, seg.level, RANDOM_PRUNE))
        model = fresh()
        rewind(model, snapshot, shuffled_masks(masks, generator))
    return model, config.rewind_epoch


def _summary(result: TrialResult, rows: list[EpochRecord]) -> dict:
    """The trial's summary from its last ticket level; best_epoch as the row's epoch."""
    summary = result.to_dict()
    by_local = {r.level_epoch: r.epoch for r in rows}
    summary[BEST_EPOCH] = by_local.get(result.best_epoch, 0)
    if summary[DIVERGED_EPOCH] is not None:
        summary[DIVERGED_EPOCH] = by_local.get(result.diverged_epoch)
    return summary


def _load_state(folder: Path | None, trial_id: str) -> dict | None:
    """The level loop's state in `folder` (None without one). A state naming another trial
    is a CheckpointMismatch; one written before states named their trial is read as it is
    (its segments' checkpoints are checked when they are read)."""
    path = None if folder is None else folder / paths.LOTTERY_STATE_FILE
    if path is None or not path.exists():
        return None
    return checkpoints.check_trial(path, checkpoints.load_state(path), trial_id, unnamed_ok=True)


def _save_state(folder: Path | None, state: dict) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints.save_state(folder / paths.LOTTERY_STATE_FILE, state)  # atomic: a kill never leaves half a state
