"""The Tune Searcher of a sweep: hands out the planned grid trials, then, for `search`
parameters, asks each cell's Optuna study (ask/tell, one study per cell) for samples.

Asking lazily, only when Tune has room for another trial, lets a TPE (or GP) sampler learn
from the cell's finished and pruned trials before it proposes the next. Samples rotate over
the grid points, so each cell's earlier samples have time to finish.

The queue lives in the driver's ``SweepRuntime``, which run_sweep hands to the searcher.
Tune pickles the searcher into its experiment state (never restored), without the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from hidden_core.records import SELECTION_METRIC, SELECTION_MODE

if TYPE_CHECKING:
    from hidden_core.tune.driver_state import SweepRuntime


class SweepSearcher(Searcher):
    def __init__(self, runtime: SweepRuntime):
        super().__init__(metric=SELECTION_METRIC, mode=SELECTION_MODE)
        self.runtime = runtime

    def __getstate__(self) -> dict[str, Any]:
        return {"_metric": self._metric, "_mode": self._mode}  # without the live runtime: never restored

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        suggestion = self.runtime.next_suggestion()
        return Searcher.FINISHED if suggestion is None else suggestion

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the scheduler tells Optuna (it knows pruned from completed)

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        pass  # nothing to save: the sweep is never restored from Tune's state

    def restore(self, checkpoint_path: str) -> None:
        pass
