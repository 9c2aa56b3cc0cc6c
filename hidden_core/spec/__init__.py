"""Sweep specs: one YAML file -> a validated, frozen SweepSpec -> the planned trials.

A spec names a sweep and says what to cross::

    name: quickstart
    base:   {dataset: mnist1d, model: mlp, epochs: 20}      # any TrialConfig field
    grid:                                                  # lists, crossed fully
      method: [dense, {method: edge_popup, optimizer: adam, lr: 0.003}]
      width: [0.25, 1, 4]
      seed: [0, 1]
    search:                                                # optional, Optuna distributions
      lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
    samples_per_cell: 8
    pruner: {type: median, n_startup_trials: 3}            # pruning on val_acc
    resources: {cpu: 1, gpu: 0.25}                         # per trial; fractions share a device
    max_concurrent: 8                                      # default: as many as the cluster holds
    max_failures: 1                                        # retries after a lost worker/node
    report_every_s: 1.0                                    # see below
    vectorize: auto                                        # seeds | none | auto: see below
    run: {amp: true}                                       # RunOptions (not device/threads)
    loggers: [mlflow, tensorboard, wandb]                  # trackers: hidden_core/tune/trackers.py

A grid value may be a mapping: it sets its axis' field and may set companion fields with it
(``{method: edge_popup, lr: 0.003}``), which is how one sweep gives each method its own
optimizer settings without crossing them.

Identity: every trial's config is normalized (options its method or weight distribution
does not read are reset, so ``dense`` crossed with five k values is one trial) and named by
``TrialConfig.trial_id``. A *cell* is a grid point without its seed and without searched
parameters; ``cell_id`` hashes that, and pruning compares a trial only with its own cell.

With ``search``, every grid point (seed included) gets ``samples_per_cell`` sampled trials;
the points of one cell (its seeds) share one Optuna study.

``report_every_s``: a trial reports to Tune (metrics of every epoch since its last report)
at most this often, and after its last epoch; 0 reports every epoch. Pruning decides at
reports, so 0 gives the finest pruning on short epochs, while the default spares sub-second
epochs a driver round trip each. Checkpoints have their own cadence, the run option
``checkpoint_every_s`` (``run: {checkpoint_every_s: 0}`` for every epoch; default 30 s, every
epoch with a pruner).

``vectorize``: ``seeds`` trains the seeds of one grid cell (trials equal but for ``seed``)
as one Tune trial running ``hidden_core.vectorized.train_seeds``; every seed stays its own
trial to every reader (its row, epochs, checkpoint, subnet file, pruning decision).
``none``: one Tune trial per seed. ``auto`` (the default): ``seeds`` for MLP cells (where it
was measured to win; benchmarks/bench_vectorized.py) of a sweep without a pruner (seeds
trained together finish together, so a median or percentile pruner would stop none),
``none`` otherwise. Cells it cannot
vectorize (a lottery ticket, ``search``, ``compile``, ``loggers``: a tracker run per seed,
one seed left) run one trial per seed either way; ``--dry-run`` lists which trials run
together. Not part of any trial's identity.

Validation reports every problem at once (up to ``MAX_PROBLEMS``), each with its path in the
file (``grid.keep_fraction[2]: 1.5 is not in (0, 1]``), as a ``ConfigError``. This module
imports neither torch nor Ray nor Optuna.

Strict and bounded, so that a bad spec is refused in well under a second and a megabyte,
before anything is written or started:

- the file itself: size, encoding, aliases, nesting and duplicate keys (``strict_yaml``);
- values: strict types and finite, bounded numbers (``config.BOUNDS`` for trial fields, the
  ``Field`` bounds below for the spec's own keys, each with its reason);
- expansion: the planned-trial count is the product of the grid's list lengths (times
  ``samples_per_cell`` with a search), computed before any trial is built, and refused above
  ``max_trials`` (default ``DEFAULT_MAX_TRIALS``; raise it in the spec or with
  ``hidden sweep run --max-trials``). 10,000 is far above every sweep in sweeps/ (at most a
  few hundred) and a sweep of 10,000 ten-second trials is already 28 CPU-hours; planning
  costs about 150 us and 2.6 KB per trial, so the cap keeps a typo (10,000 seeds x 1,000
  split seeds) from eating the driver's memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from hidden_core.config import (
    DIST_FIELDS,
    DIST_SPECIFIC_FIELDS,
    MAX_EPOCHS,
    METHOD_FIELDS,
    METHOD_SPECIFIC_FIELDS,
    SEED_LIMIT,
    ConfigError,
    RunOptions,
    TrialConfig,
    brief,
    clip,
    error_message,
    format_validation_error,
    suggestion,
)
from hidden_core.strict_yaml import load_yaml_file

PRUNERS: tuple[str, ...] = ("none", "median", "percentile", "successive_halving", "hyperband")
# RunOptions the runner sets per trial; a spec's `run:` section may set the others
RUNNER_SET_RUN_OPTIONS = frozenset({"device", "checkpoint_dir", "threads", "save_subnet"})
SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,99}")  # matched whole (re.fullmatch)
MAX_COMBINATION_PROBLEMS = 20
MAX_PROBLEMS = 50  # a hostile file can have 10,000 problems; the first 50 say enough
DEFAULT_MAX_TRIALS = 10_000
MAX_MAX_TRIALS = 10_000_000  # the measurement: 10M planned trials passed 3 GB
MAX_CHOICES = 1000  # categorical choices and values per grid axis are bounded by max_trials
TRIAL_FIELDS: tuple[str, ...] = tuple(TrialConfig.model_fields)


class _Strict(BaseModel):
    # strict: a YAML `true` is not 1, '7' is not 7, 1.0 is not the integer 1; floats finite
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


# ---- search distributions ------------------------------------------------------------------
class FloatParam(_Strict):
    """Optuna FloatDistribution."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def distribution(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)


