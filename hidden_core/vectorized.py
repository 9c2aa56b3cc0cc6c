"""The seeds of one grid cell trained together, in one process, as one vectorized model.

`train_seeds(config, seeds, run, data=..., on_epoch=...)` trains the trials
`config.model_copy(update={"seed": s})` for every s in `seeds` (same shapes, same
hyperparameters, different seeds) and returns one TrialResult per seed, each what
`hidden_core.training.train_network` returns for that seed alone, within float tolerance
(tests/test_vectorized.py states it). Every seed keeps:

- its own initial network: each seed's HiddenNetwork is built by `build_model` exactly as
  an unvectorized trial builds it (bit-identical), then its tensors are stacked along a
  new leading seed dimension;
- its own random streams: one generator per seed, seeded like the global RNG that
  `train` seeds with `torch.manual_seed(seed)`, drawn in the same order (epoch shuffle,
  supermask samples, crop/flip), so each seed sees the same data order as alone;
- its own epoch records, its own stop (pruned by `on_epoch`, diverged, or completed) and
  its own TrialResult, statistics included (computed on its own HiddenNetwork, into which
  its slice of the stack is copied back when it stops).

A seed that stops is removed from the stack (parameters, buffers, optimizer state): from
the next epoch on it costs no compute. Nothing is masked out.

How a step runs (the "effective weights once per step" path): the learned and frozen
tensors live as stacked tensors (seed, ...); each weight layer's effective weight is
computed once per step for all seeds together from its method's parametrization
(elementwise parametrizations are called directly on the stacked tensors, edge-popup's
top-k is taken per seed, supermask samples per seed with each seed's generator), and the
plain architecture runs on them with batched kernels (hidden_core.batched_forward: one bmm
per Linear for the MLP, `torch.func.vmap(functional_call(...))` for any other network), with
no parametrize getter in the forward. Penalties run the method's own `penalty` under vmap.
Each seed's loss is the trial's own loss function under vmap; the optimizer steps the sum
of the seeds' losses, whose gradient is each seed's own (they share no tensor).

Per-seed timing: a seed's epoch seconds are the cell's epoch wall time divided by the
number of seeds still training (its share), so the seeds' train_seconds add up to the
cell's wall time.

Not supported here (train one seed per trial instead): torch.compile and channels_last
(the vmapped forward runs eager, in the default memory format).

Checkpoints (checkpoint_dirs): each seed's own, after every epoch (or when checkpoint_due
says), in the format and under the trial_id `train` uses (hidden_core/checkpoint.py), so a seed resumes alone or in a
cell from either's checkpoint (tests/test_vectorized.py resumes one by the other). Seeds
whose checkpoints are at different epochs train in groups of equal epoch, the least
advanced group first.

A sweep runs a cell through hidden_core/tune/cells.py (the spec's `vectorize`; planning.py
groups the seeds left of each grid cell; per-seed pruning decisions come back from the
driver's scheduler through `after_epoch`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from hidden_core import checkpoint as checkpoints
from hidden_core import records
from hidden_core.batched_forward import batched_forward
from hidden_core.catalog import method_info
from hidden_core.checkpoint import TrainingCheckpoint
from hidden_core.config import RunOptions, TrialConfig
from hidden_core.data import CROP_PADDING, DataSplits, DeviceData, random_crop_flip
from hidden_core.distributions import weight_layers
from hidden_core.methods import HiddenNetwork, Method, build_model, method_class
from hidden_core.methods.base import parametrization_of
from hidden_core.models import build_architecture
from hidden_core.records import COMPLETED, DIVERGED
from hidden_core.training import (
    EpochRecord,
    TrialResult,
    _result,
    dead_units_max,
    held_batch,
    make_optimizer,
    make_schedule,
    training_setup,
)

PRUNED = records.PRUNED  # the trial-record status of a seed stopped by its cell's pruner

# on_epoch(seed, record) -> True to stop (prune) that seed after this epoch.
OnEpoch = Callable[[int, EpochRecord], bool | None]
# after_epoch(epoch, {seed: record}) -> the seeds to stop (prune) after this epoch.
AfterEpoch = Callable[[int, dict[int, EpochRecord]], Collection[int] | None]


# ---- effective weights of all seeds at once -------------------------------------------
@dataclass
class _WeightLayer:
    """Where one weight layer's tensors sit in the stacked state."""

    path: str  # module path inside the network, e.g. "features.1"
    parametrization: nn.Module | None  # seed 0's instance, used for its code, not its tensors
    own: dict[str, str] = field(default_factory=dict)  # parametrization attribute -> state key
    per_seed: list[nn.Module] = field(default_factory=list)  # every seed's instance (their fixed attributes, e.g. supermask's eval_seed)

    @property
    def original(self) -> str:
        return f"{self.path}.parametrizations.weight.original" if self.parametrization is not None else f"{self.path}.weight"


