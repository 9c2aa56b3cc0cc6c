"""The data of a sweep's trials, on the driver: checked available before anything starts,
then loaded once per distinct data key (dataset, val_fraction, split_seed) for the object
store (the trainable fetches each split once per worker)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hidden_core.config import DATASET_INFO, RunOptions, TrialConfig


def data_key(trial: dict[str, Any]) -> tuple:
    """The DataSplits.key a trial's config needs (dataset, val_fraction, split_seed)."""
    return (trial["dataset"], float(trial["val_fraction"]), int(trial["split_seed"]))


def check_data(configs: Iterable[TrialConfig], run_values: dict[str, Any]) -> None:
    """Fail before anything starts when a torchvision data set is missing. Only those need a
    look (data sets generated offline are always there), so a sweep of none does not import
    torch (hidden_core.data) here: the driver's data thread imports it while Ray starts."""
    first = {}
    for config in configs:
        first.setdefault(config.dataset, config)
    needed = [config for dataset, config in first.items() if DATASET_INFO[dataset].torchvision]
    if not needed:
        return
    from hidden_core.data import check_data_available

    run = RunOptions.model_validate(run_values)
    for config in needed:
        check_data_available(config, run)


def load_data(configs: Iterable[TrialConfig], run_values: dict[str, Any]) -> dict[tuple, Any]:
    """One DataSplits per distinct data key, loaded once on the driver."""
    from hidden_core.data import load_data as load_splits

    run = RunOptions.model_validate(run_values)
    out: dict[tuple, Any] = {}
    for config in configs:
        key = data_key(config.model_dump())
        if key not in out:
            out[key] = load_splits(config, run)
    return out