class IntParam(_Strict):
    """Optuna IntDistribution."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1, le=SEED_LIMIT)

    def distribution(self) -> Any:
        import optuna

        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)


class CategoricalParam(_Strict):
    """Optuna CategoricalDistribution."""

    type: Literal["categorical"]
    choices: tuple[None | bool | int | float | str, ...] = Field(max_length=MAX_CHOICES)

    @field_validator("choices", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    def distribution(self) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution(self.choices)


SearchParam = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
_SEARCH_TYPES: dict[str, type[_Strict]] = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


# ---- pruners -------------------------------------------------------------------------------
# Pruner counts are trials or epochs: bounded by the largest sweep (MAX_MAX_TRIALS) and the
# longest trial (MAX_EPOCHS); reduction factors above 100 would prune all but one trial per rung.
class _PercentileArgs(_Strict):
    n_startup_trials: int = Field(5, ge=0, le=MAX_MAX_TRIALS)
    n_warmup_steps: int = Field(0, ge=0, le=MAX_EPOCHS)
    interval_steps: int = Field(1, ge=1, le=MAX_EPOCHS)
    n_min_trials: int = Field(1, ge=1, le=MAX_MAX_TRIALS)


class _PercentileOnlyArgs(_PercentileArgs):
    percentile: float = Field(ge=0, le=100)


class _SuccessiveHalvingArgs(_Strict):
    min_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(4, ge=2, le=100)
    min_early_stopping_rate: int = Field(0, ge=0, le=100)
    bootstrap_count: int = Field(0, ge=0, le=MAX_MAX_TRIALS)

    @field_validator("min_resource")
    @classmethod
    def _min_resource(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= MAX_EPOCHS:
            raise ValueError(f"{v} must be in [1, {MAX_EPOCHS}] or 'auto'")
        return v


class _HyperbandArgs(_Strict):
    min_resource: int = Field(1, ge=1, le=MAX_EPOCHS)
    max_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2, le=100)
    bootstrap_count: int = Field(0, ge=0, le=MAX_MAX_TRIALS)

    @field_validator("max_resource")
    @classmethod
    def _max_resource(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= MAX_EPOCHS:
            raise ValueError(f"{v} must be in [1, {MAX_EPOCHS}] or 'auto'")
        return v


_PRUNER_ARGS: dict[str, type[_Strict] | None] = {
    "none": None,
    "median": _PercentileArgs,
    "percentile": _PercentileOnlyArgs,
    "successive_halving": _SuccessiveHalvingArgs,
    "hyperband": _HyperbandArgs,
}


class PrunerSpec(_Strict):
    """Which Optuna pruner decides, per epoch and per cell, whether a trial stops early.

    Steps follow Optuna's convention: the value after epoch e is reported at step e-1, so
    ``n_warmup_steps: 2`` never prunes during the first two epochs and resources
    (``min_resource``) count epochs."""

    type: Literal["none", "median", "percentile", "successive_halving", "hyperband"] = "none"
    args: dict[str, Any] = Field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.type != "none"


MIN_SHARE = 0.01


# ---- resources -----------------------------------------------------------------------------
class Resources(_Strict):
    """What one trial reserves on its node. Fractions share a CPU or GPU between trials.

    Bounds: a fraction is at least ``MIN_SHARE`` (at most 100 trials share one device; Ray
    counts resources in units of 1e-4 and rejects smaller requests), and a trial asks for at
    most 1024 CPUs and 64 GPUs (more than any single node has)."""

    cpu: float = 1.0
    gpu: float = 0.0

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: float) -> float:
        if not MIN_SHARE <= v <= 1024:
            raise ValueError(f"{v!r} is not in [{MIN_SHARE}, 1024]")
        if v > 1 and v != int(v):
            raise ValueError(f"{v}: more than one CPU must be a whole number")
        return v

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: float) -> float:
        if not (v == 0 or MIN_SHARE <= v <= 64):
            raise ValueError(f"{v!r} must be 0 or in [{MIN_SHARE}, 64]")
        if v > 1 and v != int(v):
            raise ValueError(f"{v}: more than one GPU must be a whole number")
        return v

    @property
    def threads(self) -> int:
        """torch CPU threads of a trial: its whole CPUs, at least one."""
        return max(1, int(self.cpu))

    @property
    def device(self) -> str:
        return "cuda" if self.gpu > 0 else "cpu"


# ---- controls of found subnetworks ---------------------------------------------------------
MAX_CONTROL_DRAWS = 100  # each draw re-evaluates every trial three times (random, shuffled, fresh)


class SubnetControls(_Strict):
    """``subnet_controls: {draws: 5, device: auto}``: after the trials, every final trial
    whose method learns a mask or signs (records.CONTROLLED_METHODS) is evaluated against
    its controls (hidden_core/subnet/controls.py), `draws` draws each, on `device` of the
    driver; the results are stored per trial (hidden_core/tune/controls_pass.py). Not part
    of any trial's identity: turning it on re-runs no trial."""

    draws: int = Field(5, ge=1, le=MAX_CONTROL_DRAWS)
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        RunOptions.model_validate({"device": v})  # one list of devices: RunOptions'
        return v


