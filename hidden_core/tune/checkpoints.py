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
  <trial_id>``, never the system temp dir) that mirrors the remote folder in full: every
  file the trial writes there (``checkpoint.pt``; a lottery trial's ``lottery.pt`` and its
  ``segment-<i>/`` sub-folders) is uploaded after each report, and files deleted locally
  (a finished lottery segment) are deleted remotely. Only what changed since the last
  upload goes (a file's mtime, size and inode), oldest change first and deletions last, so
  a worker lost mid-upload leaves a state the staging folder itself was in (plus, at most,
  a finished segment folder nobody reads). Each file appears whole: on S3, GCS and Azure
  one object is written by one PUT (multipart/resumable uploads are committed on close);
  on filesystems with a rename (local, HDFS) it is written to a hidden temporary name and
  moved over the target. A start (another worker, another machine) empties the staging
  folder and restores it in full from the object store.
- Once a trial's final row is in the store, `trial_final` keeps its subnet file
  (``<results>/<sweep>/subnets/<trial_id>.safetensors``) and then deletes its folder: the
  single hook for what happens to a finished trial's state.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from hidden_core import paths

TRIAL_FILE = paths.TRIAL_FILE


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
        self._remote_fs: tuple[Any, str] | None = None
        self._synced: dict[str, tuple[int, int, int]] = {}  # what the object store holds: file -> its local stat key

    def open(self) -> str:
        """Make the local folder ready and return it: the folder `train` reads and writes its
        checkpoint in. Remote: the staging folder, emptied (what an earlier attempt on this
        machine left is not what the store holds) and restored in full from the store."""
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)
        os.makedirs(self.local, exist_ok=True)
        if self.remote:
            fs, base = self._fs()
            _download_tree(fs, base, self.local)
            self._synced = _local_files(self.local)
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
            self.push()
            return started

    def push(self) -> int:
        """After `train` wrote a checkpoint: make the folder durable where the sweep keeps it
        (a no-op for local folders, which `train` writes directly). Remote: uploads the files
        that changed since the last push, then deletes remotely what is gone locally.
        Returns how many files were uploaded or deleted."""
        if not self.remote:
            return 0
        fs, base = self._fs()
        current = _local_files(self.local)
        changed = sorted((rel for rel, key in current.items() if self._synced.get(rel) != key), key=lambda rel: (current[rel][0], rel))
        if changed and not self._synced:
            fs.create_dir(base, recursive=True)  # object stores have no folders: a no-op or a marker there
        for rel in changed:  # in the order they were written locally
            _put(fs, os.path.join(self.local, rel), f"{base}/{rel}")
            self._synced[rel] = current[rel]  # the stat taken before reading: a later rewrite is sent next time
        removed = sorted(rel for rel in self._synced if rel not in current)
        for rel in removed:
            try:
                fs.delete_file(f"{base}/{rel}")
            except FileNotFoundError:
                pass
            del self._synced[rel]
        for folder in sorted({rel.rsplit("/", 1)[0] for rel in removed if "/" in rel}, key=len, reverse=True):
            if not os.path.isdir(os.path.join(self.local, folder)):
                try:  # a folder marker, on filesystems with folders the folder itself
                    fs.delete_dir(f"{base}/{folder}")
                except (FileNotFoundError, OSError):
                    pass
        return len(changed) + len(removed)

    def close(self) -> None:
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)

    def _fs(self) -> tuple[Any, str]:
        if self._remote_fs is None:  # one client per trial (S3 resolves its region on creation)
            self._remote_fs = _fs(self.folder)
        return self._remote_fs


STAGED_SUBNET = paths.STAGED_SUBNET_FILE  # the trainable's remote subnet file, uploaded on its own to subnets/


def _mirrored(name: str) -> bool:
    """Whether a file of a checkpoint folder is part of the trial's state: not a temporary
    file of an atomic write (``.checkpoint-*.tmp``, ``.lottery-*.tmp``, an interrupted
    upload's), nor the staged subnet file."""
    return not (name.startswith(".") or name.endswith(".tmp") or name == STAGED_SUBNET)


def _local_files(root: str) -> dict[str, tuple[int, int, int]]:
    """Every mirrored file under `root` ('/'-separated relative path) with its stat key:
    (mtime_ns, size, inode). Every write here is a new file moved into place, so a rewrite
    changes the inode or the mtime even when the size stays."""
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not _mirrored(name):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:  # deleted while we looked
                continue
            found[os.path.relpath(path, root).replace(os.sep, "/")] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return found


