"""The spec's models: what a validated spec is (SweepSpec and its parts), each key declared
once here; validate.py reads its allowed keys, bounds and choices from these models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from hidden_core.bounds import MAX_EPOCHS, SEED_LIMIT
from hidden_core.config import ConfigError, RunOptions

if TYPE_CHECKING:
    from hidden_core.spec.plan import Plan

# RunOptions the runner sets per trial; a spec's `run:` section may set the others
RUNNER_SET_RUN_OPTIONS = frozenset({"device", "checkpoint_dir", "threads", "save_subnet"})
DEFAULT_MAX_TRIALS = 10_000
MAX_MAX_TRIALS = 10_000_000  # the measurement: 10M planned trials passed 3 GB
MAX_CHOICES = 1000  # categorical choices and values per grid axis are bounded by max_trials


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
SEARCH_TYPES: dict[str, type[_Strict]] = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


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


# The pruners, declared here only: name -> the model of its arguments (None: takes none).
# PRUNERS and PrunerSpec.type come from it; tune/pruning.py builds the Optuna pruner.
PRUNER_ARGS: dict[str, type[_Strict] | None] = {
    "none": None,
    "median": _PercentileArgs,
    "percentile": _PercentileOnlyArgs,
    "successive_halving": _SuccessiveHalvingArgs,
    "hyperband": _HyperbandArgs,
}
PRUNERS: tuple[str, ...] = tuple(PRUNER_ARGS)
PrunerName = Literal[PRUNERS]  # type: ignore[valid-type]


class PrunerSpec(_Strict):
    """Which Optuna pruner decides, per epoch and per cell, whether a trial stops early.

    Steps follow Optuna's convention: the value after epoch e is reported at step e-1, so
    ``n_warmup_steps: 2`` never prunes during the first two epochs and resources
    (``min_resource``) count epochs."""

    type: PrunerName = "none"
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
    its controls (hidden_core/subnet/controls.py), `draws` draws each, on `device` (as Ray
    tasks on the sweep's resources, or in the driver when nothing was trained); the results
    are stored per trial (hidden_core/tune/controls_pass.py, controls_tasks.py). Not part
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
    """One study: the trials to cross, how to search and prune, what each trial reserves.

    Its fields are the spec file's keys, declared here only (validate.py reads the allowed
    keys, and the models of the scalar ones, from them). Bounds: ``seed`` as trial seeds;
    ``max_concurrent``, ``samples_per_cell`` and ``max_trials`` at most ``MAX_MAX_TRIALS``;
    ``max_failures`` at most 100 retries (-1: unlimited); ``report_every_s`` at most a day;
    ``description`` at most 10,000 characters, ``study_storage`` at most 2,000."""

    name: str
    description: str = Field("", max_length=10_000)
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = Field(default_factory=dict)
    search: dict[str, SearchParam] = Field(default_factory=dict)
    samples_per_cell: int = Field(1, ge=1, le=MAX_MAX_TRIALS)
    sampler: Literal["tpe", "random", "qmc", "gp"] = "tpe"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    study_storage: str | None = Field(None, max_length=2000)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1, le=MAX_MAX_TRIALS)
    max_failures: int = Field(1, ge=-1, le=100)
    report_every_s: float = Field(1.0, ge=0, le=86_400)
    max_trials: int = Field(DEFAULT_MAX_TRIALS, ge=1, le=MAX_MAX_TRIALS)
    vectorize: Literal["auto", "seeds", "none"] = "auto"
    run: dict[str, Any] = Field(default_factory=dict)
    loggers: dict[str, dict[str, Any]] = Field(default_factory=dict)  # experiment trackers: hidden_core/spec/loggers.py
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
            from hidden_core.spec.plan import (
                expand,  # plan.py reads a SweepSpec; this is the one way back
            )

            plan, problems = expand(self)
            if problems:
                raise ConfigError(problems)
            self._plan = plan
        return self._plan
