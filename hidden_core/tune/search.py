"""The Tune Searcher of a sweep: hands out the planned grid trials, then, for `search`
parameters, asks each cell's Optuna study (ask/tell, one study per cell) for samples.

Asking lazily, only when Tune has room for another trial, lets a TPE (or GP) sampler learn
from the cell's finished and pruned trials before it proposes the next. Samples rotate over
the grid points, so each cell's earlier samples have time to finish.

Like the scheduler, the searcher keeps no live state of its own (Tune pickles it into the
experiment folder): the queue lives in the driver's ``SweepRuntime``. A restored experiment
only finishes the trials it already had; anything else still missing is planned afresh.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

if TYPE_CHECKING:
    from hidden_core.tune.runner import SweepRuntime


class SweepSearcher(Searcher):
    def __init__(self, runtime_key: str):
        super().__init__(metric="val_acc", mode="max")
        self.runtime_key = runtime_key

    def __getstate__(self) -> dict[str, Any]:
        return {"runtime_key": self.runtime_key, "_metric": self._metric, "_mode": self._mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def runtime(self) -> SweepRuntime:
        from hidden_core.tune.runner import get_runtime

        return get_runtime(self.runtime_key)

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
        # a (nearly empty) file, so that Tune's restore finds the searcher's checkpoint
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"runtime_key": self.runtime_key}, f)

    def restore(self, checkpoint_path: str) -> None:
        pass
