"""The core `train` as a Ray Tune function trainable.

One call trains one trial. Every epoch it reports the epoch's metrics and a checkpoint
(``tune.report(metrics, checkpoint=...)``); `train` has already written its checkpoint
into the trial's local checkpoint folder before it calls back. A trial restarted by Tune
(a lost worker, a restored experiment) copies ``tune.get_checkpoint()`` into a fresh folder
and `train` resumes from it.

Reports carry a ``kind``:
- ``epoch``: the latest epoch's metrics plus ``epochs``, every epoch not reported yet (JSON).
  Reports (each with a checkpoint) go out at most every ``report_every_s`` seconds (0: every
  epoch), so short epochs do not pay a driver round trip and a checkpoint copy each; the
  scheduler and the store writer still see every epoch. The first report after a resume
  re-sends the epochs before the checkpoint, so a restarted driver writes every epoch row.
- ``final``: after `train` returns: its TrialResult and the whole history (JSON).
- ``failed``: `train` raised. The error text is reported and the function returns, so a
  bug fails its trial at once instead of being retried; Tune's `max_failures` retries are
  left for lost workers and nodes.

Data: the driver puts one DataSplits per distinct data key into the object store and
passes the references (``tune.with_parameters``); each worker process fetches a split once
and keeps it for every later trial it runs (actors are reused).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

META_FILE = "sweep_meta.json"
PLACEHOLDER = ".hidden_placeholder"  # an empty stand-in checkpoint (runner.fill_missing_checkpoints)
MAX_ERROR_CHARS = 8000

_DATA_CACHE: dict[tuple, Any] = {}


def data_key(trial: dict[str, Any]) -> tuple:
    """The DataSplits.key a trial's config needs (dataset, val_fraction, split_seed)."""
    return (trial["dataset"], float(trial["val_fraction"]), int(trial["split_seed"]))


def core_train() -> Callable[..., Any]:
    from hidden_core.training import train

    return train


def node_name() -> str:
    from hidden_core.cluster import node_name as cluster_node_name

    return cluster_node_name()


def _splits(trial: dict[str, Any], data_refs: dict[tuple, Any] | None) -> Any:
    if not data_refs:
        return None
    key = data_key(trial)
    if key not in _DATA_CACHE:
        ref = data_refs.get(key)
        if ref is None:
            return None
        import ray

        if len(_DATA_CACHE) >= 4:  # keep a worker's memory bounded on many-dataset sweeps
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = ray.get(ref)
    return _DATA_CACHE[key]


_NODE: list[str] = []


def _node() -> str:
    if not _NODE:
        _NODE.append(node_name())
    return _NODE[0]


def _release_memory() -> None:
    """Between trials on a reused actor: give the last trial's GPU memory back (a full
    garbage collection only where it matters: on a GPU, CPU tensors are freed by refcount)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def _write_meta(folder: str, meta: dict[str, Any]) -> None:
    tmp = os.path.join(folder, f".{META_FILE}.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f)
    os.replace(tmp, os.path.join(folder, META_FILE))


def sweep_trainable(config: dict[str, Any], data_refs: dict[tuple, Any] | None = None, train_fn: Callable[..., Any] | None = None) -> None:
    """Tune function trainable. `config`: {'trial': TrialConfig dict, 'run': RunOptions dict,
    'trial_id', 'cell_id', ...} as the sweep's searcher made it."""
    import torch
    from ray import tune

    from hidden_core.config import RunOptions, TrialConfig

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per persisted checkpoint

    trial_config = TrialConfig.model_validate(config["trial"])
    run_values = dict(config["run"])
    threads = int(run_values.get("threads") or 1)
    torch.set_num_threads(threads)

    folder = tempfile.mkdtemp(prefix=f"hidden-{config['trial_id']}-")
    history: list[dict[str, Any]] = []
    started_at = time.time()
    restored = tune.get_checkpoint()
    if restored is not None:
        restored.to_directory(folder)
        placeholder = os.path.join(folder, PLACEHOLDER)
        if os.path.exists(placeholder):  # see runner.fill_missing_checkpoints: start afresh
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder, exist_ok=True)
        meta_path = os.path.join(folder, META_FILE)
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            history = list(meta.get("history", []))
            started_at = float(meta.get("started_at", started_at))
    unreported: list[dict[str, Any]] = list(history)  # a resumed trial re-sends its earlier epochs
    common = {
        "node": _node(),
        "started_at": started_at,
        "device": run_values.get("device", "cpu"),
        "torch_version": torch.__version__,
        "threads": threads,
    }
    run = RunOptions.model_validate({**run_values, "checkpoint_dir": folder})
    report_every_s = float(config.get("report_every_s") or 0.0)
    last_report = [time.monotonic()]

    def on_epoch(record: Any) -> None:
        row = record.to_dict()
        history.append(row)
        unreported.append(row)
        _write_meta(folder, {"history": history, "started_at": started_at})
        now = time.monotonic()
        if now - last_report[0] < report_every_s and record.epoch < trial_config.epochs:
            return  # the next report carries this epoch
        metrics = {"kind": "epoch", **row, "epochs": json.dumps(unreported), **common}
        unreported.clear()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        last_report[0] = time.monotonic()

    train = train_fn or core_train()
    try:
        try:
            data = _splits(config["trial"], data_refs)
            result = train(trial_config, run, data=data, on_epoch=on_epoch)
        except Exception as err:  # a trial that raises fails; the sweep goes on
            text = f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}"
            if len(text) > MAX_ERROR_CHARS:
                text = text[: MAX_ERROR_CHARS // 2] + "\n...\n" + text[-MAX_ERROR_CHARS // 2 :]
            last_val = history[-1]["val_acc"] if history else float("nan")  # Tune wants the metric in every report
            final = {"kind": "failed", "error": text, "val_acc": last_val, "history": json.dumps(history), **common}
        else:
            summary = result.to_dict()
            records = [r.to_dict() for r in getattr(result, "history", [])] or history
            final = {"kind": "final", **summary, "history": json.dumps(records), **common, "device": summary.get("device") or common["device"]}
        # clean up before the last report: the actor takes its next trial right after it
        data = result = None
        shutil.rmtree(folder, ignore_errors=True)
        _release_memory()
        tune.report(final)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

