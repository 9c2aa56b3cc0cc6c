"""Trial-keyed checkpoints: the one place a trial's progress survives between attempts.

A trial checkpoints into ``<results>/<sweep>/checkpoints/<trial_id>/`` (paths.py), keyed by
its trial_id (a hash of its whole config), so whoever runs the trial next resumes it: Tune's
retry after a lost worker, a re-run after a killed driver, a driver on another machine.
Nothing of Tune's own checkpointing or experiment state is used; the store plus these
folders are the whole durable state of a sweep.

- Local (or shared) folders: `train` writes ``checkpoint.pt`` there itself, atomically
  (temporary file + os.replace), after its last epoch and otherwise at most every
  ``checkpoint_every_s`` seconds (run option, default 30; every epoch with a pruner, see
  spec.SweepSpec.run_options): a killed trial loses at most that much training plus the
  epoch in progress. A per-epoch save cost 2-4% of a sweep's CPU time on MNIST-1D MLPs
  (benchmarks/RESULTS.md, sweep). ``trial.json`` (written once, atomically) keeps when the
  trial first started.
- Object stores: the trial works in a local staging folder (``~/.cache/hidden/staging/
  <trial_id>``, never the system temp dir) and uploads ``checkpoint.pt`` at the first report
  after `train` wrote a new one (one PUT: atomic on S3/GCS); a resume downloads it first.
- Once a trial's final row is in the store, `trial_final` keeps its subnet file
  (``<results>/<sweep>/subnets/<trial_id>.safetensors``) and then deletes its folder: the
  single hook for what happens to a finished trial's state.
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
        self._pushed: tuple[int, int] | None = None  # (mtime_ns, size) of the checkpoint last uploaded

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
        """At a report: make the checkpoint `train` wrote last durable where the sweep keeps
        it, unless it is already there (a no-op for local folders, which `train` writes
        directly)."""
        if not self.remote:
            return
        try:
            info = os.stat(os.path.join(self.local, CHECKPOINT_FILE))
        except FileNotFoundError:
            return
        if (info.st_mtime_ns, info.st_size) != self._pushed:
            self._upload(CHECKPOINT_FILE)
            self._pushed = (info.st_mtime_ns, info.st_size)

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


def trial_final(results_root: str, sweep: str, trial_id: str, config: dict[str, Any] | None = None, status: str | None = None) -> None:
    """A trial's final row (completed, pruned, diverged) is in the store: it never resumes,
    so its checkpoint goes. The one place to change what a finished trial keeps: first its
    subnet file (`keep_subnet`), then the checkpoint is deleted. If the file cannot be made
    this raises and the checkpoint stays, so what the trial learned is never lost."""
    folder = paths.trial_checkpoint_dir(results_root, sweep, trial_id)
    if config is not None and status is not None:
        keep_subnet(results_root, sweep, trial_id, folder, config, status)
    discard(folder)


# Methods whose trials keep no subnet file: a lottery ticket trains several networks
# (levels and control branches), which one file of one network does not describe.
NO_SUBNET_METHODS = frozenset({"lottery_ticket"})


def keeps_subnet(config: dict[str, Any]) -> bool:
    return config.get("method") not in NO_SUBNET_METHODS


def keep_subnet(results_root: str, sweep: str, trial_id: str, checkpoint_folder: str, config: dict[str, Any], status: str) -> str | None:
    """Make sure a final trial's ``subnets/<trial_id>.safetensors`` exists before its
    checkpoint goes. A trial that returned wrote it already (the trainable's `save_subnet`
    run option); a pruned one was stopped between epochs, so its file is made here from its
    latest checkpoint. Returns the file's path, or None when there is nothing to keep (a
    method without subnet files, or no checkpoint: a train function that writes none)."""
    if not keeps_subnet(config):
        return None
    target = paths.trial_subnet_path(results_root, sweep, trial_id)
    if _exists(target):
        return target
    remote = paths.is_url(checkpoint_folder)
    with _local_copy(checkpoint_folder) as folder:
        if not os.path.exists(os.path.join(folder, CHECKPOINT_FILE)):
            return None
        # torch is imported only when a file is made here
        from hidden_core.config import TrialConfig
        from hidden_core.subnet.from_checkpoint import save_subnet_from_checkpoint

        local_target = os.path.join(folder, "subnet.safetensors") if remote else target
        save_subnet_from_checkpoint(local_target, folder, TrialConfig.model_validate(config), status)
        if remote:
            upload_file(local_target, target)
    return target


class _local_copy:
    """A local folder holding the checkpoint of `folder` (itself when it is local)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.tmp: str | None = None

    def __enter__(self) -> str:
        if not paths.is_url(self.folder):
            return self.folder
        import tempfile

        staging_root().mkdir(parents=True, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="final-", dir=staging_root())
        fs, base = _fs(self.folder)
        try:
            with fs.open_input_stream(f"{base}/{CHECKPOINT_FILE}") as src:
                _write_atomic(os.path.join(self.tmp, CHECKPOINT_FILE), src.readall())
        except (FileNotFoundError, OSError):
            pass  # no checkpoint: nothing to keep
        return self.tmp

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _exists(target: str) -> bool:
    if not paths.is_url(target):
        return os.path.isfile(target)
    import pyarrow.fs as pafs

    fs, base = _fs(target)
    return fs.get_file_info(base).type == pafs.FileType.File


def upload_file(source: str, url: str) -> None:
    """Copy a local file to an object-store URL (one PUT: a reader never sees half of it)."""
    fs, base = _fs(url)
    fs.create_dir(base.rsplit("/", 1)[0], recursive=True)
    with open(source, "rb") as src, fs.open_output_stream(base) as dst:
        shutil.copyfileobj(src, dst)


def remove_empty_root(results_root: str, sweep: str) -> None:
    """After a run: the sweep's checkpoints/ folder goes when no trial has one left."""
    parent = paths.checkpoints_dir(results_root, sweep)
    if not paths.is_url(parent):
        try:
            os.rmdir(parent)
        except OSError:
            pass
