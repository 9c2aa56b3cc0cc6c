"""Experiment trackers for a sweep: the spec's `loggers:` key, wired to Ray Tune's own
logger callbacks.

    loggers: [mlflow, tensorboard, wandb]                       # defaults below
    loggers:
      mlflow: {tracking_uri: "http://mlflow.internal:5000", experiment: my_study}
      tensorboard: {dir: /shared/tb/my_study}
      wandb: {project: hidden, mode: offline, dir: /shared/wandb}

- mlflow -> ray.air.integrations.mlflow.MLflowLoggerCallback. Default tracking URI:
  $MLFLOW_TRACKING_URI, else a local SQLite store `<results>/<sweep>/mlflow.db` (MLflow 3
  refuses its old `./mlruns` file store unless MLFLOW_ALLOW_FILE_STORE=true); experiment:
  the sweep's name. `mlflow ui --backend-store-uri sqlite:///<results>/<sweep>/mlflow.db`.
- tensorboard -> ray.tune.logger.TBXLoggerCallback, writing to `<results>/<sweep>/tensorboard/
  <trial_id>/` (Tune's own trial folders are deleted when a run ends: the store is the record).
- wandb -> ray.air.integrations.wandb.WandbLoggerCallback. project: the sweep's name unless
  given (or $WANDB_PROJECT); mode: online unless given (or $WANDB_MODE); files under
  `<results>/<sweep>/wandb`.

Each tracker gets one run per trial, named by its trial_id (the config's content hash the
store uses), with the trial's config as parameters and one point per epoch (step = epoch:
train_loss, train_acc, val_acc, test_acc, lr, seconds), then the trial's summary at its
last epoch (best_val_acc, test_acc_at_best_val, density, ...). Tune reports carry several
epochs when they are short (report_every_s); they are unpacked here so every epoch shows.

Each tracker is an optional extra (`pip install 'hidden-core[mlflow]'`, `[tensorboard]`,
`[wandb]`, `[trackers]` for all); a spec that names one whose package is missing fails
with exit 2 before Ray starts. Nothing here is imported by the training core; Ray is
imported only when the callbacks are built.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

from hidden_core.errors import ConfigError
from hidden_core.records import (
    BEST_EPOCH,
    BEST_VAL_ACC,
    CHANGED_FRACTION,
    DENSITY,
    EPOCH,
    EPOCHS_RUN,
    PARAMS_ACTIVE,
    PARAMS_LEARNED,
    PARAMS_TOTAL,
    REPORT_EPOCH,
    REPORT_FINAL,
    SAMPLES_PER_SECOND,
    TEST_ACC_AT_BEST_VAL,
    TRAIN_SECONDS,
)
from hidden_core.spec.loggers import TRACKERS, normalize_loggers  # noqa: F401  (normalize_loggers: re-exported; the spec checks `loggers:`)
from hidden_core.tune import report_codec

# summary fields of a trial's final report that are logged at its last epoch (not the last
# epoch's own val_acc/test_acc again)
SUMMARY_FIELDS = (
    BEST_VAL_ACC, BEST_EPOCH, TEST_ACC_AT_BEST_VAL, EPOCHS_RUN, PARAMS_TOTAL,
    PARAMS_ACTIVE, PARAMS_LEARNED, CHANGED_FRACTION, DENSITY, TRAIN_SECONDS, SAMPLES_PER_SECOND,
)
EPOCH_SKIP = (EPOCH,)  # the step itself


def check_installed(loggers: dict[str, dict[str, Any]]) -> None:
    """Fail (exit 2) before anything starts when a tracker's package is missing."""
    problems = []
    for name in loggers:
        _, modules, extra = TRACKERS[name]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(
                f"loggers: {name} needs the Python package {', '.join(missing)}, which is not installed; "
                f"install it with: pip install 'hidden-core[{extra}]' (or leave {name} out of loggers)"
            )
    if problems:
        raise ConfigError(problems)


def tracker_callbacks(loggers: dict[str, dict[str, Any]], results_root: str, sweep: str) -> list[Any]:
    """Ray Tune callbacks for the spec's `loggers:` (an empty list when there are none)."""
    if not loggers:
        return []
    check_installed(loggers)
    base = os.path.join(results_root.removeprefix("file://"), sweep)
    callbacks: list[Any] = []
    if "mlflow" in loggers:
        options = loggers["mlflow"]
        uri = options.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or _sqlite_uri(os.path.join(base, "mlflow.db"))
        callbacks.append(_mlflow_class()(tracking_uri=uri, experiment_name=options.get("experiment", sweep)))
    if "tensorboard" in loggers:
        callbacks.append(_tensorboard_class()(loggers["tensorboard"].get("dir") or os.path.join(base, "tensorboard")))
    if "wandb" in loggers:
        options = loggers["wandb"]
        folder = options.get("dir") or os.path.join(base, "wandb")
        os.makedirs(folder, exist_ok=True)
        extra = {k: options[k] for k in ("entity", "mode") if k in options}
        callbacks.append(_wandb_class()(project=options.get("project") or os.environ.get("WANDB_PROJECT") or sweep,
                                        group=options.get("group"), dir=folder, **extra))
    return callbacks


