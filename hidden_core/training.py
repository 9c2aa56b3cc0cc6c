"""The training loop of one network: pure PyTorch, no Ray.

`train_network(config, run, data=..., on_epoch=...)` builds the network, trains it, evaluates it on
the validation and test splits after every epoch, and returns a TrialResult. With
run.checkpoint_dir set it saves a checkpoint there after the last epoch and after any epoch
that ends run.checkpoint_every_s seconds or more after the last save (0: every epoch) and,
if one is already there, resumes from it to the same result an uninterrupted run gives
(model, optimizer, schedule and RNG states are all restored). A checkpoint names its trial_id: resuming from
another config's checkpoint is a CheckpointMismatch, never a silent mix. The checkpoint's
format, its atomic save and its checked load are hidden_core/checkpoint.py's.

The hot loop has no host synchronisation: losses and correct counts accumulate on the
device and are read once per epoch.

Training health (hidden_core/health.py judges it): the first epoch's largest minibatch loss
is kept on the device beside the loss sum (and in the checkpoint, so a resumed trial keeps
it); after the last epoch one forward pass over the held batch (`held_batch`: the first
HEALTH_BATCH validation examples) with forward hooks on the ReLUs measures the fraction of
dead units per layer (`dead_unit_fractions`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from hidden_core import checkpoint as checkpoints
from hidden_core import eager_optim, health
from hidden_core.checkpoint import (
    CheckpointMismatch as CheckpointMismatch,  # re-exported (cli/train_cmd.py)
)
from hidden_core.checkpoint import TrainingCheckpoint
from hidden_core.config import RunOptions, TrialConfig
from hidden_core.data import DataSplits, DeviceData, load_data
from hidden_core.methods import HiddenNetwork, build_model
from hidden_core.models.resnet import BasicBlock
from hidden_core.records import (
    CHANGED_FRACTION,
    COMPLETED,
    DENSITY,
    DISABLED_FEATURES,
    DIVERGED,
    PARAMS_ACTIVE,
    PARAMS_LEARNED,
    PARAMS_TOTAL,
)


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_acc: float
    test_acc: float
    lr: float
    seconds: float
    # lottery_ticket only (None otherwise): which training of the trial this epoch belongs
    # to, the epoch of that training's schedule, and the density of its mask.
    level: int | None = None
    branch: str | None = None
    level_epoch: int | None = None
    density: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrialResult:
    status: str  # completed | diverged
    epochs_run: int
    train_loss: float
    train_acc: float
    val_acc: float
    test_acc: float
    best_val_acc: float
    best_epoch: int
    test_acc_at_best_val: float
    diverged_epoch: int | None
    params_total: int
    params_active: int
    params_learned: int
    changed_fraction: float
    density: float
    disabled_features: float  # BatchNorm features with |gamma| < 0.01 (docs/methods.md); NaN without BN
    train_seconds: float
    samples_per_second: float
    device: str
    # training health (records.HEALTH_FIELDS, hidden_core/health.py); the defaults are what a
    # summary saved before they existed (a lottery state) reads back as: unknown
    early_loss_peak: float = float("nan")
    dead_units_max: float = float("nan")
    health_flags: str | None = None
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("history")
        return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def make_optimizer(config: TrialConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """torch.optim's SGD or Adam (eager_optim: the same classes without their torch._dynamo import)."""
    if config.optimizer == "sgd":
        return eager_optim.make(torch.optim.SGD, params, lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    return eager_optim.make(torch.optim.Adam, params, lr=config.lr, weight_decay=config.weight_decay)


def make_schedule(config: TrialConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.step_milestones), gamma=config.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def training_setup(config: TrialConfig, run: RunOptions | None, data: DataSplits | None) -> tuple[RunOptions, torch.device, DataSplits, DeviceData]:
    """What every training needs first (one network here, a cell of seeds in vectorized.py):
    the run options, the device, the data splits and their device-side loader."""
    run = run or RunOptions()
    device = resolve_device(run.device)
    if run.threads:
        torch.set_num_threads(run.threads)
    splits = data if data is not None else load_data(config, run)
    return run, device, splits, DeviceData(splits, device, augment=bool(config.augment))


def train_network(
    config: TrialConfig,
    run: RunOptions | None = None,
    *,
    data: DataSplits | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    model: HiddenNetwork | None = None,
    start_epoch: int = 0,
) -> TrialResult:
    """`model`: train this network instead of build_model(config) (the lottery level loop
    passes pruned, rewound ones); `start_epoch`: begin at this epoch of the schedule (late
    rewinding trains epochs start_epoch+1..epochs)."""
    run, device, splits, loader = training_setup(config, run, data)
    if model is None:
        model = build_model(config, device)
    initial_states = model.weight_states()
    channels_last = run.channels_last and device.type == "cuda" and config.model != "mlp" and len(config.dataset_info.input_shape) == 3
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model.optimized())
    schedule = make_schedule(config, optimizer)
    _advance(schedule, start_epoch)
    forward = torch.compile(model) if run.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if run.amp and device.type == "cuda" else nullcontext()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    history: list[EpochRecord] = []
    torch.manual_seed(config.seed)
    checkpoint = run.checkpoint_dir or None
    early_peak = float("nan")  # the first epoch's largest minibatch loss (not yet normalized)
    if checkpoint is not None:
        os.makedirs(checkpoint, exist_ok=True)  # an unwritable folder fails here, before any training
        history, early_peak = _restore(checkpoint, model, optimizer, schedule, device, config.trial_id)

    status, diverged_epoch = COMPLETED, None
    cadence = CheckpointCadence(run.checkpoint_every_s, config.epochs)
    train_seconds = sum(r.seconds for r in history)
    samples = 0
    sample_seconds = 0.0
    steps_per_epoch = math.ceil(loader.n_train / config.batch_size)  # train_batches' count (the last batch may be smaller)
    for epoch in range(start_epoch + len(history) + 1, config.epochs + 1):
        step = (epoch - 1 - start_epoch) * steps_per_epoch  # this training's optimizer steps so far (a resume continues the count)
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        first_epoch = epoch == start_epoch + 1  # this training's first epoch (its early_loss_peak)
        peak = torch.full((), -math.inf, device=device)
        lr = optimizer.param_groups[0]["lr"]
        for x, y in loader.train_batches(config.batch_size):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = forward(x)
                loss = loss_fn(logits, y)
                penalty = model.penalty()
                if penalty is not None:
                    loss = loss + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            model.after_step(step)
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            if first_epoch:
                peak = torch.fmax(peak, loss.detach().float())  # fmax: a NaN loss does not hide the finite peak
        schedule.step()
        model.after_epoch(epoch)
        train_loss = (loss_sum / loader.n_train).item()  # the epoch's one host sync
        if first_epoch:
            early_peak = peak.item()
        train_acc = correct.item() / loader.n_train
        sample_seconds += time.perf_counter() - started
        samples += loader.n_train
        if not math.isfinite(train_loss):
            status, diverged_epoch = DIVERGED, epoch
            train_seconds += time.perf_counter() - started
            history.append(EpochRecord(epoch, train_loss, train_acc, float("nan"), float("nan"), lr, time.perf_counter() - started))
            break
        val_acc, test_acc = evaluate(forward, loader, ("val", "test"), run.eval_batch_size, channels_last, autocast)
        seconds = time.perf_counter() - started
        train_seconds += seconds
        record = EpochRecord(epoch, train_loss, train_acc, val_acc, test_acc, lr, seconds)
        history.append(record)
        if checkpoint is not None and cadence.due(epoch):
            _save(checkpoint, model, optimizer, schedule, history, device, config.trial_id, early_peak)
        if on_epoch is not None:
            on_epoch(record)

    dead = dead_units_max(model, held_batch(loader))
    result = _result(status, diverged_epoch, history, model, initial_states, train_seconds, samples / sample_seconds if sample_seconds else 0.0, device,
                     early_loss_peak=early_peak, dead_units_max=dead, classes=config.dataset_info.num_classes)
    if run.save_subnet:  # what was learned, for `hidden subnet eval` (imported only when asked)
        from hidden_core.subnet.state import save_subnet

        save_subnet(run.save_subnet, model, config, result=result, run=run)
    return result


