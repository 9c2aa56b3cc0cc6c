"""The core `train` as a Ray Tune function trainable.

One call trains one trial, or, when its config carries `seeds`, the seeds of one grid cell
as one vectorized model (cells.py: each seed still its own trial). `train` checkpoints (cadence: checkpoints.py) into the trial's own folder
(``<results>/<sweep>/checkpoints/<trial_id>/``, see checkpoints.py) and resumes from what
is there: a trial started again (Tune's retry after a lost worker, a re-run after a killed
driver) goes on from its last checkpoint, whoever runs it. Tune's checkpoints are not used.
When it returns, `train` has written what the trial learned to
``<results>/<sweep>/subnets/<trial_id>.safetensors`` (the ``save_subnet`` run option, set
here; for an object store, written locally and uploaded before the final report). A pruned
trial never returns: checkpoints.trial_final makes its file from its checkpoint.

Reports carry a ``kind`` (records.REPORT_KINDS):
- ``epoch``: the latest epoch's metrics plus ``epochs``, every epoch not reported yet (JSON).
  Reports go out at most every ``report_every_s`` seconds (0: every epoch), so short epochs
  do not pay a driver round trip each; the scheduler and the store writer still see every
  epoch. The first report after a resume re-sends the epochs of the checkpoint, so a new
  driver writes every epoch row; ``resumed_from`` says how many epochs were not recomputed.
- ``final``: after `train` returns: its TrialResult (records.METRIC_FIELDS, the training
  health among them: the driver copies those into the store row) and the whole history (JSON).
- ``failed``: `train` raised. The error text is reported and the function returns, so a
  bug fails its trial at once instead of being retried; Tune's `max_failures` retries are
  left for lost workers and nodes.

Data: the driver puts one DataSplits per distinct data key into the object store and
passes the references (``tune.with_parameters``); each worker process fetches a split once
and keeps it for every later trial it runs (actors are reused).
"""

from __future__ import annotations

import gc
import logging
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

from hidden_core.catalog import LEVELS, method_info
from hidden_core.checkpoint import CheckpointMismatch
from hidden_core.checkpoint import history as checkpoint_history
from hidden_core.tune import report_codec
from hidden_core.tune.checkpoints import STAGED_SUBNET, TrialCheckpoint, upload_file
from hidden_core.tune.planning import planned_epochs
from hidden_core.tune.ray_setup import quiet_sigterm_exit
from hidden_core.tune.sweep_data import worker_splits

MAX_ERROR_CHARS = 8000


def core_train() -> Callable[..., Any]:
    from hidden_core.trial import train

    return train


def node_name() -> str:
    from hidden_core.cluster import node_name as cluster_node_name

    return cluster_node_name()


_NODE: list[str] = []


def _node() -> str:
    if not _NODE:
        _NODE.append(node_name())
    return _NODE[0]


def _in_ray_worker() -> bool:
    import ray

    return getattr(ray._private.worker.global_worker, "mode", None) == ray.WORKER_MODE