def _weight_layers(net: nn.Module) -> list[_WeightLayer]:
    paths = {id(m): name for name, m in net.named_modules()}
    out = []
    for layer in weight_layers(net):
        path = paths[id(layer)]
        p = parametrization_of(layer)
        own = {}
        if p is not None:
            prefix = f"{path}.parametrizations.weight.0."
            own = {name: prefix + name for name, _ in list(p.named_parameters()) + list(p.named_buffers())}
        out.append(_WeightLayer(path, p, own))
    return out


class _PenaltyOf(nn.Module):
    """The method's own penalty as a module, so functional_call can run it on one seed's
    tensors (under vmap: on every seed's)."""

    def __init__(self, model: HiddenNetwork):
        super().__init__()
        self.model = model

    def forward(self):
        return self.model.penalty()


# ---- the stack ------------------------------------------------------------------------
class SeedStack:
    """The tensors of several seeds' HiddenNetworks stacked along a leading seed dimension,
    their optimizer and schedule, and the vectorized step and evaluation."""

    def __init__(self, config: TrialConfig, models: list[HiddenNetwork], device: torch.device, loss_fn: nn.Module, autocast, forward: str = "auto"):
        self.config = config
        self.device = device
        self.loss_fn = loss_fn
        self.autocast = autocast
        first = models[0]
        self.layers = _weight_layers(first.net)
        modules = [dict(m.net.named_modules()) for m in models]
        for layer in self.layers:
            layer.per_seed = [parametrization_of(mods[layer.path]) for mods in modules]
        states = [m.net.state_dict() for m in models]
        learned = {name for name, p in first.net.named_parameters() if p.requires_grad}
        self.state: dict[str, torch.Tensor] = {}
        for name in states[0]:
            stacked = torch.stack([s[name].detach() for s in states]).to(device)
            self.state[name] = nn.Parameter(stacked) if name in learned else stacked
        self.learned = [name for name in self.state if name in learned]
        self.skeleton = build_architecture(config).to(device)  # the plain architecture: its code, not its tensors
        for p in self.skeleton.parameters():
            p.requires_grad_(False)
        self.forward_kind, self.forward = batched_forward(self.skeleton, forward)
        self.penalty_module = _PenaltyOf(first) if first.penalty() is not None else None
        self.optimizer = make_optimizer(config, [self.state[n] for n in self.learned])
        self.schedule = make_schedule(config, self.optimizer)

    @property
    def size(self) -> int:
        return len(next(iter(self.state.values())))

    # -- effective weights and forward
    def effective(self, training: bool, generators: list[torch.Generator]) -> dict[str, torch.Tensor]:
        """The skeleton's state for this step: every weight layer's effective weight
        computed once for all seeds, everything else as stored."""
        out = {}
        consumed = set()
        for layer in self.layers:
            original = self.state[layer.original]
            consumed.add(layer.original)
            consumed.update(layer.own.values())
            out[f"{layer.path}.weight"] = self._layer_weight(layer, original, training, generators)
        for name, tensor in self.state.items():
            if name not in consumed:
                out[name] = tensor
        return out

    def _layer_weight(self, layer: _WeightLayer, original: torch.Tensor, training: bool, generators) -> torch.Tensor:
        p = layer.parametrization
        if p is None:
            return original
        own = {attr: self.state[key] for attr, key in layer.own.items()}
        # the method's batched form (its parametrization's batched_weight), an elementwise
        # forward called once on the stacked tensors, else its forward once per seed:
        # always correct, only slower
        batched = p.batched_weight(original, own, training, generators, layer.per_seed)
        if batched is not None:
            return batched
        if p.elementwise:
            return functional_call(p, own, (original,))
        return torch.stack([functional_call(p, {k: v[i] for k, v in own.items()}, (original[i],)) for i in range(len(original))])

    def _penalty_one(self, state):
        return functional_call(self.penalty_module, state, ())

    def penalties(self) -> torch.Tensor | None:
        if self.penalty_module is None:
            return None
        if self.size == 1:
            return self._penalty_one({f"model.net.{name}": tensor[0] for name, tensor in self.state.items()}).unsqueeze(0)
        state = {f"model.net.{name}": tensor for name, tensor in self.state.items()}
        return vmap(self._penalty_one)(state)

    def logits(self, weights: dict[str, torch.Tensor], x: torch.Tensor, training: bool) -> torch.Tensor:
        """(seeds, batch, classes). One seed left and no layer kernels: the plain network
        through functional_call (the seed dimension is a view away), no vmap."""
        if self.size == 1 and self.forward_kind == "vmap":
            self.skeleton.train(training)
            return functional_call(self.skeleton, {k: v[0] for k, v in weights.items()}, (x[0],)).unsqueeze(0)
        return self.forward(weights, x, training)

    def losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each seed's loss, by the trial's own loss function. Cross-entropy (what `train`
        uses) as one kernel over (seeds, classes, batch), each seed's mean taken after: 4x
        cheaper than under vmap on the CPU, and the same values."""
        if self.size == 1:
            return self.loss_fn(logits[0], y[0]).unsqueeze(0)
        if type(self.loss_fn) is nn.CrossEntropyLoss and self.loss_fn.weight is None:
            per_example = F.cross_entropy(logits.transpose(1, 2), y, reduction="none", label_smoothing=self.loss_fn.label_smoothing)
            return per_example.mean(1)
        return vmap(self.loss_fn)(logits, y)

    def step(self, x: torch.Tensor, y: torch.Tensor, generators) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of every seed on its own batch (x: (seeds, batch, ...)).
        Returns each seed's loss and correct count (on the device, no sync)."""
        with self.autocast:
            weights = self.effective(True, generators)
            logits = self.logits(weights, x, True)
            losses = self.losses(logits, y)
            penalties = self.penalties()
            if penalties is not None:
                losses = losses + penalties
        self.optimizer.zero_grad(set_to_none=True)
        # The seeds share no parameter, so the gradient of the sum is each seed's own.
        losses.sum().backward()
        self.optimizer.step()
        return losses.detach(), (logits.detach().argmax(-1) == y).sum(1)

    @torch.no_grad()
    def evaluate(self, loader: DeviceData, splits: tuple[str, ...], batch_size: int) -> list[list[float]]:
        """Per split, every seed's accuracy (NaN for an empty split); one host sync."""
        counts = []
        totals = []
        with self.autocast:
            weights = self.effective(False, [])
            for split in splits:
                correct = torch.zeros(self.size, device=self.device, dtype=torch.int64)
                total = 0
                for x, y in loader.eval_batches(split, batch_size):
                    # the same inputs for every seed (expand: no copy)
                    correct += (self.logits(weights, x.expand(self.size, *x.shape), False).argmax(-1) == y).sum(1)
                    total += len(y)
                counts.append(correct)
                totals.append(total)
        counts_host = torch.stack(counts).tolist() if counts else []
        return [[c / t if t else float("nan") for c in row] for row, t in zip(counts_host, totals, strict=True)]

    # -- one seed's checkpoint (hidden_core/checkpoint.py, as `train` writes it)
    def learned_order_matches(self, model: HiddenNetwork) -> bool:
        return [n for n, p in model.net.named_parameters() if p.requires_grad] == self.learned

    def seed_optimizer_state(self, index: int) -> dict:
        """The state_dict a one-seed optimizer of this seed would have: the stacked
        per-parameter state sliced (a scalar such as Adam's step is every seed's)."""
        stacked = self.optimizer.state_dict()
        state = {k: {name: (v[index].clone() if torch.is_tensor(v) and v.dim() > 0 else v) for name, v in entry.items()}
                 for k, entry in stacked["state"].items()}
        return {"state": state, "param_groups": stacked["param_groups"]}

    def load_optimizer(self, states: list[dict], schedule: dict) -> None:
        """Resume: the seeds' one-seed optimizer states (in stack order) stacked, and the
        schedule (the same for every seed of a cell at one epoch)."""
        first = states[0]
        state = {k: {name: (torch.stack([s["state"][k][name] for s in states]) if torch.is_tensor(v) and v.dim() > 0 else v)
                     for name, v in entry.items()} for k, entry in first["state"].items()}
        self.optimizer.load_state_dict({"state": state, "param_groups": first["param_groups"]})
        self.schedule.load_state_dict(schedule)

    def save_checkpoint(self, index: int, trial: _Seed, folder: str, device: torch.device) -> None:
        """The seed's checkpoint, as `train` writes it for the trial alone (its model,
        optimizer, schedule, history and random stream), so either can resume it."""
        if not self.learned_order_matches(trial.model):
            raise AssertionError("the stacked parameters are not in the network's order; checkpoints would not match `train`'s")
        trial.model.net.load_state_dict(self.seed_state(index))
        cuda = device.type == "cuda"
        checkpoints.save(folder, TrainingCheckpoint(
            trial_id=trial.trial_id,
            model=trial.model.state_dict(),
            optimizer=self.seed_optimizer_state(index),
            schedule=self.schedule.state_dict(),
            history=[r.to_dict() for r in trial.history],
            early_loss_peak=trial.early_loss_peak,
            rng_cpu=torch.get_rng_state() if cuda else trial.generator.get_state(),
            rng_cuda=trial.generator.get_state() if cuda else None,  # the seed's own stream is `train`'s global one
        ))

    # -- seeds leaving
    def seed_state(self, index: int) -> dict[str, torch.Tensor]:
        """One seed's network state (its HiddenNetwork.net state_dict keys)."""
        return {name: tensor[index].detach().clone() for name, tensor in self.state.items()}

    def keep(self, indices: list[int]) -> None:
        """Keep only these seeds: the others stop costing compute. Optimizer state (momentum,
        Adam moments) and the schedule carry over."""
        index = torch.tensor(indices, device=self.device)
        for layer in self.layers:
            layer.per_seed = [layer.per_seed[i] for i in indices]
        old_size = self.size
        old_optimizer = self.optimizer.state_dict()
        old_schedule = self.schedule.state_dict()
        learned = set(self.learned)
        for name, tensor in list(self.state.items()):
            sliced = tensor.detach().index_select(0, index)
            self.state[name] = nn.Parameter(sliced) if name in learned else sliced
        for entry in old_optimizer["state"].values():
            for key, value in entry.items():
                if torch.is_tensor(value) and value.dim() > 0 and len(value) == old_size:
                    entry[key] = value.index_select(0, index.to(value.device))
        self.optimizer = make_optimizer(self.config, [self.state[n] for n in self.learned])
        self.schedule = make_schedule(self.config, self.optimizer)  # sets lr to the start's...
        self.schedule.load_state_dict(old_schedule)
        self.optimizer.load_state_dict(old_optimizer)  # ...this puts back the current lr


