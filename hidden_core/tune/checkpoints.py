"""Trial-keyed checkpoints: the one place a trial's progress survives between attempts.

A trial checkpoints into ``<results>/<sweep>/checkpoints/<trial_id>/`` (paths.py), keyed by
its trial_id (a hash of its whole config), so whoever runs the trial next resumes it: Tune's
retry after a lost worker, a re-run after a killed driver, a driver on another machine.
Nothing of Tune's own checkpointing or experiment state is used; the store plus these
folders are the whole durable state of a sweep.

- Local (or shared) folders: `train` writes ``checkpoint.pt`` there itself every epoch,
  atomically (temporary file + os.replace). ``trial.json`` (written once, atomically) keeps
  when the trial first started.
- Object stores: the trial works in a local staging folder (``~/.cache/hidden/staging/
  <trial_id>``, never the system temp dir) and uploads ``checkpoint.pt`` after each report
  (one PUT: atomic on S3/GCS); a resume downloads it first.
- Once a trial's final row is in the store, `trial_final` deletes its folder: the single
  hook for what happens to a finished trial's state.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from hidden_core import paths

CHECKPOINT_FILE = "checkpoint.pt"  # training.CHECKPOINT_FILE (training imports torch; this module must not)
TRIAL_FILE = "trial.json"


def _fs(url: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(url)


def staging_root() -> Path:
    return Path.home() / ".cache" / "hidden" / "staging"


class TrialCheckpoint:
    """The checkpoint folder of one trial, as the trainable uses it."""

    def __init__(self, folder: str, trial_id: str):
        self.folder = folder
        self.trial_id = trial_id
        self.remote = paths.is_url(folder)
        self.local = str(staging_root() / trial_id) if self.remote else folder

    def open(self) -> str:
        """Make the local folder ready (downloading a remote checkpoint) and return it: the
        folder `train` reads and writes its checkpoint in."""
        os.makedirs(self.local, exist_ok=True)
        if self.remote:
            fs, base = _fs(self.folder)
            for name in (CHECKPOINT_FILE, TRIAL_FILE):
                try:
                    with fs.open_input_stream(f"{base}/{name}") as src:
                        data = src.readall()
                except (FileNotFoundError, OSError):
                    continue
                _write_atomic(os.path.join(self.local, name), data)
        return self.local

    def started_at(self, now: float | None = None) -> float:
        """When the trial first started (recorded on its first start, kept across resumes)."""
        path = os.path.join(self.local, TRIAL_FILE)
        try:
            with open(path) as f:
                return float(json.load(f)["started_at"])
        except (FileNotFoundError, ValueError, KeyError):
            started = time.time() if now is None else now
            _write_atomic(path, json.dumps({"trial_id": self.trial_id, "started_at": started}).encode())
            self._upload(TRIAL_FILE)
            return started

    def push(self) -> None:
        """After `train` wrote a checkpoint: make it durable where the sweep keeps it (a no-op
        for local folders, which `train` writes directly)."""
        self._upload(CHECKPOINT_FILE)

    def close(self) -> None:
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)

    def _upload(self, name: str) -> None:
        if not self.remote:
            return
        source = os.path.join(self.local, name)
        if not os.path.exists(source):
            return
        fs, base = _fs(self.folder)
        fs.create_dir(base, recursive=True)  # object stores have no folders: a no-op or a marker there
        with open(source, "rb") as src, fs.open_output_stream(f"{base}/{name}") as dst:
            shutil.copyfileobj(src, dst)


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def discard(folder: str) -> None:
    """Delete a trial's checkpoint folder (local or remote); missing is fine."""
    if paths.is_url(folder):
        fs, base = _fs(folder)
        try:
            fs.delete_dir(base)
        except (FileNotFoundError, OSError):
            pass
        return
    shutil.rmtree(folder, ignore_errors=True)


def trial_final(results_root: str, sweep: str, trial_id: str) -> None:
    """A trial's final row (completed, pruned, diverged) is in the store: it never resumes,
    so its checkpoint goes. The one place to change what a finished trial keeps."""
    discard(paths.trial_checkpoint_dir(results_root, sweep, trial_id))


def remove_empty_root(results_root: str, sweep: str) -> None:
    """After a run: the sweep's checkpoints/ folder goes when no trial has one left."""
    parent = paths.checkpoints_dir(results_root, sweep)
    if not paths.is_url(parent):
        try:
            os.rmdir(parent)
        except OSError:
            pass