# ---- the spec ------------------------------------------------------------------------------
class SweepSpec(_Strict):
    """One study: the trials to cross, how to search and prune, what each trial reserves."""

    name: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = Field(default_factory=dict)
    search: dict[str, SearchParam] = Field(default_factory=dict)
    samples_per_cell: int = Field(1, ge=1, le=MAX_MAX_TRIALS)
    sampler: Literal["tpe", "random", "qmc", "gp"] = "tpe"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    study_storage: str | None = None
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1, le=MAX_MAX_TRIALS)
    max_failures: int = Field(1, ge=-1, le=100)
    report_every_s: float = Field(1.0, ge=0, le=86_400)
    max_trials: int = Field(DEFAULT_MAX_TRIALS, ge=1, le=MAX_MAX_TRIALS)
    vectorize: Literal["auto", "seeds", "none"] = "auto"
    run: dict[str, Any] = Field(default_factory=dict)
    loggers: dict[str, dict[str, Any]] = Field(default_factory=dict)  # experiment trackers: hidden_core/tune/trackers.py
    subnet_controls: SubnetControls | None = None  # found subnetworks vs controls, per final trial

    _plan: Plan | None = PrivateAttr(None)

    # -- derived --
    def run_options(self, **overrides: Any) -> RunOptions:
        """Execution options of every trial: the spec's `run:` section plus the device and
        threads its resources imply (overrides win). With a pruner, a checkpoint every epoch
        unless `run:` says otherwise: a pruned trial's subnet file is made from its last
        checkpoint, which then holds the epoch it was pruned at."""
        values = {"device": self.resources.device, "threads": self.resources.threads, **self.run, **overrides}
        if self.pruner.enabled and "checkpoint_every_s" not in self.run:
            values.setdefault("checkpoint_every_s", 0.0)
        return RunOptions.model_validate(values)

    def plan(self) -> Plan:
        """The crossed, normalized, deduplicated trials (computed once)."""
        if self._plan is None:
            plan, problems = _expand(self)
            if problems:
                raise ConfigError(problems)
            self._plan = plan
        return self._plan


@dataclass(frozen=True)
class PlannedTrial:
    """One fixed trial of the grid."""

    config: TrialConfig  # normalized
    trial_id: str
    cell_id: str
    point: tuple[tuple[str, Any], ...]  # the grid value of each axis, for display


@dataclass(frozen=True)
class SearchPoint:
    """One grid point whose searched parameters an Optuna sampler fills, `samples` times."""

    template: TrialConfig  # normalized; searched fields still at their base values
    cell_id: str
    space: tuple[str, ...]  # searched fields this point's method/distribution reads
    samples: int
    point: tuple[tuple[str, Any], ...]

    @property
    def seed(self) -> int:
        return self.template.seed

    @property
    def key(self) -> tuple[str, int]:
        """(cell_id, seed): how the store tells this point's trials apart."""
        return (self.cell_id, self.template.seed)

    def config_for(self, params: Mapping[str, Any]) -> TrialConfig:
        values = {**self.template.model_dump(), **params}
        return TrialConfig.model_validate(values).normalized()


@dataclass
class Plan:
    """What a spec expands to, before anything is skipped."""

    trials: list[PlannedTrial]
    points: list[SearchPoint]
    axes: dict[str, int]  # values listed per grid axis
    combinations: int  # size of the raw cross product
    duplicates: int  # combinations that normalized into an earlier trial
    by_id: dict[str, PlannedTrial] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {t.trial_id: t for t in self.trials}

    @property
    def total(self) -> int:
        return len(self.trials) + sum(p.samples for p in self.points)