# ---- the training loop ----------------------------------------------------------------
@contextmanager
def _global_rng(generator: torch.Generator, device: torch.device):
    """Run code that draws from the global RNG (random_crop_flip) on `generator`'s stream."""
    cuda = device.type == "cuda"
    saved = torch.cuda.get_rng_state(device) if cuda else torch.get_rng_state()
    (torch.cuda.set_rng_state if cuda else torch.set_rng_state)(generator.get_state(), *((device,) if cuda else ()))
    try:
        yield
    finally:
        generator.set_state(torch.cuda.get_rng_state(device) if cuda else torch.get_rng_state())
        if cuda:
            torch.cuda.set_rng_state(saved, device)
        else:
            torch.set_rng_state(saved)


@dataclass
class _Seed:
    seed: int
    model: HiddenNetwork
    initial_states: list[torch.Tensor]
    generator: torch.Generator
    trial_id: str
    history: list[EpochRecord] = field(default_factory=list)
    train_seconds: float = 0.0
    sample_seconds: float = 0.0
    samples: int = 0
    early_loss_peak: float = math.nan  # the first epoch's largest minibatch loss (raw), as `train` keeps it


def check_cell(config: TrialConfig, seeds: Sequence[int]) -> None:
    if not seeds:
        raise ValueError("seeds: a cell needs at least one seed")
    if not method_info(config.method).vectorizes:
        raise ValueError(f"method: {config.method} does not vectorize (its registry line says vectorizes=False: it acts between steps or epochs); train its seeds one by one")
    hooks = [h for h in ("after_step", "after_epoch", "optimized") if getattr(method_class(config.method), h) is not getattr(Method, h)]
    if hooks:
        raise ValueError(f"method: {config.method} overrides {', '.join(hooks)}, which train_seeds does not call; its registry line must say vectorizes=False")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: {list(seeds)} repeats a seed; each seed is one trial")