def _release_memory() -> None:
    """Between trials on a reused actor: give the last trial's GPU memory back (a full
    garbage collection only where it matters: on a GPU, CPU tensors are freed by refcount)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def sweep_trainable(config: dict[str, Any], data_refs: dict[tuple, Any] | None = None, train_fn: Callable[..., Any] | None = None) -> None:
    """Tune function trainable. `config`: {'trial': TrialConfig dict, 'run': RunOptions dict,
    'trial_id', 'cell_id', ...} as the sweep's searcher made it."""
    import torch
    from ray import tune

    from hidden_core.config import RunOptions, TrialConfig

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per persisted checkpoint
    if _in_ray_worker():  # not in a test's process calling this directly
        quiet_sigterm_exit()  # no "Exception ignored ... SystemExit" when Ray ends this worker

    trial_config = TrialConfig.model_validate(config["trial"])
    run_values = dict(config["run"])
    threads = int(run_values.get("threads") or 1)
    torch.set_num_threads(threads)
    if config.get("seeds"):  # the seeds of one grid cell, vectorized (cells.py)
        from hidden_core.tune.cells import cell_trainable

        common = {"node": _node(), "device": run_values.get("device", "cpu"), "torch_version": torch.__version__, "threads": threads}
        cell_trainable(config, worker_splits(config["trial"], data_refs), common, error_text)
        return

    checkpoint = TrialCheckpoint(config["checkpoint_dir"], config["trial_id"])
    folder = checkpoint.open()
    started_at = checkpoint.started_at()
    history, resumed_from = _resumed(folder, trial_config)
    unreported: list[dict[str, Any]] = list(history)  # a resumed trial re-sends its earlier epochs
    common = {
        "resumed_from": resumed_from,
        "node": _node(),
        "started_at": started_at,
        "device": run_values.get("device", "cpu"),
        "torch_version": torch.__version__,
        "threads": threads,
    }
    subnet_path = config.get("subnet_path")
    # a remote subnet file is written into the staging folder and uploaded before the final report
    local_subnet = f"{folder}/{STAGED_SUBNET}" if subnet_path and checkpoint.remote else subnet_path
    run = RunOptions.model_validate({**run_values, "checkpoint_dir": folder, "save_subnet": local_subnet})
    report_every_s = float(config.get("report_every_s") or 0.0)
    last_epoch = planned_epochs(trial_config)  # the last epoch always goes out at once (pruning decides before it)
    last_report = [time.monotonic()]

    def on_epoch(record: Any) -> None:
        row = record.to_dict()
        history.append(row)
        unreported.append(row)
        now = time.monotonic()
        if now - last_report[0] < report_every_s and record.epoch < last_epoch:
            return  # the next report carries this epoch
        checkpoint.push()  # the checkpoint `train` wrote last, if not uploaded yet
        metrics = report_codec.epoch_report(row, unreported, common)
        unreported.clear()
        tune.report(metrics)
        last_report[0] = time.monotonic()

    train = train_fn or core_train()
    try:
        try:
            data = worker_splits(config["trial"], data_refs)
            result = train(trial_config, run, data=data, on_epoch=on_epoch)
        except Exception as err:  # a trial that raises fails; the sweep goes on
            text = error_text(err)
            final = report_codec.failed_report(text, history, common)
        else:
            if local_subnet and local_subnet != subnet_path:
                upload_file(local_subnet, subnet_path)
            summary = result.to_dict()
            if config.get("controls") and local_subnet and os.path.exists(local_subnet):
                # its controls here, while torch, the data and the file are at hand (controls_pass.worker_plan)
                from hidden_core.tune.controls_pass import score_in_worker

                summary[report_codec.CONTROLS] = score_in_worker(config["trial_id"], trial_config.method, config["controls"],
                                                                 local_subnet, data, run_values.get("data_root"))
            records = [r.to_dict() for r in getattr(result, "history", [])] or history
            final = report_codec.final_report(summary, records, common)
        # clean up before the last report: the actor takes its next trial right after it
        data = result = None
        _release_memory()
        tune.report(final)
    finally:
        checkpoint.close()  # the folder itself stays until the driver has the trial's final row


def _resumed(folder: str, config: Any) -> tuple[list[dict[str, Any]], int]:
    """What the trial's checkpoint folder already holds: the epoch records a resume re-sends
    (the trial's own checkpoint; a lottery trial's segments report as they train) and how
    many epochs are not recomputed (`resumed_from`). Another trial's checkpoint yields none
    (its epochs are never sent as this trial's); `train` then fails the trial, naming both
    trial_ids (checkpoint.CheckpointMismatch)."""
    try:
        if method_info(config.method).runner == LEVELS:
            from hidden_core.lottery import resumed_epochs

            return [], resumed_epochs(folder, config.trial_id)
        records = list(checkpoint_history(folder, config.trial_id) or [])
    except CheckpointMismatch:
        return [], 0
    return records, len(records)


def error_text(err: BaseException) -> str:
    """A failed trial's error for its row: the exception and its traceback, the middle cut
    out past MAX_ERROR_CHARS."""
    text = f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS // 2] + "\n...\n" + text[-MAX_ERROR_CHARS // 2 :]
    return text