# ---- identity ------------------------------------------------------------------------------
def cell_id(config: TrialConfig, searched: Iterable[str] = ()) -> str:
    """Hash of the normalized config without its seed and without searched parameters."""
    drop = {"seed", *searched}
    canonical = {k: v for k, v in config.canonical().items() if k not in drop}
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def unused_fields(config: TrialConfig) -> frozenset[str]:
    """Method/distribution options this config's method and distribution do not read."""
    used = METHOD_FIELDS[config.method] | DIST_FIELDS.get(config.weight_dist, frozenset())
    return (METHOD_SPECIFIC_FIELDS | DIST_SPECIFIC_FIELDS) - used


def spec_candidates(name: str, folders: Sequence[Path]) -> list[Path]:
    """Where a spec named `name` is looked for, in order: the path itself, the path + .yaml,
    and a bare name (no folder in it) in each of `folders`, as given and + .yaml."""
    names = [name] if name.endswith((".yaml", ".yml")) else [name, f"{name}.yaml"]
    paths = [Path(n) for n in names]
    if len(Path(name).parts) == 1:
        paths += [folder / n for folder in folders for n in names]
    return paths


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# ---- loading -------------------------------------------------------------------------------
def load_spec(path: str | Path, *, max_trials: int | None = None) -> SweepSpec:
    """Read and validate a spec file; every problem raises one ConfigError.
    `max_trials` (the command line's --max-trials) replaces the spec's own cap."""
    return parse_spec(load_yaml_file(path, "spec"), max_trials=max_trials)


def find_spec_file(name: str, folders: Sequence[Path]) -> Path:
    """`name` as a path (with or without .yaml), else as a file (with or without .yaml) in
    one of `folders`; ConfigError naming the files tried, with the near misses among the
    folders' specs, when there is none."""
    tried = spec_candidates(name, folders)
    try:
        for candidate in tried:
            if candidate.is_file():
                return candidate
    except (OSError, ValueError):  # a NUL byte or a name too long for the file system
        pass
    known = sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})
    return_hint = suggestion(Path(name).stem, known) if len(name) < 200 else ""
    others = list(dict.fromkeys(_shown(c) for c in tried[1:]))
    nor = f" (nor {', '.join(clip(o, 80) for o in others[:6])})" if others else ""
    raise ConfigError([f"spec: no such spec file {brief(name)}{nor}{return_hint}; specs in sweeps/: {', '.join(known) or '(none)'}"])


def parse_spec(data: Any, *, max_trials: int | None = None) -> SweepSpec:
    """Validate a spec given as a mapping (what load_spec reads from YAML)."""
    problems: list[str] = []
    try:
        return _parse_spec(data, max_trials, problems)
    except ConfigError as err:
        raise ConfigError(_capped(err.problems)) from None


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more problems"]


def _parse_spec(data: Any, max_trials: int | None, problems: list[str]) -> SweepSpec:
    if not isinstance(data, Mapping):
        raise ConfigError([f"spec: must be a mapping of keys (name, base, grid, ...), got {_kind(data)}"])
    allowed = list(SweepSpec.model_fields)
    for key in data:
        if key not in SweepSpec.model_fields:
            problems.append(f"{_key(key)}: unknown key{suggestion(key, allowed)}; allowed keys: {', '.join(allowed)}")

    name = data.get("name")
    if name is None:
        problems.append("name: missing; every sweep needs a name (it names its folder in the store)")
    elif not isinstance(name, str) or not SWEEP_NAME.fullmatch(name):
        problems.append(f"name: {brief(name)} is not a valid sweep name (1-100 letters, digits, '_', '.', '=', '-'; not starting with a symbol)")

    base = _mapping(data, "base", problems)
    grid_raw = _mapping(data, "grid", problems)
    search_raw = _mapping(data, "search", problems)
    grid = _check_grid(grid_raw, problems)
    _check_size(data, grid, search_raw, max_trials, problems)
    search = _check_search(search_raw, base, grid, problems)
    pruner = _check_pruner(data.get("pruner", "none"), problems)
    _check_base(base, grid, search, problems)

    run = _mapping(data, "run", problems)
    for key in run:
        if key in RUNNER_SET_RUN_OPTIONS:
            problems.append(f"run.{key}: set by the sweep runner from resources; leave it out")
    try:
        RunOptions.model_validate({k: v for k, v in run.items() if k not in RUNNER_SET_RUN_OPTIONS})
    except ValidationError as err:
        problems += _prefixed(err, "run", RunOptions)

    from hidden_core.tune.trackers import normalize_loggers

    loggers: dict[str, dict[str, Any]] = {}
    try:
        loggers = normalize_loggers(data.get("loggers"))
    except ValueError as err:
        problems.append(f"loggers: {err}")

    subnet_controls = _check_subnet_controls(data.get("subnet_controls"), problems)

    rest = {k: data[k] for k in ("description", "samples_per_cell", "sampler", "seed", "study_storage", "resources", "max_concurrent", "max_failures", "report_every_s", "max_trials", "vectorize") if k in data}
    if max_trials is not None:
        rest["max_trials"] = max_trials
    try:
        _Rest.model_validate(rest)
    except ValidationError as err:
        problems += _prefixed(err, "", _Rest)
    if isinstance(rest.get("study_storage"), str):
        problems += storage_url_problems(rest["study_storage"], "study_storage")
    if "samples_per_cell" in data and not search_raw:
        problems.append("samples_per_cell: only means something with a `search` section")

    if problems:
        raise ConfigError(problems)
    spec = SweepSpec.model_validate(
        {**rest, "name": name, "base": base, "grid": {k: tuple(v) for k, v in grid.items()}, "search": search, "pruner": pruner, "run": run, "loggers": loggers,
         "subnet_controls": subnet_controls}
    )
    plan, problems = _expand(spec)
    if not problems and spec.subnet_controls is not None and "method" not in spec.search:
        problems += _controls_without_methods(plan)
    if problems:
        raise ConfigError(problems)
    spec._plan = plan
    return spec