def _advance(schedule: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> None:
    """Step the schedule past `epochs` epochs that are not trained (no optimizer step yet,
    hence the silenced order warning)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs):
            schedule.step()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceData, splits: tuple[str, ...], batch_size: int, channels_last: bool = False, autocast=None) -> list[float]:
    """Accuracy on each split (NaN for an empty one), eval mode. The masks are computed once
    for all splits and batches."""
    model.eval()
    accuracies = []
    with parametrize.cached(), autocast or nullcontext():
        for split in splits:
            correct = torch.zeros((), device=loader.device, dtype=torch.int64)
            total = 0
            for x, y in loader.eval_batches(split, batch_size):
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                correct += (model(x).argmax(1) == y).sum()
                total += len(y)
            accuracies.append(correct.item() / total if total else float("nan"))
    return accuracies


# ---- training health ------------------------------------------------------------------
# The held batch dead units are measured on: the first HEALTH_BATCH validation examples (all
# of them when there are fewer; the first training examples, unaugmented, without a
# validation split). Fixed by the data split alone, so every trial of a data set and split
# is measured on the same examples. 512 keeps the pass one eval batch (negligible next to
# an epoch) while a unit alive on a few percent of the examples is still seen alive.
HEALTH_BATCH = 512


def held_batch(loader: DeviceData, size: int = HEALTH_BATCH) -> torch.Tensor:
    """The examples dead units are measured on (see HEALTH_BATCH), prepared as for evaluation."""
    x = loader.x_val if len(loader.x_val) else loader.x_train
    return loader._prepare(x[:size])


def _relu_sites(net: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Where the network's ReLUs are: (module, pre) pairs, the module's output either a
    ReLU's output (pre False) or the input of a functional ReLU (pre True: a unit is active
    where it is > 0). Every nn.ReLU module, and the two functional ReLUs of a ResNet
    BasicBlock (after bn1; and the block's own output). tests/test_health.py checks for
    every architecture that these are all the ReLUs its forward applies."""
    sites: list[tuple[nn.Module, bool]] = []
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            sites.append((module, False))
        elif isinstance(module, BasicBlock):
            sites += [(module.bn1, True), (module, False)]
    return sites


def dead_unit_fractions(model: nn.Module, x: torch.Tensor, batch_size: int = HEALTH_BATCH) -> list[float]:
    """Per ReLU layer (in forward order), the fraction of its units (features; a conv
    layer's channels) that are zero on every example of `x` and, for a conv layer, at every
    position: eval mode, the method's effective weights (what evaluation sees)."""
    return [(alive.numel() - int(alive.sum())) / alive.numel() for alive in alive_units(model, x, batch_size)]


def dead_units_max(model: nn.Module, x: torch.Tensor) -> float:
    """The trial's dead_units_max: the largest of dead_unit_fractions (0 without a ReLU)."""
    return max(dead_unit_fractions(model, x), default=0.0)


@torch.no_grad()
def alive_units(model: nn.Module, x: torch.Tensor, batch_size: int = HEALTH_BATCH) -> list[torch.Tensor]:
    """Per ReLU layer (in forward order), which units are active (nonzero) on some example
    of `x` (dead_unit_fractions)."""
    net = model.net if isinstance(model, HiddenNetwork) else model
    alive: dict[int, torch.Tensor] = {}
    order: list[int] = []

    def hook(key: int, pre: bool):
        def record(_module, _inputs, output):
            active = output > 0 if pre else output != 0  # != 0: a NaN unit is not a dead one
            per_unit = active.any(0) if active.dim() == 2 else active.transpose(0, 1).flatten(1).any(1)
            if key not in alive:
                order.append(key)
                alive[key] = per_unit
            else:
                alive[key] |= per_unit
        return record

    handles = [module.register_forward_hook(hook(i, pre)) for i, (module, pre) in enumerate(_relu_sites(net))]
    model.eval()
    try:
        with parametrize.cached():
            for start in range(0, len(x), batch_size):
                model(x[start : start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return [alive[k] for k in order]


def _result(status, diverged_epoch, history, model: HiddenNetwork, initial_states, train_seconds, samples_per_second, device, *,
            early_loss_peak: float = float("nan"), dead_units_max: float = float("nan"), classes: int = 0) -> TrialResult:
    """The trial's TrialResult. early_loss_peak: the first epoch's largest minibatch loss,
    normalized here by ln(classes)."""
    stats = model.statistics(initial_states)
    scored = [r for r in history if math.isfinite(r.val_acc)]
    best = max(scored, key=lambda r: r.val_acc) if scored else None
    last = history[-1] if history else None
    nan = float("nan")
    early_peak = early_loss_peak / math.log(classes) if classes >= 2 else nan
    return TrialResult(
        status=status,
        epochs_run=len(history),
        train_loss=last.train_loss if last else nan,
        train_acc=last.train_acc if last else nan,
        val_acc=last.val_acc if last else nan,
        test_acc=last.test_acc if last else nan,
        best_val_acc=best.val_acc if best else nan,
        best_epoch=best.epoch if best else 0,
        test_acc_at_best_val=best.test_acc if best else nan,
        diverged_epoch=diverged_epoch,
        params_total=stats[PARAMS_TOTAL],
        params_active=stats[PARAMS_ACTIVE],
        params_learned=stats[PARAMS_LEARNED],
        changed_fraction=stats[CHANGED_FRACTION],
        density=stats[DENSITY],
        disabled_features=stats[DISABLED_FEATURES],
        train_seconds=train_seconds,
        samples_per_second=samples_per_second,
        device=str(device),
        early_loss_peak=early_peak,
        dead_units_max=dead_units_max,
        health_flags=health.health_flags(early_loss_peak=early_peak, dead_units_max=dead_units_max,
                                         train_loss=last.train_loss if last else None, train_acc=last.train_acc if last else None,
                                         classes=classes),
        history=history,
    )


def _save(folder: str, model, optimizer, schedule, history: list[EpochRecord], device: torch.device, trial_id: str, early_loss_peak: float) -> None:
    checkpoints.save(folder, TrainingCheckpoint(
        trial_id=trial_id,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
        history=[r.to_dict() for r in history],
        early_loss_peak=early_loss_peak,  # raw (not normalized)
        rng_cpu=torch.get_rng_state(),
        rng_cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    ))


def _restore(folder: str, model, optimizer, schedule, device: torch.device, trial_id: str) -> tuple[list[EpochRecord], float]:
    """Load the folder's checkpoint (if any) into the model, optimizer, schedule and random
    streams; returns its epoch records and raw early loss peak (NaN: written before it was
    kept), or ([], NaN) without one."""
    state = checkpoints.load(folder, trial_id, map_location=device)
    if state is None:
        return [], float("nan")
    model.load_state_dict(state.model)
    optimizer.load_state_dict(state.optimizer)
    schedule.load_state_dict(state.schedule)
    torch.set_rng_state(state.rng_cpu.cpu())
    if state.rng_cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state.rng_cuda.cpu(), device)
    return [EpochRecord(**r) for r in state.history], state.early_loss_peak


class CheckpointCadence:
    """When a trial saves its checkpoint: after its last epoch and otherwise once
    `every_s` seconds have passed since the last save (0: every epoch), so a kill loses at
    most that much training plus the epoch in progress. `train` and a vectorized cell
    (tune/cells.py) save by the same rule."""

    def __init__(self, every_s: float, last_epoch: int):
        self.every_s, self.last_epoch = every_s, last_epoch
        self.saved_at = time.perf_counter()

    def due(self, epoch: int) -> bool:
        """Whether to save after `epoch`; a True counts as the save."""
        if epoch >= self.last_epoch or time.perf_counter() - self.saved_at >= self.every_s:
            self.saved_at = time.perf_counter()
            return True
        return False


# Re-exported for the callers that know training's names (cli/train_cmd.py, tune/cells.py):
# the format and its reader live in hidden_core/checkpoint.py.
checkpoint_history = checkpoints.history
