"""Validation: a spec file or mapping -> a SweepSpec, or one ConfigError listing every problem
(up to ``MAX_PROBLEMS``) at its path in the file. Strict and bounded: see the package's
docstring (hidden_core/spec/__init__.py)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError, create_model

from hidden_core.config import ConfigError, RunOptions, TrialConfig, brief, suggestion
from hidden_core.paths import sweep_name_problem
from hidden_core.spec.loggers import normalize_loggers
from hidden_core.spec.model import (
    DEFAULT_MAX_TRIALS,
    MAX_MAX_TRIALS,
    PRUNER_ARGS,
    PRUNERS,
    RUNNER_SET_RUN_OPTIONS,
    SEARCH_TYPES,
    FloatParam,
    IntParam,
    SubnetControls,
    SweepSpec,
    _Strict,
)
from hidden_core.spec.plan import Plan, expand, planned_upper_bound
from hidden_core.spec.problems import config_errors, join_path, key_text, kind_of, prefixed
from hidden_core.spec.storage import storage_url_problems
from hidden_core.strict_yaml import load_yaml_file

MAX_PROBLEMS = 50  # a hostile file can have 10,000 problems; the first 50 say enough
TRIAL_FIELDS: tuple[str, ...] = tuple(TrialConfig.model_fields)

# The spec's keys that have checks of their own below; every other key of SweepSpec is a
# scalar (or a small model) checked by _Rest, which is made of SweepSpec's own declarations,
# so that a key, its type, default and bounds are written once: in model.SweepSpec.
_SECTIONS = frozenset({"name", "base", "grid", "search", "pruner", "run", "loggers", "subnet_controls"})
_Rest = create_model(
    "_Rest",
    __base__=_Strict,
    __doc__="The scalar top-level keys, validated on their own so their errors carry their path.",
    **{k: (f.annotation, f) for k, f in SweepSpec.model_fields.items() if k not in _SECTIONS},  # type: ignore[call-overload]
)


def load_spec(path: str | Path, *, max_trials: int | None = None) -> SweepSpec:
    """Read and validate a spec file; every problem raises one ConfigError.
    `max_trials` (the command line's --max-trials) replaces the spec's own cap."""
    return parse_spec(load_yaml_file(path, "spec"), max_trials=max_trials)


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
        raise ConfigError([f"spec: must be a mapping of keys (name, base, grid, ...), got {kind_of(data)}"])
    allowed = list(SweepSpec.model_fields)
    for key in data:
        if key not in SweepSpec.model_fields:
            problems.append(f"{key_text(key)}: unknown key{suggestion(key, allowed)}; allowed keys: {', '.join(allowed)}")

    name = data.get("name")
    if name is None:
        problems.append("name: missing; every sweep needs a name (it names its folder in the store)")
    elif (name_problem := sweep_name_problem(name)) is not None:
        problems.append(f"name: {brief(name)} {name_problem}")

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
        problems += prefixed(err, "run", RunOptions)

    loggers: dict[str, dict[str, Any]] = {}
    try:
        loggers = normalize_loggers(data.get("loggers"))
    except ValueError as err:
        problems.append(f"loggers: {err}")

    subnet_controls = _check_subnet_controls(data.get("subnet_controls"), problems)

    rest = {k: data[k] for k in _Rest.model_fields if k in data}
    if max_trials is not None:
        rest["max_trials"] = max_trials
    try:
        _Rest.model_validate(rest)
    except ValidationError as err:
        problems += prefixed(err, "", _Rest)
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
    plan, problems = expand(spec)
    if not problems and spec.subnet_controls is not None and "method" not in spec.search:
        problems += _controls_without_methods(plan)
    if problems:
        raise ConfigError(problems)
    spec._plan = plan
    return spec


def _check_subnet_controls(raw: Any, problems: list[str]) -> SubnetControls | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(f"subnet_controls: must be a mapping like {{draws: 5, device: auto}} (or leave it out), got {kind_of(raw)}")
        return None
    try:
        return SubnetControls.model_validate(dict(raw))
    except ValidationError as err:
        problems += [line.replace(" or Value error, ", " or ") for line in prefixed(err, "subnet_controls", SubnetControls)]
        return None


def _controls_without_methods(plan: Plan) -> list[str]:
    """subnet_controls on a sweep none of whose trials learns a mask or signs."""
    from hidden_core.records import CONTROLLED_METHODS

    methods = {t.config.method for t in plan.trials} | {p.template.method for p in plan.points}
    if methods & set(CONTROLLED_METHODS):
        return []
    return [f"subnet_controls: no trial of this sweep has controls (methods: {', '.join(sorted(methods))}); controls exist for "
            f"{', '.join(CONTROLLED_METHODS)}; add one of them or leave subnet_controls out"]


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


def _mapping(data: Mapping, key: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{key}: must be a mapping of field: value, got {kind_of(value)}")
        return {}
    bad = [k for k in value if not isinstance(k, str)]
    for k in bad:
        problems.append(f"{key}.{key_text(k)}: keys must be field names (text), got {brief(k)}")
    return {k: v for k, v in value.items() if isinstance(k, str)}


def _check_grid(grid: dict[str, Any], problems: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for axis, values in grid.items():
        path = f"grid.{axis}"
        if axis not in TrialConfig.model_fields:
            problems.append(f"grid.{key_text(axis)}: unknown key{suggestion(axis, TRIAL_FIELDS)}; allowed keys: {', '.join(TRIAL_FIELDS)}")
            continue
        if not isinstance(values, list):
            problems.append(f"{path}: must be a list of values to cross, got {kind_of(values)}; write [{brief(values)}] for a single value, or move it to base")
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
                        problems.append(f"{path}[{i}].{key_text(key)}: {brief(key)} is also a grid axis; set it in one place")
            elif isinstance(value, list):
                problems.append(f"{path}[{i}]: a list inside a grid list; give one value per entry")
        out[axis] = values
    return out


def _check_search(search: dict[str, Any], base: dict[str, Any], grid: dict[str, list[Any]], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in search.items():
        path = f"search.{name}"
        if name not in TrialConfig.model_fields:
            problems.append(f"search.{key_text(name)}: unknown key{suggestion(name, TRIAL_FIELDS)}; allowed keys: {', '.join(TRIAL_FIELDS)}")
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
            problems.append(f"{path}: must be a mapping like {{type: float, low: 0.001, high: 0.1, log: true}}, got {kind_of(raw)}")
            continue
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in SEARCH_TYPES:
            problems.append(f"{path}.type: {brief(kind)} is not allowed; use one of {', '.join(SEARCH_TYPES)}{suggestion(kind, SEARCH_TYPES)}")
            continue
        try:
            param = SEARCH_TYPES[kind].model_validate(raw)
        except ValidationError as err:
            problems += prefixed(err, path, SEARCH_TYPES[kind])
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
                for field_name, rest, msg in config_errors({**base, name: getattr(param, bound)}):
                    if field_name == name:
                        problems.append(f"{join_path(f'{path}.{bound}', rest)}: {msg}")
        else:
            if not param.choices:
                problems.append(f"{path}.choices: empty list; give at least one choice")
            for i, choice in enumerate(param.choices):
                for field_name, rest, msg in config_errors({**base, name: choice}):
                    if field_name == name:
                        problems.append(f"{join_path(f'{path}.choices[{i}]', rest)}: {msg}")
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
        problems.append(f"pruner: must be a name ({', '.join(PRUNERS)}) or a mapping with `type` and its arguments, got {kind_of(raw)}")
        return {"type": "none"}
    kind = raw.get("type", "none")
    if not isinstance(kind, str) or kind not in PRUNER_ARGS:
        problems.append(f"pruner.type: {brief(kind)} is not allowed; use one of {', '.join(PRUNERS)}{suggestion(kind, PRUNERS)}")
        return {"type": "none"}
    args = {k: v for k, v in raw.items() if k != "type"}
    if "args" in args:
        problems.append(f"pruner.args: give the pruner's arguments next to its type, e.g. pruner: {{type: {kind}, n_startup_trials: 3}}")
        return {"type": "none"}
    model = PRUNER_ARGS[kind]
    if model is None:
        for key in args:
            problems.append(f"pruner.{key_text(key)}: pruner 'none' takes no arguments")
        return {"type": "none"}
    try:
        validated = model.model_validate(args)
    except ValidationError as err:
        problems += prefixed(err, "pruner", model)
        return {"type": "none"}
    return {"type": kind, "args": validated.model_dump()}


def _check_base(base: dict[str, Any], grid: dict[str, list[Any]], search: dict[str, Any], problems: list[str]) -> None:
    """Field-level problems of base and of each grid value, each at its own path."""
    overridden = set(grid) | set(search)
    for field_name, rest, msg in config_errors(base):
        if field_name in base and field_name not in overridden:
            problems.append(f"{join_path(f'base.{field_name}', rest)}: {msg}")
    # a grid value is checked with the base values no other axis replaces
    base = {k: v for k, v in base.items() if k not in grid}
    for axis, values in grid.items():
        for i, value in enumerate(values):
            assigned = dict(value) if isinstance(value, Mapping) else {axis: value}
            for key in assigned:
                if key not in TrialConfig.model_fields:
                    problems.append(f"grid.{axis}[{i}].{key_text(key)}: unknown key{suggestion(key, TRIAL_FIELDS)}; allowed keys: {', '.join(TRIAL_FIELDS)}")
            assigned = {k: v for k, v in assigned.items() if k in TrialConfig.model_fields}
            for field_name, rest, msg in config_errors({**base, **assigned}):
                if field_name not in assigned:
                    continue
                path = f"grid.{axis}[{i}]" if field_name == axis else f"grid.{axis}[{i}].{field_name}"
                problems.append(f"{join_path(path, rest)}: {msg}")
