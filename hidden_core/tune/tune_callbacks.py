"""The Tune glue of a sweep: the callback that writes each trial to the store as it ends and
ticks the progress line, and the trial names Tune shows (the environment Tune reads is
ray_setup.TUNE_ENV).

Extra callbacks (experiment trackers) are appended by run_sweep's `callbacks` argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from hidden_core.tune.report_codec import PAYLOAD

if TYPE_CHECKING:
    from hidden_core.tune.driver_state import SweepRuntime

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
        forget_results(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.runtime.on_error(trial)
        forget_results(trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        progress = self.runtime.progress
        if progress is not None:
            progress.tick(list(self.runtime.live.values()))  # not `trials`: every trial of the run

    def get_state(self) -> dict | None:
        return None


def forget_results(trial: Any) -> None:
    """Drop what Tune keeps of an ended trial's results that nothing reads any more.

    Tune keeps every Trial of the run until the run ends, each with its last result and a
    running analysis of every numeric field it reported (ray/tune/trainable/metadata.py),
    read only to save Tune's experiment state, which a sweep never restores (runner.py).
    By the time the callbacks hear of the end, the scheduler and the searcher have had the
    last result (Tune calls them first) and the driver has decoded it into its own record
    (driver_state.py): the analysis and the report's payload (a final report's whole
    history) go, so what an ended trial holds does not grow with its epochs or fields.
    What is left of the last result (kind, val_acc, Tune's own fields) stays for Tune's
    ResultGrid at the end of the run. The copies of its config go later
    (ConfigCopiesCleanup)."""
    metadata = getattr(trial, "run_metadata", None)
    if metadata is None:  # not a Tune Trial (a test's stand-in)
        return
    metadata.metric_analysis.clear()
    metadata.metric_n_steps.clear()
    metadata.last_result.pop(PAYLOAD, None)
    metadata.invalidate_cache()


class ConfigCopiesCleanup(Callback):
    """The run's last callback: drops an ended trial's copies of its config that only a
    running trial's console output, population-based training or a tracker's end of trial
    read (measured with tracemalloc on a 300-trial scale run: 11.8 of the 21.2 KiB the
    driver's Python heap grew by per trial): the `config` Tune puts in every result (the
    trial keeps its own `config`), the searcher's flattened `evaluated_params` (Ray's
    TensorBoard logger writes them as hparams when the trial ends: hence last, after every
    tracker's callback) and the `experiment_tag` built from them."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        forget_config_copies(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        forget_config_copies(trial)


def forget_config_copies(trial: Any) -> None:
    metadata = getattr(trial, "run_metadata", None)
    if metadata is None:  # not a Tune Trial (a test's stand-in)
        return
    metadata.last_result.pop("config", None)
    metadata.invalidate_cache()
    trial.evaluated_params = {}
    trial.experiment_tag = ""


def trial_name(trial: Any) -> str:
    return f"{trial.config['trial']['method']}-{trial.config['trial_id'][:8]}"


def trial_dirname(trial: Any) -> str:
    return f"{trial.config['trial_id']}-{trial.trial_id.rsplit('_', 1)[-1]}"
