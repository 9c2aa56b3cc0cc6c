"""What a run of a sweep has left to do, read from the store alone (no Ray): the grid trials
not final yet, which of them train together as one vectorized cell (the spec's
`vectorize`), and, for `search`, the samples each grid point still lacks. Plus the dry-run
description and finding a spec by file or name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hidden_core.catalog import LEVELS, method_info
from hidden_core.config import TrialConfig
from hidden_core.records import FINAL_STATUSES
from hidden_core.spec import PlannedTrial, SearchPoint, SweepSpec, find_spec_file, load_spec
from hidden_core.store import ResultStore


@dataclass(frozen=True)
class Cell:
    """The seeds of one grid cell still to run (configs equal but for `seed`), trained as one
    Tune trial by hidden_core.vectorized.train_seeds; each seed stays its own trial."""

    cell_id: str
    trials: tuple[PlannedTrial, ...]

    @property
    def seeds(self) -> list[int]:
        return [t.config.seed for t in self.trials]


@dataclass
class Todo:
    trials: list[PlannedTrial]  # grid trials not final in the store (those in `cells` too)
    points: list[tuple[SearchPoint, int]]  # search points with the samples they still need
    skipped: int  # planned trials (and samples) already final
    final_ids: set[str]
    cells: list[Cell] = field(default_factory=list)  # grid trials that run vectorized, by cell
    not_vectorized: dict[str, str] = field(default_factory=dict)  # cell_id -> why its seeds run one per trial

    @property
    def count(self) -> int:
        """Trials to run (a vectorized cell counts each of its seeds)."""
        return len(self.trials) + sum(n for _, n in self.points)

    @property
    def tune_count(self) -> int:
        """Tune trials to run: a vectorized cell is one."""
        return self.count - sum(len(c.trials) for c in self.cells) + len(self.cells)


def vectorize_refusal(spec: SweepSpec, config: TrialConfig) -> str | None:
    """Why the seeds of `config`'s cell do not train as one vectorized trial (None: they do)."""
    if spec.vectorize == "none":
        return "vectorize: none"
    info = method_info(config.method)
    if info.runner == LEVELS:
        return f"{config.method} trains several networks per trial (not supported by train_seeds)"
    if not info.vectorizes:
        return f"{config.method} acts between steps or epochs (its registry line: vectorizes=False; train_seeds does not call its hooks)"
    run = spec.run
    if run.get("compile"):
        return "run.compile (train_seeds runs eager)"
    if run.get("channels_last") and spec.resources.gpu > 0 and config.model != "mlp":
        return "run.channels_last (train_seeds runs in the default memory format)"
    if spec.loggers:
        return "loggers (a tracker keeps one run per Tune trial; each seed keeps its own)"
    if spec.vectorize == "auto" and spec.pruner.enabled:
        # the pruner compares a cell's seeds as they finish; trained together they finish
        # together, so a median/percentile pruner would never stop one: auto keeps the store
        # equal to an unvectorized run's
        return "vectorize: auto leaves cells unvectorized under a pruner (its seeds would finish together); set vectorize: seeds to vectorize anyway"
    if spec.vectorize == "auto" and config.model != "mlp":
        return f"vectorize: auto vectorizes MLP cells only (measured to win there); set vectorize: seeds for {config.model}"
    return None


def group_cells(spec: SweepSpec, trials: list[PlannedTrial]) -> tuple[list[Cell], dict[str, str]]:
    """The cells whose seeds run vectorized (two seeds or more left), in plan order, and why
    each other cell with two seeds or more left does not."""
    by_cell: dict[str, list[PlannedTrial]] = {}
    for t in trials:
        by_cell.setdefault(t.cell_id, []).append(t)
    cells, refused = [], {}
    for cell, members in by_cell.items():
        if len(members) < 2:
            continue
        reason = vectorize_refusal(spec, members[0].config)
        if reason is None:
            cells.append(Cell(cell, tuple(members)))
        else:
            refused[cell] = reason
    return cells, refused


def planned_epochs(config: TrialConfig) -> int:
    """The epoch of a trial's last report: `epochs`, or for a lottery ticket every row of its
    level plan (its epochs table's rows, levels and control branches numbered on)."""
    if method_info(config.method).runner == LEVELS:
        # torch: imported only for lottery trials
        from hidden_core.lottery import planned_epochs as lottery_epochs

        return lottery_epochs(config)
    return config.epochs