def _sqlite_uri(path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return "sqlite:///" + os.path.abspath(path)


# ---- what a tracker sees of a trial -----------------------------------------------------------
def trial_params(trial: Any) -> dict[str, Any]:
    """A trial's parameters for a tracker: its TrialConfig fields plus its ids."""
    config = trial.config
    params = dict(config.get("trial", {}))
    params["trial_id"] = config.get("trial_id")
    params["cell_id"] = config.get("cell_id")
    return params


def tracker_results(result: dict[str, Any], after_epoch: int) -> list[dict[str, Any]]:
    """One Tune report as tracker results, one per epoch after `after_epoch` (step =
    epoch, as `training_iteration`), plus the summary of a final report at its last epoch."""
    report = report_codec.decode(result)
    out: list[dict[str, Any]] = []
    if report is None:
        return out
    if report.kind == REPORT_EPOCH:
        # a vectorized cell's report carries its seeds' rows, not its own: its top-level epoch
        for row in report.rows or (report.fields,):
            epoch = int(row.get(EPOCH, 0))
            if epoch > after_epoch:
                out.append({"training_iteration": epoch, **_numbers(row, EPOCH_SKIP)})
    elif report.kind == REPORT_FINAL:
        step = int(report.get(EPOCHS_RUN) or after_epoch or 1)
        summary = {k: report.get(k) for k in SUMMARY_FIELDS if k in report.fields}
        out.append({"training_iteration": step, **_numbers(summary, ())})
    return out


def _numbers(row: dict[str, Any], skip: tuple[str, ...]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


class _PerEpoch:
    """Mixin for a Tune LoggerCallback: unpack each report into per-epoch results."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        last = self.__dict__.setdefault("_last_epoch", {})
        for row in tracker_results(result, last.get(trial.trial_id, 0)):
            if result.get(report_codec.KIND) == REPORT_EPOCH:
                last[trial.trial_id] = row["training_iteration"]
            super().log_trial_result(iteration, trial, row)  # type: ignore[misc]


def _mlflow_class() -> type:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflowTracker(_PerEpoch, MLflowLoggerCallback):
        """One MLflow run per trial, named by its trial_id."""

        def log_trial_start(self, trial: Any) -> None:
            if trial not in self._trial_runs:
                name = trial.config["trial_id"]
                run = self.mlflow_util.start_run(tags={**self.tags, "trial_name": name, "ray_trial_id": trial.trial_id}, run_name=name)
                self._trial_runs[trial] = run.info.run_id
                self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=trial_params(trial))

    return MLflowTracker


def _tensorboard_class() -> type:
    from ray.tune.logger import TBXLoggerCallback

    class TensorBoardTracker(_PerEpoch, TBXLoggerCallback):
        """TensorBoard event files in <dir>/<trial_id>/."""

        def __init__(self, folder: str):
            super().__init__()
            self.folder = folder

        def log_trial_start(self, trial: Any) -> None:
            if trial in self._trial_writer:
                self._trial_writer[trial].close()
            path = os.path.join(self.folder, trial.config["trial_id"])
            self._trial_writer[trial] = self._summary_writer_cls(path, flush_secs=30)
            self._trial_result[trial] = {}

    return TensorBoardTracker


def _wandb_class() -> type:
    from ray.air.integrations.wandb import WandbLoggerCallback

    class WandbTracker(_PerEpoch, WandbLoggerCallback):
        """One W&B run per trial, named by its trial_id (the run id stays Tune's, unique
        per attempt, so a trial run again is a new W&B run with the same name)."""

        def setup(self, *args: Any, **kwargs: Any) -> None:
            # Ray asks for an API key unless $WANDB_MODE says offline/disabled; the spec's
            # mode counts the same (set only while Ray checks)
            mode = self.kwargs.get("mode")
            if mode not in ("offline", "disabled"):
                return super().setup(*args, **kwargs)
            before = os.environ.get("WANDB_MODE")
            os.environ["WANDB_MODE"] = mode
            try:
                return super().setup(*args, **kwargs)
            finally:
                if before is None:
                    os.environ.pop("WANDB_MODE", None)
                else:
                    os.environ["WANDB_MODE"] = before

        def _start_logging_actor(self, trial: Any, exclude_results: list[str], **init: Any) -> None:
            init["name"] = trial.config["trial_id"]
            init["config"] = trial_params(trial)
            super()._start_logging_actor(trial, exclude_results, **init)

    return WandbTracker