def train_seeds(
    config: TrialConfig,
    seeds: Sequence[int],
    run: RunOptions | None = None,
    *,
    data: DataSplits | None = None,
    on_epoch: OnEpoch | None = None,
    after_epoch: AfterEpoch | None = None,
    checkpoint_dirs: Mapping[int, str] | None = None,
    checkpoint_due: Callable[[int], bool] | None = None,
    subnet_paths: Mapping[int, str] | None = None,
    forward: str = "auto",
) -> list[TrialResult]:
    """Train `config` once per seed in `seeds`, vectorized; results in the order of `seeds`.
    on_epoch(seed, record) is called after each seed's epoch (not after a diverged one, as
    in `train`); returning True stops that seed (status "pruned"). after_epoch(epoch,
    {seed: record}) is called once per epoch after on_epoch, with the records of the
    seeds that ran it (diverged ones left out) and after their checkpoints are written;
    it returns the seeds to stop (pruned) too. forward: "auto" (the batched layer
    interpreter where it applies, else vmap), "layers" or "vmap"
    (hidden_core.batched_forward).

    checkpoint_dirs {seed: folder}: each seed checkpoints into its own folder after every
    epoch, in the format (and with the trial_id) `train` writes, and resumes from what is
    there: a seed's checkpoint can be resumed by `train` alone and the other way round.
    Seeds whose checkpoints are at different epochs train in groups of equal epoch, one
    group after the other (the least advanced first). checkpoint_due(epoch): whether to
    write this epoch's checkpoints (default: every epoch; a sweep writes them when it
    reports). subnet_paths {seed: file}: what each
    seed learned, written when it ends completed or diverged (as `train`'s save_subnet;
    a pruned seed's file is made from its checkpoint, as for a pruned trial)."""
    check_cell(config, seeds)
    run = run or RunOptions()
    resumed = {s: _read_checkpoint(checkpoint_dirs, config, s) for s in seeds} if checkpoint_dirs else {}
    groups: dict[int, list[int]] = {}
    for s in seeds:
        groups.setdefault(len(resumed[s].history) if resumed.get(s) else 0, []).append(s)
    if len(groups) > 1:
        if data is None:
            data = training_setup(config, run, None)[2]
        results: dict[int, TrialResult] = {}
        for _, group in sorted(groups.items()):
            for s, result in zip(group, train_seeds(config, group, run, data=data, on_epoch=on_epoch, after_epoch=after_epoch,
                                                      checkpoint_dirs=checkpoint_dirs, checkpoint_due=checkpoint_due, subnet_paths=subnet_paths,
                                                      forward=forward), strict=True):
                results[s] = result
        return [results[s] for s in seeds]
    return _train_group(config, list(seeds), run, data, on_epoch, after_epoch, checkpoint_dirs or {}, checkpoint_due, subnet_paths or {}, resumed, forward)


