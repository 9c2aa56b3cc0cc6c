"""What a run of a sweep has left to do, read from the store alone (no Ray): the grid trials
not final yet and, for `search`, the samples each grid point still lacks. Plus the dry-run
description and finding a spec by file or name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hidden_core.config import TrialConfig
from hidden_core.records import FINAL_STATUSES
from hidden_core.spec import PlannedTrial, SearchPoint, SweepSpec, find_spec_file, load_spec
from hidden_core.store import ResultStore


@dataclass
class Todo:
    trials: list[PlannedTrial]  # grid trials not final in the store
    points: list[tuple[SearchPoint, int]]  # search points with the samples they still need
    skipped: int  # planned trials (and samples) already final
    final_ids: set[str]

    @property
    def count(self) -> int:
        return len(self.trials) + sum(n for _, n in self.points)


def planned_epochs(config: TrialConfig) -> int:
    """The epoch of a trial's last report: `epochs`, or for a lottery ticket every row of its
    level plan (its epochs table's rows, levels and control branches numbered on)."""
    if config.method == "lottery_ticket":
        # torch: imported only for lottery trials
        from hidden_core.lottery import planned_epochs as lottery_epochs

        return lottery_epochs(config)
    return config.epochs


def longest_first(trials: list[PlannedTrial]) -> list[PlannedTrial]:
    """`trials` dearest first by expected cost, planned epochs x parameters (a stable sort:
    a cell's seeds stay together). A sweep then ends on its cheapest trials, so no core idles
    long while the last big one finishes (longest-processing-time-first scheduling). Imports
    torch (parameter counts on the meta device): the runner orders its queue with it once
    the data thread has imported torch, not before Ray starts."""
    from hidden_core.footprint import ARCHITECTURE_FIELDS, parameter_count

    sizes: dict[tuple, int] = {}

    def cost(trial: PlannedTrial) -> int:
        key = tuple(getattr(trial.config, f) for f in ARCHITECTURE_FIELDS)
        if key not in sizes:
            sizes[key] = parameter_count(trial.config)
        return planned_epochs(trial.config) * sizes[key]

    return sorted(trials, key=cost, reverse=True)


def plan_todo(spec: SweepSpec, store: ResultStore) -> Todo:
    plan = spec.plan()
    final = store.final_trial_ids(spec.name)
    trials = [t for t in plan.trials if t.trial_id not in final]
    skipped = len(plan.trials) - len(trials)
    points: list[tuple[SearchPoint, int]] = []
    if plan.points:
        done: dict[tuple[str, int], int] = {}
        if final:
            frame = store.load_trials(spec.name, columns=["trial_id", "cell_id", "seed", "status"])
            frame = frame[frame["status"].isin(FINAL_STATUSES)]
            for (cell, seed), n in frame.groupby(["cell_id", "seed"]).size().items():
                done[(cell, int(seed))] = int(n)
        for point in plan.points:
            have = min(done.get(point.key, 0), point.samples)
            skipped += have
            if point.samples - have > 0:
                points.append((point, point.samples - have))
    return Todo(trials, points, skipped, final)


def describe_todo(spec: SweepSpec, todo: Todo) -> list[str]:
    """Dry-run lines: the count per axis and the trials that would run."""
    plan = spec.plan()
    lines = [f"sweep {spec.name}: {plan.total} trials planned ({plan.combinations} grid combinations"
             + (f", {plan.duplicates} collapsed by normalization" if plan.duplicates else "") + ")"]
    for axis, n in plan.axes.items():
        values = ", ".join(_short(v, axis) for v in spec.grid[axis])
        lines.append(f"  {axis:<16} {n:>3} values: {values}")
    if spec.search:
        lines.append(f"  search: {', '.join(spec.search)} - {spec.samples_per_cell} samples per grid point ({spec.sampler} sampler), {len(plan.points)} points")
    lines.append(f"  skipped (already final in the store): {todo.skipped}")
    lines.append(f"  would run: {todo.count}")
    if todo.trials:
        lines.append("    trial_id          axis values | every other field that differs from its config default")
        lines.append("    (a field not listed runs at its default: `hidden train --help` shows each default)")
    for t in todo.trials:
        point = " ".join(f"{a}={_short(v, a)}" for a, v in t.point)  # the axis values only
        axes = {a for a, _ in t.point}
        # the trial's identity (normalized, defaults left out): no default can leak into a
        # recipe unseen, and no spec value can be silently dropped by normalization
        others = " ".join(f"{k}={_short(v, k)}" for k, v in t.config.canonical().items() if k not in axes)
        lines.append(f"    {t.trial_id}  {point}" + (f" | {others}" if others else ""))
    for p, n in todo.points:
        point = " ".join(f"{a}={_short(v, a)}" for a, v in p.point)
        lines.append(f"    {n} x sample({', '.join(p.space)})  cell {p.cell_id}  {point}")
    return lines


def _short(value: Any, axis: str) -> str:
    if isinstance(value, dict):
        extra = ", ".join(f"{k}={_short(v, k)}" for k, v in value.items() if k != axis)
        return _short(value.get(axis), axis) + (f" ({extra})" if extra else "")
    return f"{value:g}" if isinstance(value, float) else str(value)


def require_spec(path: str, max_trials: int | None = None) -> SweepSpec:
    """A spec path, or the name of a file in the repository's sweeps/ folder."""
    return load_spec(find_spec_file(path, (Path.cwd() / "sweeps", Path(__file__).resolve().parents[2] / "sweeps")), max_trials=max_trials)
