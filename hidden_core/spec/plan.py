"""Expansion: a validated SweepSpec -> its Plan (the crossed, normalized, deduplicated trials
and the search points), and the identities of trials and cells."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hidden_core.config import (
    TrialConfig,
    canonical_trial_id,
    identity_hash,
)
from hidden_core.spec.problems import config_errors, join_path

if TYPE_CHECKING:
    from hidden_core.spec.model import SweepSpec

MAX_COMBINATION_PROBLEMS = 20


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
def cell_id(config: TrialConfig, searched: Iterable[str] = (), canonical: dict[str, Any] | None = None) -> str:
    """Hash of the normalized config without its seed and without searched parameters
    (config.identity_hash, the hash trial_id uses; no identity version, as always).
    `canonical`: config.canonical(), where the caller has it already."""
    drop = {"seed", *searched}
    return identity_hash({k: v for k, v in (config.canonical() if canonical is None else canonical).items() if k not in drop})


def unused_fields(config: TrialConfig) -> frozenset[str]:
    """Method/distribution options this config's method and distribution do not read."""
    return config.unused_fields()


def planned_upper_bound(grid: Mapping[str, Sequence[Any]], samples_per_cell: int = 1) -> int:
    """Trials a grid expands to at most (before normalization merges any): the product of
    its list lengths, times the samples of each grid point with a search. No expansion."""
    return math.prod(len(v) for v in grid.values()) * samples_per_cell


# ---- expansion -----------------------------------------------------------------------------
def expand(spec: SweepSpec, *, by_cell: bool = True) -> tuple[Plan, list[str]]:
    """The spec's Plan and the problems only crossed values have (an invalid combination).

    by_cell (the default): with a plain `seed` axis, each grid cell's config is validated
    once and its other seeds are copies of it with their seed (the seeds themselves
    validated with the first cell, as every trial is without by_cell): `sweep status` and
    every run plan the whole sweep, and validating each of 5,000 trial configs was most of
    a status's own time. Exact because a seed is read by no check but its own bounds and
    by no normalization (TrialConfig: only its field validator sees it; tests/test_spec.py
    compares both ways on every spec in sweeps/). Any invalid combination falls back to
    the trial-by-trial expansion, so problems are found and worded exactly as before."""
    axes = list(spec.grid)
    if "seed" in axes:  # seeds of one cell next to each other
        axes.remove("seed")
        axes.append("seed")
    seeds = spec.grid.get("seed", ())
    if by_cell and len(seeds) > 1 and not any(isinstance(v, Mapping) for v in seeds):
        plan = _expand_by_cell(spec, axes[:-1])
        if plan is not None:
            return plan, []
    return _expand_each(spec, axes)


def _combination(spec: SweepSpec, axes: Sequence[str], combo: Sequence[int]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The config values (base, then each axis' value) and the displayed grid point of one
    combination of axis value indices."""
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
    return values, point


def _expand_by_cell(spec: SweepSpec, cell_axes: Sequence[str]) -> Plan | None:
    """expand's plan, one config validation per grid cell (see expand); None when a
    combination is invalid (the caller then expands trial by trial for the problems)."""
    searched = tuple(spec.search)
    seeds = spec.grid["seed"]
    trials: dict[str, PlannedTrial] = {}
    points: dict[tuple[str, int], SearchPoint] = {}
    combinations = 0
    # per seed of the axis: its validated value and its entry in a canonical form (none at
    # the default), read off the first cell's configs, each validated in full
    seed_values: list[int] = []
    seed_entries: list[dict[str, Any]] = []
    for combo in itertools.product(*(range(len(spec.grid[a])) for a in cell_axes)):
        values, point = _combination(spec, cell_axes, combo)
        try:
            if not seed_values:
                configs = [TrialConfig.model_validate({**values, "seed": seed}).normalized() for seed in seeds]
                canonicals = [config.canonical() for config in configs]
                seed_values = [config.seed for config in configs]
                seed_entries = [{"seed": c["seed"]} if "seed" in c else {} for c in canonicals]
            else:
                first = TrialConfig.model_validate({**values, "seed": seeds[0]}).normalized()
                configs = [first, *(first.model_copy(update={"seed": seed}) for seed in seed_values[1:])]
                canonicals = [first.canonical()]
        except ValidationError:
            return None
        common = {k: v for k, v in canonicals[0].items() if k != "seed"}  # the cell's canonical form but its seed
        cell = cell_id(configs[0], searched, canonicals[0])
        space = tuple(n for n in searched if n not in unused_fields(configs[0]))
        for i, config in enumerate(configs):
            combinations += 1
            trial_point = (*point, ("seed", seeds[i]))
            if space:
                key = (cell, config.seed)
                if key not in points:
                    points[key] = SearchPoint(config, cell, space, spec.samples_per_cell, trial_point)
                continue
            canonical = canonicals[i] if i < len(canonicals) else {**common, **seed_entries[i]}
            if (trial_id := canonical_trial_id(canonical)) not in trials:
                trials[trial_id] = PlannedTrial(config, trial_id, cell, trial_point)
    if not trials and not points:
        return None
    axis_counts = {a: len(spec.grid[a]) for a in spec.grid}
    return Plan(list(trials.values()), list(points.values()), axis_counts, combinations, combinations - len(trials) - len(points))


def _expand_each(spec: SweepSpec, axes: Sequence[str]) -> tuple[Plan, list[str]]:
    """expand, validating every combination's config."""
    searched = tuple(spec.search)
    trials: dict[str, PlannedTrial] = {}
    points: dict[tuple[str, int], SearchPoint] = {}
    problems: list[str] = []
    seen_problems: set[str] = set()
    combinations = 0
    extra = 0
    for combo in itertools.product(*(range(len(spec.grid[a])) for a in axes)):
        combinations += 1
        values, point = _combination(spec, axes, combo)
        try:
            config = TrialConfig.model_validate(values).normalized()
        except ValidationError:
            for field_name, rest, msg in config_errors(values):
                line = _combination_line(spec, axes, combo, field_name, rest, msg)
                if line not in seen_problems:
                    seen_problems.add(line)
                    if len(problems) < MAX_COMBINATION_PROBLEMS:
                        problems.append(line)
                    else:
                        extra += 1
            continue
        space = tuple(n for n in searched if n not in unused_fields(config))
        canonical = config.canonical()  # once for both hashes: the plan's main cost
        cell = cell_id(config, searched, canonical)
        if space:
            key = (cell, config.seed)
            if key not in points:
                points[key] = SearchPoint(config, cell, space, spec.samples_per_cell, tuple(point))
        elif (trial_id := canonical_trial_id(canonical)) not in trials:
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
            return f"{join_path(f'grid.{axis}[{index}]', rest)}: {msg}"
        if isinstance(value, Mapping) and field_name in value:
            return f"{join_path(f'grid.{axis}[{index}].{field_name}', rest)}: {msg}"
    if field_name and field_name in spec.base:
        return f"{join_path(f'base.{field_name}', rest)}: {msg}"
    described = ", ".join(f"{a}={_short(spec.grid[a][i], a)}" for a, i in zip(axes, combo, strict=True))
    where = f"grid ({described})" if described else "base"
    return f"{where}: {join_path(field_name, rest)}: {msg}" if field_name else f"{where}: {msg}"


def _short(value: Any, axis: str) -> Any:
    return value[axis] if isinstance(value, Mapping) else value
