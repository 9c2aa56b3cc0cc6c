"""The Tune glue of a sweep: the callback that writes each trial to the store as it ends and
ticks the progress line, the trial names Tune shows, and the environment Tune reads.

Extra callbacks (experiment trackers) are appended by run_sweep's `callbacks` argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune import Callback

if TYPE_CHECKING:
    from hidden_core.tune.driver_state import SweepRuntime

# Driver-side environment for Tune (set before Tune reads it, unless the user set it):
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial JSON/CSV/TensorBoard files: the store is the record
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: Tune prints nothing; progress.py prints one line
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "1",
    # Tune's experiment-state snapshot (every trial's state as JSON, for Tune's own resume)
    # is never restored here (runner.py): one at the end instead of one every 10 s or more,
    # which cost up to 5% of the driver's time, growing with the trials in the run
    "TUNE_GLOBAL_CHECKPOINT_S": "86400",
}


class SweepCallback(Callback):
    """Writes each trial to the store as it ends, and ticks the progress line."""

    def __init__(self, runtime: SweepRuntime):
        self.runtime = runtime

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Tune saves its experiment state with this in it; the sweep never restores it

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.runtime.on_start(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.runtime.on_result(trial, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.runtime.on_complete(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.runtime.on_error(trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        progress = self.runtime.progress
        if progress is not None:
            progress.tick(list(self.runtime.live.values()))  # not `trials`: every trial of the run

    def get_state(self) -> dict | None:
        return None


def trial_name(trial: Any) -> str:
    return f"{trial.config['trial']['method']}-{trial.config['trial_id'][:8]}"


def trial_dirname(trial: Any) -> str:
    return f"{trial.config['trial_id']}-{trial.trial_id.rsplit('_', 1)[-1]}"