def _train_group(config: TrialConfig, seeds: list[int], run: RunOptions, data: DataSplits | None, on_epoch: OnEpoch | None,
                 after_epoch: AfterEpoch | None, checkpoint_dirs: Mapping[int, str], checkpoint_due: Callable[[int], bool] | None,
                 subnet_paths: Mapping[int, str], resumed: dict[int, TrainingCheckpoint | None], forward: str) -> list[TrialResult]:
    """train_seeds for seeds whose checkpoints (if any) are all at the same epoch."""
    run, device, splits, loader = training_setup(config, run, data)
    configs = [config.model_copy(update={"seed": s}) for s in seeds]
    trials = []
    for c in configs:
        model = build_model(c, device)
        generator = torch.Generator(device=device).manual_seed(c.seed)  # = train's torch.manual_seed(seed)
        trial = _Seed(c.seed, model, model.weight_states(), generator, c.trial_id)  # initial states before any resume, as `train`
        state = resumed.get(c.seed)
        if state is not None:
            model.load_state_dict(state.model)
            generator.set_state((state.rng_cuda if device.type == "cuda" else state.rng_cpu).cpu())
            trial.history = [EpochRecord(**r) for r in state.history]
            trial.early_loss_peak = state.early_loss_peak
            trial.train_seconds = sum(r.seconds for r in trial.history)
        trials.append(trial)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if run.amp and device.type == "cuda" else nullcontext()
    stack = SeedStack(config, [t.model for t in trials], device, nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), autocast, forward)
    states = [resumed.get(s) for s in seeds]
    if states[0] is not None:
        stack.load_optimizer([s.optimizer for s in states], states[0].schedule)
    results: dict[int, TrialResult] = {}
    active = list(trials)
    n = loader.n_train
    held = held_batch(loader)
    done = len(trials[0].history)
    if done >= config.epochs:  # every epoch ran before (a checkpoint of the last epoch)
        for i, trial in enumerate(trials):
            results[trial.seed] = _finish(trial, COMPLETED, config.epochs, stack.seed_state(i), device, config, run, subnet_paths, held)
        active = []

    for epoch in range(done + 1, config.epochs + 1 if active else 0):
        started = time.perf_counter()
        lr = stack.optimizer.param_groups[0]["lr"]
        generators = [t.generator for t in active]
        order = torch.stack([torch.randperm(n, device=device, generator=g) for g in generators])
        loss_sum = torch.zeros(len(active), device=device)
        correct = torch.zeros(len(active), device=device, dtype=torch.int64)
        peak = torch.full((len(active),), -math.inf, device=device)  # each seed's largest minibatch loss, first epoch only
        for start in range(0, n, config.batch_size):
            idx = order[:, start : start + config.batch_size]
            x = loader.x_train[idx]
            if loader.augment:
                x = torch.stack([_augment(x[i], g, device) for i, g in enumerate(generators)])
            x, y = loader._prepare(x), loader.y_train[idx]
            losses, hits = stack.step(x, y, generators)
            loss_sum += losses * idx.shape[1]
            correct += hits
            if epoch == 1:
                peak = torch.fmax(peak, losses.float())
        stack.schedule.step()
        train_losses = (loss_sum / n).tolist()  # the epoch's one host sync
        if epoch == 1:
            for trial, value in zip(active, peak.tolist(), strict=True):
                trial.early_loss_peak = value
        train_accs = [c / n for c in correct.tolist()]
        train_elapsed = time.perf_counter() - started
        finite = [math.isfinite(v) for v in train_losses]
        accuracies = stack.evaluate(loader, ("val", "test"), run.eval_batch_size) if any(finite) else None
        share = (time.perf_counter() - started) / len(active)
        stopped: dict[int, str] = {}
        ran: dict[int, EpochRecord] = {}
        save = bool(checkpoint_dirs) and (checkpoint_due is None or checkpoint_due(epoch))
        for i, trial in enumerate(active):
            trial.sample_seconds += train_elapsed / len(active)
            trial.samples += n
            trial.train_seconds += share
            if not finite[i]:
                trial.history.append(EpochRecord(epoch, train_losses[i], train_accs[i], float("nan"), float("nan"), lr, share))
                stopped[i] = DIVERGED
                continue
            record = EpochRecord(epoch, train_losses[i], train_accs[i], accuracies[0][i], accuracies[1][i], lr, share)
            trial.history.append(record)
            ran[trial.seed] = record
            if save and trial.seed in checkpoint_dirs:
                stack.save_checkpoint(i, trial, checkpoint_dirs[trial.seed], device)
        for i, trial in enumerate(active):
            if i not in stopped and on_epoch is not None and on_epoch(trial.seed, ran[trial.seed]):
                stopped[i] = PRUNED
        prune = set(after_epoch(epoch, ran) or ()) if after_epoch is not None and ran else set()
        for i, trial in enumerate(active):
            if i not in stopped and trial.seed in prune:
                stopped[i] = PRUNED
            elif i not in stopped and epoch == config.epochs:
                stopped[i] = COMPLETED
        for i, status in stopped.items():
            trial = active[i]
            results[trial.seed] = _finish(trial, status, epoch, stack.seed_state(i), device, config, run, subnet_paths, held)
        if stopped:
            active = [t for i, t in enumerate(active) if i not in stopped]
            if not active:
                break
            stack.keep([i for i in range(len(generators)) if i not in stopped])
    return [results[s] for s in seeds]


