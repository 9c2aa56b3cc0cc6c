"""Where a sweep keeps its things under a results root (a folder or an object-store URL).

    <results>/<sweep>/trials/, epochs/         the store's Parquet parts (store.py)
    <results>/<sweep>/controls/                the controls pass's Parquet parts (tune/controls_pass.py)
    <results>/<sweep>/checkpoints/<trial_id>/  a trial's latest checkpoint while it is not final
    <results>/<sweep>/subnets/<trial_id>.safetensors  what a final trial learned (hidden_core/subnet)
    <results>/<sweep>/lease.json               the live driver of the sweep (lease.py)
    <results>/<sweep>/hidden-sweep.json        the marker: this folder is a sweep hidden made (store.py)
    <results>/<sweep>/_studies.db              Optuna studies (pruning and sampling history)
    <results>/<sweep>/analysis/                `hidden analyze` outputs (local stores)

Only the store, the checkpoints and the subnet files are durable state of a run; Tune's own bookkeeping stays
in a driver-local folder (ray_setup.py) and is never restored.
Imports nothing of the project: the store, the Tune side and the CLI all use it.
"""

from __future__ import annotations

import os

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


def sweep_dir(root: str | os.PathLike[str], sweep: str) -> str:
    return join(normalize_root(root), sweep)


def checkpoints_dir(root: str | os.PathLike[str], sweep: str) -> str:
    return join(sweep_dir(root, sweep), CHECKPOINTS_DIR)


def trial_checkpoint_dir(root: str | os.PathLike[str], sweep: str, trial_id: str) -> str:
    return join(checkpoints_dir(root, sweep), trial_id)


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
