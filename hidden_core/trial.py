"""One trial, whatever its method: what `hidden train`, a sweep's trainable and
`hidden_core.train` call.

A lottery ticket is several trainings of one network (hidden_core.lottery's level loop, which
trains each level with training.train_network); every other method is one training. Keeping
the dispatch here, above both, is what keeps training and lottery out of an import circle.
"""

from __future__ import annotations

from collections.abc import Callable

from hidden_core.catalog import LEVELS, method_info
from hidden_core.config import RunOptions, TrialConfig
from hidden_core.data import DataSplits
from hidden_core.training import EpochRecord, TrialResult, train_network


def train(
    config: TrialConfig,
    run: RunOptions | None = None,
    *,
    data: DataSplits | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrialResult:
    """Train the trial `config` describes (checkpointing to run.checkpoint_dir when set) and
    return its TrialResult."""
    if method_info(config.method).runner == LEVELS:
        from hidden_core.lottery import train_lottery  # torch-heavy; only lottery trials need it

        return train_lottery(config, run or RunOptions(), data=data, on_epoch=on_epoch)
    return train_network(config, run, data=data, on_epoch=on_epoch)