def _read_checkpoint(folders: Mapping[int, str], config: TrialConfig, seed: int) -> TrainingCheckpoint | None:
    """The seed's checkpoint (None without one); another trial's is a CheckpointMismatch."""
    folder = folders.get(seed)
    if not folder:
        return None
    return checkpoints.load(folder, config.model_copy(update={"seed": seed}).trial_id)


def _augment(x: torch.Tensor, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    with _global_rng(generator, device):
        return random_crop_flip(x, CROP_PADDING)


def _finish(trial: _Seed, status: str, epoch: int, state: dict[str, torch.Tensor], device: torch.device, config: TrialConfig,
            run: RunOptions, subnet_paths: Mapping[int, str], held: torch.Tensor) -> TrialResult:
    """The seed's TrialResult, its statistics and dead units measured on its own network
    (the pass `train` makes, on the same held batch); its subnet file written (completed
    or diverged) as `train` writes it."""
    trial.model.net.load_state_dict(state)
    sps = trial.samples / trial.sample_seconds if trial.sample_seconds else 0.0
    dead = dead_units_max(trial.model, held)
    result = _result(status, epoch if status == DIVERGED else None, trial.history, trial.model, trial.initial_states, trial.train_seconds, sps, device,
                     early_loss_peak=trial.early_loss_peak, dead_units_max=dead, classes=config.dataset_info.num_classes)
    path = subnet_paths.get(trial.seed)
    if path and status != PRUNED:
        from hidden_core.subnet.state import save_subnet

        save_subnet(path, trial.model, config.model_copy(update={"seed": trial.seed}), result=result, run=run)
    return result


__all__ = ["PRUNED", "SeedStack", "check_cell", "train_seeds"]
