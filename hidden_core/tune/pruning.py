"""Optuna pruning (and the studies search samples from), one study per grid cell.

Ray's OptunaSearch cannot use Optuna's pruners (it hard-codes a no-op pruner) and refuses
grid_search, so the sweep drives Optuna itself:

- ``CellStudies`` keeps one Optuna study per cell (``<sweep>/<cell_id>``) in a persistent
  storage (SQLite next to the store by default, any Optuna storage URL on a cluster), so a
  re-run sweep keeps its pruning and sampling history.
- ``PruningScheduler`` is a Ray Tune ``TrialScheduler``: every epoch's ``val_acc`` goes to
  the trial's study as an intermediate value (step = epoch - 1, Optuna's convention) and,
  at each report, the trial stops when the study's pruner says prune. A pruned trial is
  told to Optuna as PRUNED, a finished one as COMPLETE (value: best val_acc), a failed one
  as FAIL. Because each cell has its own study, a trial is only ever compared with trials
  of its own cell. A vectorized cell (cells.py) is one Tune trial but each of its seeds is
  its own Optuna trial: the scheduler decides seed by seed and hands each prune decision
  back to the cell's trial (cells.write_prune_decision), which stops that seed only.

The scheduler works on the driver's live ``SweepRuntime``, which run_sweep hands to it;
Tune pickles the scheduler into its experiment state (never restored) without it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from hidden_core import paths
from hidden_core.records import (
    BEST_VAL_ACC,
    COMPLETED,
    EPOCH,
    FAILED,
    PRUNED,
    REPORT_EPOCH,
    REPORT_FAILED,
    REPORT_FINAL,
    SELECTION_METRIC,
    TRIAL_BRANCHES,
)
from hidden_core.spec import PrunerSpec, SearchPoint, SweepSpec
from hidden_core.tune import report_codec
from hidden_core.tune.planning import planned_epochs

if TYPE_CHECKING:
    import optuna

    from hidden_core.tune.driver_state import SweepRuntime

log = logging.getLogger(__name__)

TRIAL_ID_ATTR = "trial_id"  # Optuna user attribute: the sweep's trial_id (config hash)


def build_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    import optuna

    args = dict(spec.args)
    if spec.type == "median":
        return optuna.pruners.MedianPruner(**args)
    if spec.type == "percentile":
        percentile = args.pop("percentile")
        return optuna.pruners.PercentilePruner(percentile, **args)
    if spec.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**args)
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner(**args)
    return optuna.pruners.NopPruner()


def build_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def default_study_storage(results_root: str, sweep: str) -> str:
    """SQLite next to the store (a local results folder), else a local cache file."""
    import os
    from pathlib import Path

    if paths.is_url(results_root):
        folder = Path.home() / ".cache" / "hidden" / "studies"
        log.warning("results are remote (%s); keeping Optuna studies in %s (set study_storage to share them)", results_root, folder)
    else:
        folder = Path(paths.sweep_dir(results_root, sweep))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{os.path.abspath(folder / paths.STUDIES_FILE)}"


class CellStudies:
    """One Optuna study per cell (created on first use), all in one storage."""

    def __init__(self, spec: SweepSpec, storage_url: str):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = spec
        self.storage_url = storage_url
        self._storage: Any = None
        self._studies: dict[str, optuna.Study] = {}
        self._trials: dict[tuple[str, int], optuna.Trial] = {}
        self._steps: dict[tuple[str, int], set[int]] = {}  # steps already reported, per trial
        self._lock = threading.Lock()
        self._distributions = {name: param.distribution() for name, param in spec.search.items()}

    # -- studies --
    @property
    def storage(self) -> Any:
        if self._storage is None:
            import optuna

            if self.storage_url.startswith("sqlite:"):
                # SQLite under concurrent readers: wait instead of failing on a lock
                self._storage = optuna.storages.RDBStorage(self.storage_url, engine_kwargs={"connect_args": {"timeout": 60}})
            else:
                self._storage = self.storage_url
        return self._storage

    def study_name(self, cell_id: str) -> str:
        return f"{self.spec.name}/{cell_id}"

    def study(self, cell_id: str) -> optuna.Study:
        study = self._studies.get(cell_id)
        if study is None:
            import optuna

            seed = (self.spec.seed * 1_000_003 + int(hashlib.sha256(cell_id.encode()).hexdigest()[:8], 16)) % 2**31
            study = optuna.create_study(
                storage=self.storage,
                study_name=self.study_name(cell_id),
                direction="maximize",
                sampler=build_sampler(self.spec.sampler, seed),
                pruner=build_pruner(self.spec.pruner),
                load_if_exists=True,
            )
            self._studies[cell_id] = study
        return study

    # -- trials --
    def ask(self, point: SearchPoint) -> tuple[int, dict[str, Any]]:
        """Sample the point's searched parameters: (Optuna trial number, params)."""
        with self._lock:
            study = self.study(point.cell_id)
            trial = study.ask({name: self._distributions[name] for name in point.space})
            trial.set_user_attr("seed", point.seed)
            self._trials[(point.cell_id, trial.number)] = trial
            self._steps[(point.cell_id, trial.number)] = set()
            return trial.number, dict(trial.params)

    def register(self, cell_id: str, trial_id: str) -> int:
        """The Optuna trial of a grid trial (or of one an earlier driver started): found by trial_id among
        the study's running trials, else created."""
        import optuna

        with self._lock:
            study = self.study(cell_id)
            for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if frozen.user_attrs.get(TRIAL_ID_ATTR) == trial_id:
                    return frozen.number
            trial = study.ask()
            trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
            self._trials[(cell_id, trial.number)] = trial
            self._steps[(cell_id, trial.number)] = set()
            return trial.number

    def name_trial(self, cell_id: str, number: int, trial_id: str) -> None:
        with self._lock:
            trial = self._trial(cell_id, number)
            trial.set_user_attr(TRIAL_ID_ATTR, trial_id)

    def _trial(self, cell_id: str, number: int) -> optuna.Trial:
        trial = self._trials.get((cell_id, number))
        if trial is None:  # a trial asked by an earlier driver (a re-run sweep)
            import optuna

            study = self.study(cell_id)
            frozen = study.get_trials(deepcopy=False)[number]
            trial = optuna.Trial(study, frozen._trial_id)
            self._trials[(cell_id, number)] = trial
            self._steps[(cell_id, number)] = set(frozen.intermediate_values)
        return trial

    def report(self, cell_id: str, number: int, values: list[tuple[int, float]], decide: bool = True) -> bool:
        """Record val_acc after each (epoch, value) (step epoch-1, Optuna's convention);
        True when `decide` and the pruner says prune at the latest step."""
        with self._lock:
            trial = self._trial(cell_id, number)
            known = self._steps.setdefault((cell_id, number), set())
            for epoch, value in values:
                if epoch - 1 not in known and math.isfinite(value):
                    trial.report(value, epoch - 1)
                    known.add(epoch - 1)
            if not decide or not self.spec.pruner.enabled or not values:
                return False
            return bool(trial.should_prune())

    def finish(self, cell_id: str, number: int, state: str, value: float | None = None) -> None:
        """Tell Optuna how the trial ended, as a trial status: COMPLETED (with value), PRUNED
        or FAILED (records)."""
        import optuna

        states = {COMPLETED: optuna.trial.TrialState.COMPLETE, PRUNED: optuna.trial.TrialState.PRUNED, FAILED: optuna.trial.TrialState.FAIL}
        with self._lock:
            study = self.study(cell_id)
            target = states[state]
            if target == optuna.trial.TrialState.COMPLETE and (value is None or not math.isfinite(value)):
                target, value = optuna.trial.TrialState.FAIL, None
            try:
                study.tell(number, value if target == optuna.trial.TrialState.COMPLETE else None, state=target, skip_if_finished=True)
            except (ValueError, RuntimeError) as err:  # never let bookkeeping stop a sweep
                log.warning("could not tell Optuna trial %s of cell %s: %s", number, cell_id, err)
            self._trials.pop((cell_id, number), None)
            self._steps.pop((cell_id, number), None)

    def fail_stale(self, cell_ids: set[str]) -> int:
        """Mark trials left RUNNING by a killed driver as FAIL (a fresh run re-asks)."""
        import optuna

        count = 0
        existing = set(optuna.get_all_study_names(self.storage)) if cell_ids else set()
        for cell in cell_ids:
            if self.study_name(cell) not in existing:
                continue
            study = self.study(cell)
            for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                study.tell(frozen.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                count += 1
        return count

    def trials(self, cell_id: str) -> list[Any]:
        return self.study(cell_id).get_trials(deepcopy=False)


class PruningScheduler(TrialScheduler):
    """FIFO scheduling plus per-cell Optuna pruning on val_acc."""

    def __init__(self, runtime: SweepRuntime):
        super().__init__()
        self.runtime = runtime
        self._metric = SELECTION_METRIC
        self._planned: dict[str, int] = {}  # trial_id -> its last epoch (planned_epochs)
        # the trials that may still run, in the order Tune added them: choosing the next one
        # looks at these only, not at every trial of the run (Tune's own FIFO scheduler walks
        # them all on every step: quadratic over a sweep of thousands of trials)
        self._waiting: dict[Trial, None] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"_metric": self._metric, "_planned": {}, "_waiting": {}}  # without the live runtime: never restored

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    # -- trial lifecycle --
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._waiting[trial] = None

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        report = report_codec.decode(result)
        if report is None or report.kind not in (REPORT_EPOCH, REPORT_FINAL):
            return TrialScheduler.CONTINUE
        runtime = self.runtime
        studies = runtime.studies
        if studies is None:
            return TrialScheduler.CONTINUE
        if trial.config.get("seeds"):
            self._on_cell_result(trial, report)
            return TrialScheduler.CONTINUE  # a cell stops when its last seed does
        # Only the trial's own training is compared: a lottery ticket's control branches
        # (supermask, reinit, random_prune) are other networks and never reach the pruner.
        values = _scored(report.rows)
        cell, number = self._optuna_trial(runtime, trial)
        # a finished trial's epochs go in too (the pruner compares trials step by step).
        # A lottery ticket reports every level's epochs, numbered on (planned_epochs): every
        # trial of a cell has the same plan, so step s is the same level, density and epoch
        # in each of them, and the pruner compares levels with the same level, never
        # trials at different densities.
        last_epoch = int(report.get(EPOCH) or 0)
        decide = report.kind == REPORT_EPOCH and last_epoch < self._planned_epochs(trial)
        if studies.report(cell, number, values, decide=decide):
            studies.finish(cell, number, PRUNED)
            runtime.mark_pruned(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _on_cell_result(self, trial: Trial, report: report_codec.Report) -> None:
        """Each seed of a vectorized cell: its val_acc to its own Optuna trial, its own
        decision; a pruned seed's decision goes into its checkpoint folder, where the cell's
        trial reads it right after this report."""
        from hidden_core.tune.cells import write_prune_decision
        from hidden_core.tune.driver_state import seed_key

        runtime, studies = self.runtime, self.runtime.studies
        folders = {s["trial_id"]: s["checkpoint_dir"] for s in trial.config["seeds"]}
        planned = self._planned_epochs(trial)
        for trial_id, entry in report.seeds.items():
            key = seed_key(trial.trial_id, trial_id)
            if key in runtime.pruned or entry.kind == REPORT_FAILED or (report.kind == REPORT_FINAL and entry.fields.get(report_codec.STATUS) == PRUNED):
                continue  # decided already (in this run, or by an earlier driver, which told Optuna then)
            values = _scored(entry.rows)
            if not values:
                continue
            number = self._seed_number(trial, trial_id)
            last = max(epoch for epoch, _ in values)
            if studies.report(trial.config["cell_id"], number, values, decide=report.kind == REPORT_EPOCH and last < planned):
                studies.finish(trial.config["cell_id"], number, PRUNED)
                runtime.mark_pruned(key)
                write_prune_decision(folders[trial_id], last)

    def _seed_number(self, trial: Trial, trial_id: str) -> int:
        from hidden_core.tune.driver_state import seed_key

        key = seed_key(trial.trial_id, trial_id)
        number = self.runtime.optuna_numbers.get(key)
        if number is None:
            number = self.runtime.optuna_numbers[key] = self.runtime.studies.register(trial.config["cell_id"], trial_id)
        return number

    def _finish_cell(self, trial: Trial, error: bool) -> None:
        """A vectorized cell ended: tell Optuna how each seed not pruned ended."""
        runtime = self.runtime
        for rec in runtime.seed_records(trial):
            if rec.ray_id in runtime.pruned or (rec.final is None and not error):
                continue
            if rec.ray_id not in runtime.optuna_numbers and not rec.epochs:
                continue  # never reported: it has no Optuna trial
            number = self._seed_number(trial, rec.trial_id)
            if error or rec.final.get(report_codec.KIND) == REPORT_FAILED:
                runtime.studies.finish(rec.cell_id, number, FAILED)
            else:
                runtime.studies.finish(rec.cell_id, number, COMPLETED, rec.final.get(BEST_VAL_ACC))

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        runtime = self.runtime
        if runtime.studies is not None and trial.config.get("seeds"):
            self._finish_cell(trial, error=False)
            return
        if runtime.studies is None or trial.trial_id in runtime.pruned:
            return
        final = runtime.final_result(trial.trial_id)
        if final is None:
            return  # stopped without an ending (experiment stopped): resumes later
        cell, number = self._optuna_trial(runtime, trial)
        if final.get(report_codec.KIND) == REPORT_FAILED:
            runtime.studies.finish(cell, number, FAILED)
        else:
            runtime.studies.finish(cell, number, COMPLETED, final.get(BEST_VAL_ACC))

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        runtime = self.runtime
        if runtime.studies is None:
            return
        if trial.config.get("seeds"):
            self._finish_cell(trial, error=True)
            return
        cell, number = self._optuna_trial(runtime, trial)
        runtime.studies.finish(cell, number, FAILED)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._waiting.pop(trial, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The first trial added that is pending (else paused), as Tune's FIFO scheduler,
        looking only at trials not ended yet: a trial that ended (TERMINATED, ERROR: Tune
        retries a failed trial by setting it PENDING before it reaches ERROR) never runs
        again, so it leaves `_waiting` the first time it is seen."""
        ended = [t for t in self._waiting if t.status in (Trial.TERMINATED, Trial.ERROR)]
        for trial in ended:
            del self._waiting[trial]
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in self._waiting:
                if trial.status == status:
                    return trial
        return None

    def debug_string(self) -> str:
        return "Per-cell Optuna pruning on val_acc."

    def save(self, checkpoint_path: str) -> None:
        pass  # the studies persist themselves

    def restore(self, checkpoint_path: str) -> None:
        pass

    # -- helpers --
    def _planned_epochs(self, trial: Trial) -> int:
        key = trial.config["trial_id"]
        if key not in self._planned:
            from hidden_core.config import TrialConfig

            self._planned[key] = planned_epochs(TrialConfig.model_validate(trial.config["trial"]))
        return self._planned[key]

    def _optuna_trial(self, runtime: SweepRuntime, trial: Trial) -> tuple[str, int]:
        """(cell_id, Optuna trial number) of a Tune trial, registering grid trials."""
        cell = trial.config["cell_id"]
        number = runtime.optuna_numbers.get(trial.trial_id)
        if number is None:
            number = trial.config.get("optuna_number")
            if number is None:
                number = runtime.studies.register(cell, trial.config["trial_id"])
            runtime.optuna_numbers[trial.trial_id] = number
        return cell, number


def _scored(rows: tuple[dict[str, Any], ...]) -> list[tuple[int, float]]:
    """(epoch, val_acc) of the epoch rows the pruner compares: the trial's own training only (a
    lottery ticket's control branches, supermask, reinit and random_prune, are other networks)."""
    return [(int(row[EPOCH]), float(row[SELECTION_METRIC])) for row in rows
            if row.get(SELECTION_METRIC) is not None and row.get("branch") in TRIAL_BRANCHES]
