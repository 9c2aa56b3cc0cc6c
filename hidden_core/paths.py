"""Where a sweep keeps its things under a results root (a folder or an object-store URL).

    <results>/<sweep>/trials/, epochs/         the store's Parquet parts (store.py)
    <results>/<sweep>/controls/                the controls pass's Parquet parts (tune/controls_pass.py)
    <results>/<sweep>/checkpoints/<trial_id>/  a trial's latest checkpoint while it is not final:
        checkpoint.pt                          training's checkpoint (hidden_core/checkpoint.py owns its format)
        trial.json                             when the trial first started (tune/checkpoints.py)
        lottery.pt, segment-<i>/checkpoint.pt  a lottery_ticket trial's level-loop state and its segment in training
        pruned.json                            a vectorized cell's decision to prune this seed (tune/cells.py)
        subnet.safetensors                     an object-store trial's subnet file, staged before its upload
    <results>/<sweep>/subnets/<trial_id>.safetensors  what a final trial learned (hidden_core/subnet)
    <results>/<sweep>/lease.json               the live driver of the sweep (lease.py)
    <results>/<sweep>/hidden-sweep.json        the marker: this folder is a sweep hidden made (store.py)
    <results>/<sweep>/_studies.db              Optuna studies (pruning and sampling history)
    <results>/<sweep>/analysis/                `hidden analyze` outputs (local stores)
    <results>/specs/, reproduce_timings.json   `hidden reproduce`'s specs as run and its timings
    FILE.controls.csv                          `hidden subnet controls FILE.safetensors`'s table, beside FILE
    <data root>/generated/<name>-<version>-<key>.npz  a data set generated offline (MNIST-1D), kept for the next process (data.py)

Only the store, the checkpoints and the subnet files are durable state of a run; Tune's own bookkeeping stays
in a driver-local folder (ray_setup.py) and is never restored.
Imports nothing of the project: the store, the Tune side and the CLI all use it.
Every on-disk name is defined here and only here (tests/test_paths.py finds a literal copy elsewhere).
"""

from __future__ import annotations

import os
import re

TABLE_DIRS = ("trials", "epochs")  # the store's Parquet tables (store.TABLES)
CONTROLS_DIR = "controls"  # the controls pass's Parquet table (store.CONTROLS_TABLE)
CHECKPOINTS_DIR = "checkpoints"
SUBNETS_DIR = "subnets"
SUBNET_SUFFIX = ".safetensors"
LEASE_FILE = "lease.json"
STUDIES_FILE = "_studies.db"
ANALYSIS_DIR = "analysis"  # `hidden analyze` outputs of a local store
# A folder is a sweep when it holds this file (written by the first write to the sweep, and
# by a driver taking its lease); a folder name alone never makes one (store.ResultStore.sweeps).
SWEEP_MARKER = "hidden-sweep.json"
# Inside a trial's checkpoint folder (checkpoints/<trial_id>/).
CHECKPOINT_FILE = "checkpoint.pt"  # training's checkpoint (hidden_core/checkpoint.py)
TRIAL_FILE = "trial.json"  # when the trial first started (tune/checkpoints.TrialCheckpoint)
LOTTERY_STATE_FILE = "lottery.pt"  # the lottery_ticket level loop's own state (lottery.py)
SEGMENT_PREFIX = "segment-"  # segment-<i>/: the checkpoint folder of a lottery trial's segment in training
PRUNE_DECISION_FILE = "pruned.json"  # a vectorized cell pruned this seed (tune/cells.py)
STAGED_SUBNET_FILE = "subnet.safetensors"  # an object-store trial's subnet file before its upload to subnets/
# Beside a subnet file: `hidden subnet controls FILE` stores its table in FILE's name with this suffix.
CONTROLS_SUFFIX = ".controls.csv"
# Under the results root, outside any sweep: what `hidden reproduce` keeps (reproduce.py).
REPRO_SPECS_DIR = "specs"  # the specs as run (the chosen lr per cell, the seeds)
REPRO_TIMINGS_FILE = "reproduce_timings.json"  # wall seconds of the runs that made each sweep's trials
# Under the data root (data.default_data_root): data sets generated offline, kept for the next process.
GENERATED_DATA_DIR = "generated"
# Everything a sweep folder may hold: `hidden results delete` removes the folder with all of it.
SWEEP_ENTRIES = (*TABLE_DIRS, CONTROLS_DIR, CHECKPOINTS_DIR, SUBNETS_DIR, LEASE_FILE, STUDIES_FILE, ANALYSIS_DIR, SWEEP_MARKER)


def is_url(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


def normalize_root(root: str | os.PathLike[str]) -> str:
    """An absolute local path (file:// dropped), or the URL as given without a trailing '/'."""
    text = os.fspath(root)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if is_url(text):
        return text.rstrip("/")
    return os.path.abspath(text)


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_url(root) else os.path.join(root, *parts)


# A sweep's name is its folder's name: the spec's `name:` and every command that names a sweep
# are checked against this one rule. Matched whole (re.fullmatch); no '/', no leading '.'.
SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,99}")
SWEEP_NAME_RULE = "1-100 letters, digits, '_', '.', '=', '-'; not starting with a symbol"


def is_sweep_name(name: object) -> bool:
    return isinstance(name, str) and SWEEP_NAME.fullmatch(name) is not None


def sweep_name_problem(name: object) -> str | None:
    """What is wrong with `name` as a sweep name (the caller puts the field and the value
    first: "name: 'a/b' " + this), or None when it is one."""
    return None if is_sweep_name(name) else f"is not a valid sweep name ({SWEEP_NAME_RULE})"


def sweep_dir(root: str | os.PathLike[str], sweep: str) -> str:
    return join(normalize_root(root), sweep)


def checkpoints_dir(root: str | os.PathLike[str], sweep: str) -> str:
    return join(sweep_dir(root, sweep), CHECKPOINTS_DIR)


def trial_checkpoint_dir(root: str | os.PathLike[str], sweep: str, trial_id: str) -> str:
    return join(checkpoints_dir(root, sweep), trial_id)


def segment_dir_name(index: int) -> str:
    """The sub-folder of a lottery trial's checkpoint folder that segment `index` trains in."""
    return f"{SEGMENT_PREFIX}{index}"


def controls_table_path(subnet_file: str | os.PathLike[str]) -> str:
    """Where `hidden subnet controls FILE` stores its table: beside FILE, FILE's name with
    its subnet suffix replaced by CONTROLS_SUFFIX."""
    path = os.fspath(subnet_file)
    stem = path[: -len(SUBNET_SUFFIX)] if path.endswith(SUBNET_SUFFIX) else path
    return stem + CONTROLS_SUFFIX


def lease_path(root: str | os.PathLike[str], sweep: str) -> str:
    return join(sweep_dir(root, sweep), LEASE_FILE)


def subnet_file_name(sweep: str, trial_id: str) -> str:
    """A trial's subnet file relative to the results root, '/'-separated (the trials table's
    `subnet_file` column): join it to the root, a folder or a URL alike."""
    return f"{sweep}/{SUBNETS_DIR}/{trial_id}{SUBNET_SUFFIX}"


def subnets_dir(root: str | os.PathLike[str], sweep: str) -> str:
    return join(sweep_dir(root, sweep), SUBNETS_DIR)


def trial_subnet_path(root: str | os.PathLike[str], sweep: str, trial_id: str) -> str:
    return join(normalize_root(root), *subnet_file_name(sweep, trial_id).split("/"))
