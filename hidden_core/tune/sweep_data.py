"""The data of a sweep's trials, on the driver: checked available before anything starts,
then loaded once per distinct data key (dataset, val_fraction, split_seed) for the object
store (the trainable fetches each split once per worker)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hidden_core.config import DATASET_INFO, RunOptions, TrialConfig


def data_key(trial: dict[str, Any]) -> tuple:
    """The DataSplits.key a trial's config needs (dataset, val_fraction, split_seed)."""
    return (trial["dataset"], float(trial["val_fraction"]), int(trial["split_seed"]))


# this worker process's splits by data key: a Ray worker's trials (trainable.py) and controls
# tasks (controls_tasks.py) fetch each from the object store once
_WORKER_SPLITS: dict[tuple, Any] = {}
MAX_WORKER_SPLITS = 4  # data keys a worker keeps: its memory bounded on many-dataset sweeps


def worker_splits(trial: Mapping[str, Any], data_refs: Mapping[tuple, Any] | None) -> Any:
    """In a Ray worker: the DataSplits `trial` (a TrialConfig dict) needs, from the sweep's
    object-store references, fetched once per process; None where the sweep put none for it
    (the caller loads it)."""
    if not data_refs:
        return None
    key = data_key(trial)
    if key not in _WORKER_SPLITS:
        ref = data_refs.get(key)
        if ref is None:
            return None
        import ray

        if len(_WORKER_SPLITS) >= MAX_WORKER_SPLITS:
            _WORKER_SPLITS.pop(next(iter(_WORKER_SPLITS)))
        _WORKER_SPLITS[key] = ray.get(ref)
    return _WORKER_SPLITS[key]


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