class _Rest(_Strict):
    """The scalar top-level keys, validated on their own so their errors carry their path.

    Bounds: ``seed`` as trial seeds; ``max_concurrent``, ``samples_per_cell`` and
    ``max_trials`` at most ``MAX_MAX_TRIALS``; ``max_failures`` at most 100 retries (-1:
    unlimited); ``report_every_s`` at most a day; ``description`` at most 10,000 characters."""

    description: str = Field("", max_length=10_000)
    samples_per_cell: int = Field(1, ge=1, le=MAX_MAX_TRIALS)
    sampler: Literal["tpe", "random", "qmc", "gp"] = "tpe"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    study_storage: str | None = Field(None, max_length=2000)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1, le=MAX_MAX_TRIALS)
    max_failures: int = Field(1, ge=-1, le=100)
    report_every_s: float = Field(1.0, ge=0, le=86_400)
    max_trials: int = Field(DEFAULT_MAX_TRIALS, ge=1, le=MAX_MAX_TRIALS)
    vectorize: Literal["auto", "seeds", "none"] = "auto"


def _check_subnet_controls(raw: Any, problems: list[str]) -> SubnetControls | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(f"subnet_controls: must be a mapping like {{draws: 5, device: auto}} (or leave it out), got {_kind(raw)}")
        return None
    try:
        return SubnetControls.model_validate(dict(raw))
    except ValidationError as err:
        problems += [line.replace(" or Value error, ", " or ") for line in _prefixed(err, "subnet_controls", SubnetControls)]
        return None


def _controls_without_methods(plan: Plan) -> list[str]:
    """subnet_controls on a sweep none of whose trials learns a mask or signs."""
    from hidden_core.records import CONTROLLED_METHODS

    methods = {t.config.method for t in plan.trials} | {p.template.method for p in plan.points}
    if methods & set(CONTROLLED_METHODS):
        return []
    return [f"subnet_controls: no trial of this sweep has controls (methods: {', '.join(sorted(methods))}); controls exist for "
            f"{', '.join(CONTROLLED_METHODS)}; add one of them or leave subnet_controls out"]


def planned_upper_bound(grid: Mapping[str, Sequence[Any]], samples_per_cell: int = 1) -> int:
    """Trials a grid expands to at most (before normalization merges any): the product of
    its list lengths, times the samples of each grid point with a search. No expansion."""
    return math.prod(len(v) for v in grid.values()) * samples_per_cell


def _check_size(data: Mapping, grid: dict[str, list[Any]], search: dict[str, Any], max_trials: int | None, problems: list[str]) -> None:
    """Refuse a spec that plans more than its cap, before any trial is built (raises at once:
    the per-value checks that follow cost time per value)."""
    cap = max_trials if max_trials is not None else data.get("max_trials", DEFAULT_MAX_TRIALS)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_MAX_TRIALS:
        cap = DEFAULT_MAX_TRIALS  # its own problem is reported by _Rest
    samples = data.get("samples_per_cell", 1) if search else 1
    samples = samples if isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1 else 1
    planned = planned_upper_bound(grid, samples)
    if planned > cap:
        sizes = " x ".join(f"{axis} {len(values):,}" for axis, values in grid.items())
        if samples > 1:
            sizes += f" x samples_per_cell {samples:,}"
        problems.append(
            f"grid: plans {planned:,} trials ({sizes}), more than max_trials {cap:,}; "
            f"shorten the lists, or raise max_trials in the spec or with --max-trials (at most {MAX_MAX_TRIALS:,})"
        )
        raise ConfigError(problems)


