"""A vectorized cell as one Tune trial: the seeds of one grid cell (planning.Cell) trained
together by `hidden_core.vectorized.train_seeds`, each seed still its own trial.

Per seed, exactly what an unvectorized trial has: its checkpoint folder
(``<sweep>/checkpoints/<trial_id>/``, in `train`'s format, so a seed can resume alone or in
a cell; written after the last epoch and otherwise at most every ``checkpoint_every_s``
(run option), as `train` writes a trial's: a killed cell loses at most that much training), its subnet file (``<sweep>/subnets/<trial_id>.safetensors``,
written when it ends completed or diverged; a pruned seed's is made from its checkpoint by
checkpoints.trial_final, as a pruned trial's), its epochs, its store row and its pruning
decision.

Reports (records.REPORT_KINDS, written by report_codec.cell_report) carry ``seeds``: JSON
{trial_id: {epochs, started_at, resumed_from, and at the end kind/status/metrics or the
error}}; the driver (driver_state.SweepRuntime) writes each seed's rows from it.

Pruning, seed by seed: the driver's scheduler (pruning.PruningScheduler) reports each seed's
val_acc to the seed's own Optuna trial in the cell's study, and when the pruner says prune
it writes a decision file ``pruned.json`` into that seed's checkpoint folder before it lets
the trial go on. Tune's function trainables report synchronously (the training thread
waits in `tune.report` until the driver has processed the report and asked for the next
one), so right after each report the trial reads the decisions of the seeds it reported
and stops those: a pruned seed leaves the stack and costs no more compute. The decision
file lives as long as the checkpoint (until the seed's row is in the store): a driver
killed after deciding leaves it behind, and the next run's cell trial takes that seed as
pruned at its checkpoint without training it again.

Resume: each seed resumes from its own checkpoint; seeds whose checkpoints are at
different epochs (a worker killed between two seeds' checkpoint writes) train in groups of
equal epoch, the least advanced first (train_seeds).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from hidden_core import paths
from hidden_core.records import (
    COMPLETED,
    PRUNED,
    REPORT_EPOCH,
    REPORT_FAILED,
    REPORT_FINAL,
    SELECTION_METRIC,
)
from hidden_core.tune.report_codec import CONTROLS, cell_report, seed_entry

PRUNE_DECISION_FILE = paths.PRUNE_DECISION_FILE


# ---- per-seed pruning decisions (driver writes, trial reads) ------------------------------
def write_prune_decision(checkpoint_dir: str, epoch: int) -> None:
    """The driver's decision: the seed whose checkpoint folder this is stops after `epoch`."""
    data = json.dumps({"pruned_after_epoch": int(epoch)}).encode()
    if paths.is_url(checkpoint_dir):
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(checkpoint_dir)
        fs.create_dir(base, recursive=True)
        with fs.open_output_stream(f"{base}/{PRUNE_DECISION_FILE}") as dst:
            dst.write(data)
        return
    os.makedirs(checkpoint_dir, exist_ok=True)
    tmp = os.path.join(checkpoint_dir, f".{PRUNE_DECISION_FILE}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(checkpoint_dir, PRUNE_DECISION_FILE))


def is_pruned(checkpoint_dir: str) -> bool:
    """Whether the driver decided to prune the seed whose checkpoint folder this is."""
    if paths.is_url(checkpoint_dir):
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(checkpoint_dir)
        return fs.get_file_info(f"{base}/{PRUNE_DECISION_FILE}").type == pafs.FileType.File
    return os.path.isfile(os.path.join(checkpoint_dir, PRUNE_DECISION_FILE))


# ---- the cell's trainable --------------------------------------------------------------------
def cell_trainable(config: dict[str, Any], data: Any, common: dict[str, Any], report_error: Any) -> None:
    """Train the seeds `config["seeds"]` of one cell as one Tune trial (called by
    trainable.sweep_trainable with the cell's data and the report fields every report
    carries). report_error(err) -> the error text a failed report carries."""
    import torch
    from ray import tune

    from hidden_core.config import RunOptions, TrialConfig
    from hidden_core.training import CheckpointCadence, checkpoint_history
    from hidden_core.tune.checkpoints import STAGED_SUBNET, TrialCheckpoint, upload_file
    from hidden_core.tune.planning import planned_epochs
    from hidden_core.vectorized import train_seeds

    logging.getLogger("ray.train").setLevel(logging.WARNING)
    cell_config = TrialConfig.model_validate(config["trial"])
    seeds = {int(s["seed"]): s for s in config["seeds"]}
    trial_ids = {seed: s["trial_id"] for seed, s in seeds.items()}
    checkpoints = {seed: TrialCheckpoint(s["checkpoint_dir"], s["trial_id"]) for seed, s in seeds.items()}
    try:
        folders = {seed: cp.open() for seed, cp in checkpoints.items()}
        started_at = {seed: cp.started_at() for seed, cp in checkpoints.items()}
        histories = {seed: list(checkpoint_history(folders[seed]) or []) for seed in seeds}
        resumed = {seed: len(h) for seed, h in histories.items()}
        unreported = {seed: list(h) for seed, h in histories.items()}  # a resumed seed re-sends its earlier epochs
        # seeds the driver pruned before it was killed: pruned at their checkpoint, not trained again
        pruned = {seed for seed, s in seeds.items() if resumed[seed] and is_pruned(s["checkpoint_dir"])}
        for seed in pruned:
            unreported[seed] = []  # decided already: its rows go with the final report only
        subnet_paths = {seed: (f"{folders[seed]}/{STAGED_SUBNET}" if checkpoints[seed].remote else s["subnet_path"])
                        for seed, s in seeds.items() if s.get("subnet_path")}
        run = RunOptions.model_validate({**config["run"], "checkpoint_dir": None, "save_subnet": None})
        report_every_s = float(config.get("report_every_s") or 0.0)
        last_epoch = planned_epochs(cell_config)
        last_report = [time.monotonic()]
        due: dict[int, bool] = {}

        def report_due(epoch: int) -> bool:
            """Report (and checkpoint first) at most every report_every_s, and after the last epoch."""
            if epoch not in due:
                due[epoch] = time.monotonic() - last_report[0] >= report_every_s or epoch >= last_epoch
            return due[epoch]

        def entry(seed: int, epochs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
            return seed_entry(unreported[seed] if epochs is None else epochs, started_at=started_at[seed], resumed_from=resumed[seed], **extra)

        def after_epoch(epoch: int, records: dict[int, Any]) -> set[int]:
            for seed, record in records.items():
                row = record.to_dict()
                histories[seed].append(row)
                unreported[seed].append(row)
            if not report_due(epoch):
                return set()  # the next report carries these epochs
            for seed in records:
                checkpoints[seed].push()  # uploads what train_seeds checkpointed since the last report
            values = [r.val_acc for r in records.values()]
            payload = {trial_ids[seed]: entry(seed) for seed in seeds if unreported[seed]}
            tune.report(cell_report(REPORT_EPOCH, payload, max(values), common, epoch=epoch))
            for seed in seeds:
                unreported[seed] = []
            last_report[0] = time.monotonic()
            # the driver decided while this thread waited in tune.report
            stop = {seed for seed in records if is_pruned(seeds[seed]["checkpoint_dir"])}
            pruned.update(stop)
            return stop

        to_train = [seed for seed in seeds if seed not in pruned]
        try:
            results = dict(zip(to_train, train_seeds(cell_config, to_train, run, data=data, after_epoch=after_epoch, checkpoint_dirs=folders, checkpoint_due=CheckpointCadence(run.checkpoint_every_s, last_epoch).due,
                                                     subnet_paths=subnet_paths), strict=True)) if to_train else {}
        except Exception as err:  # the cell's seeds fail; the sweep goes on
            text = report_error(err)
            payload = {trial_ids[seed]: entry(seed, kind=REPORT_FINAL, status=PRUNED) if seed in pruned else entry(seed, kind=REPORT_FAILED, error=text)
                       for seed in seeds}
            last = [h[-1][SELECTION_METRIC] for h in histories.values() if h]
            final = cell_report(REPORT_FAILED, payload, max(last, default=float("nan")), common, error=text)
        else:
            payload = {}
            for seed in seeds:
                result = results.get(seed)
                if result is None:  # pruned by a decision an earlier driver made
                    payload[trial_ids[seed]] = entry(seed, kind=REPORT_FINAL, status=PRUNED, epochs=histories[seed])
                    continue
                if result.status != PRUNED and seed in subnet_paths and subnet_paths[seed] != seeds[seed]["subnet_path"]:
                    upload_file(subnet_paths[seed], seeds[seed]["subnet_path"])
                rows = [r.to_dict() for r in result.history]
                extra = {}
                if config.get("controls") and result.status != PRUNED and seed in subnet_paths and os.path.exists(subnet_paths[seed]):
                    # the seed's controls here, while torch, the data and its file are at hand (controls_pass.worker_plan)
                    from hidden_core.tune.controls_pass import score_in_worker

                    extra[CONTROLS] = score_in_worker(trial_ids[seed], cell_config.method, config["controls"], subnet_paths[seed],
                                                      data, config["run"].get("data_root"))
                payload[trial_ids[seed]] = entry(seed, kind=REPORT_FINAL, **result.to_dict(), **extra, epochs=rows)
            best = [r.best_val_acc for r in results.values()]
            final = cell_report(REPORT_FINAL, payload, max(best, default=float("nan")), common, status=COMPLETED)
        results = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        tune.report(final)
    finally:
        for cp in checkpoints.values():
            cp.close()