def _download_tree(fs: Any, base: str, local: str) -> None:
    """Every mirrored file under the remote folder `base` into `local`, each written
    atomically; a missing folder is an empty one."""
    import pyarrow.fs as pafs

    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base.rstrip("/")) + 1 :]
        if not all(_mirrored(part) for part in rel.split("/")):
            continue
        target = os.path.join(local, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with fs.open_input_stream(info.path) as src:
            _write_atomic(target, src.readall())


# Stores where one upload is one object, visible whole or not at all once the stream closes.
_PUT_IS_ATOMIC = frozenset({"s3", "gcs", "abfs"})


def _put(fs: Any, source: str, dest: str) -> None:
    """Upload one local file so that a reader sees the old file or the new one, never half."""
    if fs.type_name in _PUT_IS_ATOMIC:
        with open(source, "rb") as src, fs.open_output_stream(dest) as dst:
            shutil.copyfileobj(src, dst)
        return
    parent, name = dest.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    with open(source, "rb") as src, fs.open_output_stream(tmp) as dst:
        shutil.copyfileobj(src, dst)
    fs.move(tmp, dest)  # pyarrow: replaces an existing file (a rename on local and HDFS)


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


def keep_subnet(results_root: str, sweep: str, trial_id: str, checkpoint_folder: str, config: dict[str, Any], status: str) -> str | None:
    """Make sure a final trial's ``subnets/<trial_id>.safetensors`` exists before its
    checkpoint goes. A trial that returned wrote it already (the trainable's `save_subnet`
    run option); a pruned one was stopped between epochs, so its file is made here from its
    latest checkpoint (a lottery trial: from its newest ticket). Returns the file's path, or
    None when there is nothing to keep (no checkpoint: a train function that writes none)."""
    target = paths.trial_subnet_path(results_root, sweep, trial_id)
    if _exists(target):
        return target
    remote = paths.is_url(checkpoint_folder)
    with _local_copy(checkpoint_folder) as folder:
        if not _holds_state(folder):
            return None
        # torch is imported only when a file is made here
        from hidden_core.config import TrialConfig
        from hidden_core.subnet.from_checkpoint import save_subnet_from_checkpoint

        local_target = os.path.join(folder, STAGED_SUBNET) if remote else target
        if save_subnet_from_checkpoint(local_target, folder, TrialConfig.model_validate(config), status) is None:
            return None
        if remote:
            upload_file(local_target, target)
    return target


def _holds_state(folder: str) -> bool:
    """Whether a checkpoint folder holds anything of training (trial.json alone does not):
    checkpoint.pt, or a lottery trial's state and level folders."""
    try:
        return any(name != TRIAL_FILE and not name.startswith(".") for name in os.listdir(folder))
    except OSError:
        return False


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
        _download_tree(fs, base, self.tmp)  # the whole folder: a lottery trial's state and segments
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
    """Copy a local file to an object-store URL (a reader never sees half of it: `_put`)."""
    fs, base = _fs(url)
    fs.create_dir(base.rsplit("/", 1)[0], recursive=True)
    _put(fs, source, base)


def remove_empty_root(results_root: str, sweep: str) -> None:
    """After a run: the sweep's checkpoints/ folder goes when no trial has one left."""
    parent = paths.checkpoints_dir(results_root, sweep)
    if not paths.is_url(parent):
        try:
            os.rmdir(parent)
        except OSError:
            pass


def trial_folders(results_root: str, sweep: str) -> list[str]:
    """trial_ids that have a checkpoint folder in the sweep."""
    parent = paths.checkpoints_dir(results_root, sweep)
    if not paths.is_url(parent):
        try:
            return sorted(n for n in os.listdir(parent) if os.path.isdir(os.path.join(parent, n)))
        except OSError:
            return []
    import pyarrow.fs as pafs

    fs, base = _fs(parent)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except OSError:
        return []
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def finish_final(results_root: str, sweep: str, final: dict[str, str], configs: dict[str, dict[str, Any]]) -> list[str]:
    """Finish what a killed driver left half done: trials whose final row is in the store
    (`final`: trial_id -> status) but whose checkpoint is still there (the driver died
    between writing the row and deleting the checkpoint). Each gets its subnet file (from
    `configs`, the spec's plan) and loses its checkpoint, as `trial_final` does. Call it
    holding the sweep's lease. Returns the trial_ids finished."""
    done = []
    for trial_id in trial_folders(results_root, sweep):
        if trial_id not in final:
            continue
        config = configs.get(trial_id)
        if config is None and not _exists(paths.trial_subnet_path(results_root, sweep, trial_id)):
            continue  # no subnet file and no config to make one: the checkpoint stays (nothing learned is lost)
        trial_final(results_root, sweep, trial_id, config, final[trial_id] if config is not None else None)
        done.append(trial_id)
    return done