def storage_url_problems(url: str, path: str) -> list[str]:
    """Why `url` cannot be an Optuna storage (an SQLAlchemy URL of an installed driver), or []."""
    if not re.fullmatch(r"[a-z][a-z0-9+]*://\S*", url):
        return [f"{path}: {brief(url)} is not a database URL (e.g. sqlite:///studies.db, postgresql://host/db)"]
    try:
        from sqlalchemy.engine import make_url

        make_url(url).get_dialect()
    except ImportError:
        return []  # Optuna not installed here: the runner reports it
    except Exception as err:  # sqlalchemy's ArgumentError / NoSuchModuleError
        return [f"{path}: {brief(url)} is not a usable database URL ({clip(str(err).splitlines()[0] if str(err) else type(err).__name__, 120)})"]
    return []


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {brief(value)}" if not isinstance(value, Mapping | list) else type(value).__name__


def _key(key: Any) -> str:
    return clip(str(key), 60)


def _mapping(data: Mapping, key: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{key}: must be a mapping of field: value, got {_kind(value)}")
        return {}
    bad = [k for k in value if not isinstance(k, str)]
    for k in bad:
        problems.append(f"{key}.{_key(k)}: keys must be field names (text), got {brief(k)}")
    return {k: v for k, v in value.items() if isinstance(k, str)}


def _prefixed(err: ValidationError, prefix: str, model: type[BaseModel]) -> list[str]:
    """pydantic errors as 'path: message' lines for spec-level models. Errors of one path
    (the members of a union) merge into one line."""
    merged: dict[str, list[str]] = {}
    for e in err.errors():
        loc: list[str] = []
        owner: Any = model
        for part in e["loc"]:
            if isinstance(part, int):
                loc.append(f"[{part}]")
                continue
            fields = getattr(owner, "model_fields", None)
            if fields is not None and part in fields:
                loc.append(part)
                annotation = fields[part].annotation
                owner = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        msg = error_message(e)
        if e["type"] == "extra_forbidden":
            loc.append(_key(e["loc"][-1]))
            names = list(getattr(owner, "model_fields", {})) if owner is not None else []
            msg = f"unknown key{suggestion(e['loc'][-1], names)}; allowed keys: {', '.join(names)}" if names else "unknown key"
        elif e["type"] == "missing":
            msg = "missing"
        path = ".".join(p for p in (prefix, ".".join(loc).replace(".[", "[")) if p)
        merged.setdefault(path, [])
        if msg not in merged[path]:
            merged[path].append(msg)
    return [f"{path}: {' or '.join(msgs)}" if path else " or ".join(msgs) for path, msgs in merged.items()]


def _config_errors(values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Validate a TrialConfig; (field, rest-of-path, message) per problem ('' field: global)."""
    try:
        TrialConfig.model_validate(values)
    except ValidationError as err:
        out = []
        for line in format_validation_error(err):
            loc, sep, msg = line.partition(": ")
            if not sep:
                out.append(("", "", line))
                continue
            head, _, rest = loc.partition(".")
            if head in TrialConfig.model_fields or head in values:
                out.append((head, rest, msg))
            else:
                out.append(("", "", line))
        return out
    return []


def _join(path: str, rest: str) -> str:
    return f"{path}.{rest}" if rest else path


def _check_grid(grid: dict[str, Any], problems: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for axis, values in grid.items():
        path = f"grid.{axis}"
        if axis not in TrialConfig.model_fields:
            problems.append(f"grid.{_key(axis)}: unknown key{suggestion(axis, TRIAL_FIELDS)}; allowed keys: {', '.join(TRIAL_FIELDS)}")
            continue
        if not isinstance(values, list):
            problems.append(f"{path}: must be a list of values to cross, got {_kind(values)}; write [{brief(values)}] for a single value, or move it to base")
            continue
        if not values:
            problems.append(f"{path}: empty list; give at least one value (or remove the axis)")
            continue
        for i, value in enumerate(values):
            if isinstance(value, Mapping):
                if axis not in value:
                    problems.append(f"{path}[{i}]: a mapping value must set its axis' field {axis!r} (and may set companion fields)")
                for key in value:
                    if key != axis and key in grid:
                        problems.append(f"{path}[{i}].{_key(key)}: {brief(key)} is also a grid axis; set it in one place")
            elif isinstance(value, list):
                problems.append(f"{path}[{i}]: a list inside a grid list; give one value per entry")
        out[axis] = values
    return out


def _check_search(search: dict[str, Any], base: dict[str, Any], grid: dict[str, list[Any]], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in search.items():
        path = f"search.{name}"
        if name not in TrialConfig.model_fields:
            problems.append(f"search.{_key(name)}: unknown key{suggestion(name, TRIAL_FIELDS)}; allowed keys: {', '.join(TRIAL_FIELDS)}")
            continue
        if name in grid:
            problems.append(f"{path}: also a grid axis; a field is either crossed or searched")
            continue
        if name in base:
            problems.append(f"{path}: also set in base; a searched field takes its values from the search")
            continue
        if name == "seed":
            problems.append(f"{path}: seeds are replicates, not a hyperparameter; list them in grid.seed")
            continue
        if not isinstance(raw, Mapping):
            problems.append(f"{path}: must be a mapping like {{type: float, low: 0.001, high: 0.1, log: true}}, got {_kind(raw)}")
            continue
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in _SEARCH_TYPES:
            problems.append(f"{path}.type: {brief(kind)} is not allowed; use one of {', '.join(_SEARCH_TYPES)}{suggestion(kind, _SEARCH_TYPES)}")
            continue
        try:
            param = _SEARCH_TYPES[kind].model_validate(raw)
        except ValidationError as err:
            problems += _prefixed(err, path, _SEARCH_TYPES[kind])
            continue
        count = len(problems)
        kinds = _field_kinds(name)
        if kind == "float" and "float" not in kinds:
            problems.append(f"{path}.type: {name} takes {' or '.join(sorted(kinds))} values; use type int or categorical")
        elif kind == "int" and not kinds & {"int", "float"}:
            problems.append(f"{path}.type: {name} takes {' or '.join(sorted(kinds))} values; use type categorical")
        if isinstance(param, FloatParam | IntParam):
            if param.low > param.high:
                problems.append(f"{path}: low {param.low} > high {param.high}")
            if param.log and param.low <= 0:
                problems.append(f"{path}.low: {param.low}: a log scale needs low > 0")
            if param.log and isinstance(param, FloatParam) and param.step is not None:
                problems.append(f"{path}.step: a log scale takes no step")
            if param.step is not None and not param.step > 0:
                problems.append(f"{path}.step: {param.step} must be > 0")
            if isinstance(param, IntParam) and param.log and param.step != 1:
                problems.append(f"{path}.step: a log scale needs step 1")
            for bound in ("low", "high"):
                for field_name, rest, msg in _config_errors({**base, name: getattr(param, bound)}):
                    if field_name == name:
                        problems.append(f"{_join(f'{path}.{bound}', rest)}: {msg}")
        else:
            if not param.choices:
                problems.append(f"{path}.choices: empty list; give at least one choice")
            for i, choice in enumerate(param.choices):
                for field_name, rest, msg in _config_errors({**base, name: choice}):
                    if field_name == name:
                        problems.append(f"{_join(f'{path}.choices[{i}]', rest)}: {msg}")
        if len(problems) == count:
            out[name] = param.model_dump()
    return out


def _field_kinds(name: str) -> set[str]:
    annotation = TrialConfig.model_fields[name].annotation
    kinds: set[str] = set()
    for arg in (annotation, *typing.get_args(annotation)):
        if arg is bool:
            kinds.add("bool")
        elif arg is int:
            kinds.add("int")
        elif arg is float:
            kinds.add("float")
        elif arg is str or typing.get_origin(arg) is typing.Literal:
            kinds.add("categorical")
        elif typing.get_origin(arg) in (tuple, list):
            kinds.add("list")
    return kinds or {"categorical"}


def _check_pruner(raw: Any, problems: list[str]) -> dict[str, Any]:
    if raw is None:
        raw = "none"
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        problems.append(f"pruner: must be a name ({', '.join(PRUNERS)}) or a mapping with `type` and its arguments, got {_kind(raw)}")
        return {"type": "none"}
    kind = raw.get("type", "none")
    if not isinstance(kind, str) or kind not in _PRUNER_ARGS:
        problems.append(f"pruner.type: {brief(kind)} is not allowed; use one of {', '.join(PRUNERS)}{suggestion(kind, PRUNERS)}")
        return {"type": "none"}
    args = {k: v for k, v in raw.items() if k != "type"}
    if "args" in args:
        problems.append(f"pruner.args: give the pruner's arguments next to its type, e.g. pruner: {{type: {kind}, n_startup_trials: 3}}")
        return {"type": "none"}
    model = _PRUNER_ARGS[kind]
    if model is None:
        for key in args:
            problems.append(f"pruner.{_key(key)}: pruner 'none' takes no arguments")
        return {"type": "none"}
    try:
        validated = model.model_validate(args)
    except ValidationError as err:
        problems += _prefixed(err, "pruner", model)
        return {"type": "none"}
    return {"type": kind, "args": validated.model_dump()}


def _check_base(base: dict[str, Any], grid: dict[str, list[Any]], search: dict[str, Any], problems: list[str]) -> None:
    """Field-level problems of base and of each grid value, each at its own path."""
    overridden = set(grid) | set(search)
    for field_name, rest, msg in _config_errors(base):
        if field_name in base and field_name not in overridden:
            problems.append(f"{_join(f'base.{field_name}', rest)}: {msg}")
    # a grid value is checked with the base values no other axis replaces
    base = {k: v for k, v in base.items() if k not in grid}
    for axis, values in grid.items():
        for i, value in enumerate(values):
            assigned = dict(value) if isinstance(value, Mapping) else {axis: value}
            for key in assigned:
                if key not in TrialConfig.model_fields:
                    problems.append(f"grid.{axis}[{i}].{_key(key)}: unknown key{suggestion(key, TRIAL_FIELDS)}; allowed keys: {', '.join(TRIAL_FIELDS)}")
            assigned = {k: v for k, v in assigned.items() if k in TrialConfig.model_fields}
            for field_name, rest, msg in _config_errors({**base, **assigned}):
                if field_name not in assigned:
                    continue
                path = f"grid.{axis}[{i}]" if field_name == axis else f"grid.{axis}[{i}].{field_name}"
                problems.append(f"{_join(path, rest)}: {msg}")


# ---- expansion -----------------------------------------------------------------------------
def _expand(spec: SweepSpec) -> tuple[Plan, list[str]]:
    axes = list(spec.grid)
    if "seed" in axes:  # seeds of one cell next to each other
        axes.remove("seed")
        axes.append("seed")
    searched = tuple(spec.search)
    trials: dict[str, PlannedTrial] = {}
    points: dict[tuple[str, int], SearchPoint] = {}
    problems: list[str] = []
    seen_problems: set[str] = set()
    combinations = 0
    extra = 0
    for combo in itertools.product(*(range(len(spec.grid[a])) for a in axes)):
        combinations += 1
        values = dict(spec.base)
        point = []
        for axis, index in zip(axes, combo, strict=True):
            value = spec.grid[axis][index]
            if isinstance(value, Mapping):
                values.update(value)
                point.append((axis, dict(value)))
            else:
                values[axis] = value
                point.append((axis, value))
        try:
            config = TrialConfig.model_validate(values).normalized()
        except ValidationError:
            for field_name, rest, msg in _config_errors(values):
                line = _combination_line(spec, axes, combo, field_name, rest, msg)
                if line not in seen_problems:
                    seen_problems.add(line)
                    if len(problems) < MAX_COMBINATION_PROBLEMS:
                        problems.append(line)
                    else:
                        extra += 1
            continue
        space = tuple(n for n in searched if n not in unused_fields(config))
        cell = cell_id(config, searched)
        if space:
            key = (cell, config.seed)
            if key not in points:
                points[key] = SearchPoint(config, cell, space, spec.samples_per_cell, tuple(point))
        elif (trial_id := config.trial_id) not in trials:  # (a hash of the config: computed once)
            trials[trial_id] = PlannedTrial(config, trial_id, cell, tuple(point))
    if extra:
        problems.append(f"grid: ... and {extra} more invalid combinations")
    total = len(trials) + len(points) * spec.samples_per_cell
    duplicates = combinations - len(trials) - len(points) if not problems else 0
    if not problems and total == 0:
        problems.append("grid: the spec expands to no trials")
    axis_counts = {a: len(spec.grid[a]) for a in spec.grid}
    return Plan(list(trials.values()), list(points.values()), axis_counts, combinations, duplicates), problems


def _combination_line(spec: SweepSpec, axes: Sequence[str], combo: Sequence[int], field_name: str, rest: str, msg: str) -> str:
    """Where a problem that only a combination of values has is reported."""
    for axis, index in zip(axes, combo, strict=True):
        value = spec.grid[axis][index]
        if field_name == axis:
            return f"{_join(f'grid.{axis}[{index}]', rest)}: {msg}"
        if isinstance(value, Mapping) and field_name in value:
            return f"{_join(f'grid.{axis}[{index}].{field_name}', rest)}: {msg}"
    if field_name and field_name in spec.base:
        return f"{_join(f'base.{field_name}', rest)}: {msg}"
    described = ", ".join(f"{a}={_short(spec.grid[a][i], a)}" for a, i in zip(axes, combo, strict=True))
    where = f"grid ({described})" if described else "base"
    return f"{where}: {_join(field_name, rest)}: {msg}" if field_name else f"{where}: {msg}"


def _short(value: Any, axis: str) -> Any:
    return value[axis] if isinstance(value, Mapping) else value


# ---- cluster checks ------------------------------------------------------------------------
def check_resources(spec: SweepSpec, nodes: Sequence[Mapping[str, float]], where: str = "the largest node", hint: str = "add a node that has them") -> None:
    """Raise ConfigError when no node of the cluster can ever hold one trial.

    `nodes`: each alive node's total resources ({'CPU': 16, 'GPU': 1, ...}); `where` names
    them in the message and `hint` says where else the trials could run."""
    if not nodes:
        raise ConfigError(["resources: the cluster has no alive nodes"])
    need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    if any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in need.items() if v > 0) for node in nodes):
        return
    problems = []
    for key, path in (("CPU", "resources.cpu"), ("GPU", "resources.gpu")):
        most = max(node.get(key, 0.0) for node in nodes)
        if need[key] > most + 1e-9:
            what = f"{key}s" if need[key] != 1 else key
            problems.append(
                f"{path}: {need[key]:g} {what} per trial, but {where} has {most:g}; "
                f"no trial could ever start (lower it, or {hint})"
            )
    if not problems:
        problems.append(f"resources: no single node has both {need['CPU']:g} CPUs and {need['GPU']:g} GPUs")
    raise ConfigError(problems)

