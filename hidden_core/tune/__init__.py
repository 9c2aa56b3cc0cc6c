"""The Ray side of a sweep: trainable (wraps train), per-cell Optuna search and pruning,
the runner (spec -> Tuner -> store) and the progress line.

Import the runner lazily: `from hidden_core.tune.runner import run_sweep`; importing this
package alone does not import Ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_sweep", "SweepReport"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hidden_core.tune import runner

        return getattr(runner, name)
    raise AttributeError(name)