def longest_first(trials: list[PlannedTrial], slots: int = 1) -> list[PlannedTrial]:
    """`trials` dearest first by expected cost, planned epochs x parameters (a stable sort:
    a cell's seeds stay together). A sweep then ends on its cheapest trials, so no core idles
    long while the last big one finishes (longest-processing-time-first scheduling).

    One exception, the probes: each method's cheapest cell, and with 5 cells or more its
    median cell, run right after the first `slots` cells (the first wave, one per slot of
    the concurrency). The progress line's ETA (progress.EtaModel) fits each method's cost
    per seed-epoch as a fixed part plus a part growing with the parameters; timed on wide
    runs alone the fixed part is lost in their noise, and the narrow runs that end a sweep
    were predicted at a third of their time (`make demo`'s timings replayed: ETA/time left
    0.40-0.58 after a quarter); with the cheapest cells alone, the line through a narrow and
    a wide run overestimates the middle (the widest runs cost more than in proportion:
    caches), 0.98-1.50; with the median cells too, 0.86-1.25. Not in the first wave: a
    worker's first run carries its start-up (imports, data: 3.5 s measured on the demo, 7x
    a narrow run), which would read as the fixed part. The probes are short runs; the queue
    after them is still dearest first, so the makespan does not change (the demo's timings
    rescheduled: 95.9 s as run, 95.5 s with the probes).

    Imports torch (parameter counts on the meta device): the runner orders its queue with it
    once the data thread has imported torch, not before Ray starts."""
    from hidden_core.footprint import ARCHITECTURE_FIELDS, parameter_count

    sizes: dict[tuple, int] = {}

    def cost(trial: PlannedTrial) -> int:
        key = tuple(getattr(trial.config, f) for f in ARCHITECTURE_FIELDS)
        if key not in sizes:
            sizes[key] = parameter_count(trial.config)
        return planned_epochs(trial.config) * sizes[key]

    ordered = sorted(trials, key=cost, reverse=True)
    cells = list(dict.fromkeys(t.cell_id for t in ordered))  # dearest first
    first_wave = set(cells[:max(1, slots)])
    by_method: dict[str, list[str]] = {}
    for t in ordered:
        if t.cell_id not in by_method.setdefault(t.config.method, []):
            by_method[t.config.method].append(t.cell_id)
    probes = {c for mine in by_method.values() for c in ([mine[-1], mine[len(mine) // 2]] if len(mine) >= 5 else mine[-1:])}
    probes -= first_wave
    groups = ([t for t in ordered if t.cell_id in first_wave], [t for t in ordered if t.cell_id in probes],
              [t for t in ordered if t.cell_id not in probes and t.cell_id not in first_wave])
    return [t for group in groups for t in group]


def plan_todo(spec: SweepSpec, store: ResultStore, *, vectorize: bool = True) -> Todo:
    """vectorize=False: no cell runs vectorized whatever the spec says (a sweep run with a
    replacement train function, which trains one seed)."""
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
    cells, refused = group_cells(spec, trials) if vectorize else ([], {})
    return Todo(trials, points, skipped, final, cells, refused)


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
    lines.append(f"  would run: {todo.count}" + (f" as {todo.tune_count} Tune trials" if todo.cells else ""))
    together = {t.trial_id: c for c in todo.cells for t in c.trials}
    if todo.cells:
        lines.append(f"  vectorized: {len(todo.cells)} cells train their seeds together as one trial (vectorize: {spec.vectorize}):")
        for c in todo.cells:
            lines.append(f"    cell {c.cell_id}: seeds {', '.join(map(str, c.seeds))} -> trials {' '.join(t.trial_id for t in c.trials)}")
    reasons: dict[str, list[str]] = {}
    for cell, reason in todo.not_vectorized.items():
        reasons.setdefault(reason, []).append(cell)
    for reason, cells in reasons.items():
        lines.append(f"  not vectorized ({reason}): {len(cells)} cells, one trial per seed")
    if todo.trials:
        lines.append("    trial_id          axis values | every other field that differs from its config default")
        lines.append("    (a field not listed runs at its default: `hidden train --help` shows each default)")
    for t in todo.trials:
        point = " ".join(f"{a}={_short(v, a)}" for a, v in t.point)  # the axis values only
        axes = {a for a, _ in t.point}
        # the trial's identity (normalized, defaults left out): no default can leak into a
        # recipe unseen, and no spec value can be silently dropped by normalization
        others = " ".join(f"{k}={_short(v, k)}" for k, v in t.config.canonical().items() if k not in axes)
        mark = f" [cell {together[t.trial_id].cell_id[:8]}]" if t.trial_id in together else ""
        lines.append(f"    {t.trial_id}  {point}" + (f" | {others}" if others else "") + mark)
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
