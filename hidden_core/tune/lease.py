"""The sweep lease: at most one live driver per sweep and store.

Two drivers on one sweep would run every trial twice and race on its checkpoints. So a
driver holds ``<results>/<sweep>/lease.json`` (host, pid, start time, store, a token and a
heartbeat time) while it runs:

- Local folders (also NFS): the file is created with O_CREAT|O_EXCL, so of two drivers
  exactly one gets it; the other fails at once with `SweepLeaseHeld` (exit 2) naming the
  holder. A heartbeat thread rewrites the file every `heartbeat_s` seconds (tmp +
  os.replace), after checking that the token in it is still its own.
- A holder that died is taken over with a warning: on the same host when its pid is gone
  (at once: a SIGKILLed driver's re-run starts right away), elsewhere when its heartbeat is
  older than `stale_after_s`. The stale file is first renamed away (atomic; of two drivers
  taking over, one rename fails) and the exclusive create is tried again.
- Object stores (s3://, gs://, ...) have no exclusive create that pyarrow exposes: the lease
  is check, then PUT, then read back after a short wait. Two drivers started within that
  wait of each other can both believe they hold it (the later PUT wins the file, and the
  other driver notices at its next heartbeat and stops with an error). README's note says so.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from hidden_core import paths
from hidden_core.config import ConfigError

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0
OBJECT_STORE_SETTLE_S = 2.0


class SweepLeaseHeld(ConfigError):
    """Another live driver holds the sweep (exit 2 in the CLI)."""


@dataclass
class Holder:
    host: str
    pid: int
    started_at: str  # ISO time, UTC
    store: str
    sweep: str
    token: str
    heartbeat_at: float  # time.time() of its last heartbeat

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started_at}, store {self.store}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _LocalFile:
    def __init__(self, path: str):
        self.path = path
        self.made_dirs: list[str] = []  # folders the lease created (removed with it when empty)

    def read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def create(self, data: bytes) -> bool:
        folder = os.path.dirname(self.path)
        missing = []
        while folder and not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.made_dirs = missing or self.made_dirs
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def replace(self, data: bytes) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)

    def move_away(self, suffix: str) -> bool:
        """Rename the file out of the way (atomic: of two callers, one gets it)."""
        try:
            os.rename(self.path, f"{self.path}.{suffix}")
        except FileNotFoundError:
            return False
        return True

    def read_moved(self, suffix: str) -> bytes | None:
        try:
            with open(f"{self.path}.{suffix}", "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def drop_moved(self, suffix: str) -> None:
        try:
            os.unlink(f"{self.path}.{suffix}")
        except FileNotFoundError:
            pass

    def delete(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        for folder in self.made_dirs:  # deepest first: a run that wrote nothing leaves nothing
            try:
                os.rmdir(folder)
            except OSError:
                break


class _ObjectFile:
    """Best effort on an object store: no exclusive create (see the module docstring)."""

    def __init__(self, url: str):
        import pyarrow.fs as pafs

        self.fs, self.path = pafs.FileSystem.from_uri(url)

    def read(self) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path) as f:
                return f.readall()
        except (FileNotFoundError, OSError):
            return None

    def create(self, data: bytes) -> bool:
        if self.read() is not None:
            return False
        self.replace(data)
        time.sleep(OBJECT_STORE_SETTLE_S)
        return self.read() == data

    def replace(self, data: bytes) -> None:
        self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def move_away(self, suffix: str) -> bool:
        return True  # a stale lease is simply overwritten

    def read_moved(self, suffix: str) -> bytes | None:
        return None

    def drop_moved(self, suffix: str) -> None:
        pass

    def delete(self) -> None:
        try:
            self.fs.delete_file(self.path)
        except (FileNotFoundError, OSError):
            pass


def why_stale(other: Holder, host: str, stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Why `other` no longer holds its sweep, as judged from `host`; None while it does."""
    if other.host == host and not pid_alive(other.pid):
        return f"its process {other.pid} on this host is gone"
    age = time.time() - other.heartbeat_at
    if age > stale_after_s:
        return f"no heartbeat for {age:.0f} s"
    return None


def live_holder(data: bytes | None) -> Holder | None:
    """The driver a lease file's contents name, while it is alive (seen from this host)."""
    other = _parse(data)
    if other is None or why_stale(other, socket.gethostname()) is not None:
        return None
    return other


def _parse(data: bytes | None) -> Holder | None:
    if not data:
        return None
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None


class SweepLease:
    """Hold a sweep for one driver (`with SweepLease(root, sweep): ...`)."""

    def __init__(self, results_root: str, sweep: str, *, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S):
        self.path = paths.lease_path(results_root, sweep)
        self.file: Any = _ObjectFile(self.path) if paths.is_url(self.path) else _LocalFile(self.path)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.holder = Holder(
            host=socket.gethostname(), pid=os.getpid(), started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            store=paths.normalize_root(results_root), sweep=sweep, token=uuid.uuid4().hex, heartbeat_at=time.time(),
        )
        self.lost = threading.Event()  # set when another driver took the lease from us
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _data(self) -> bytes:
        return json.dumps(asdict(self.holder)).encode()

    def stale(self, other: Holder) -> str | None:
        """Why `other` no longer holds the sweep, or None while it does."""
        return why_stale(other, self.holder.host, self.stale_after_s)

    def acquire(self) -> None:
        for _ in range(20):
            self.holder.heartbeat_at = time.time()
            if self.file.create(self._data()):
                self._start_heartbeat()
                return
            data = self.file.read()
            other = _parse(data)
            if data is None:
                continue  # released in between: try again
            if other is None:  # being written right now, or junk left by a crash
                time.sleep(0.2)
                if _parse(self.file.read()) is None and self._junk_is_old():
                    self.file.move_away(f"broken-{self.holder.token}")
                continue
            why = self.stale(other)
            if why is None:
                raise SweepLeaseHeld([
                    f"sweep {other.sweep}: another driver is running it ({other.describe()}; lease {self.path}, "
                    f"heartbeat {max(0.0, time.time() - other.heartbeat_at):.0f} s ago). Wait for it to end or stop it; "
                    f"a driver that died is taken over after {self.stale_after_s:.0f} s without a heartbeat."
                ])
            suffix = f"stale-{self.holder.token}"
            if not self.file.move_away(suffix):
                continue  # someone else moved it first
            moved = _parse(self.file.read_moved(suffix))
            self.file.drop_moved(suffix)
            if moved is not None and moved.token != other.token:
                continue  # we moved a newer lease than the stale one we judged: the loop re-checks
            log.warning("sweep %s: taking over the lease of a driver that died (%s; %s)", other.sweep, other.describe(), why)
        raise SweepLeaseHeld([f"sweep {self.holder.sweep}: could not take the lease {self.path} (too many drivers racing for it)"])

    def _junk_is_old(self) -> bool:
        try:
            return time.time() - os.path.getmtime(self.path) > self.stale_after_s
        except OSError:
            return True

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="hidden-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            current = _parse(self.file.read())
            if current is None or current.token != self.holder.token:
                holder = current.describe() if current else "nobody"
                log.error("sweep %s: lost the lease %s (now held by %s); this driver's later results may duplicate", self.holder.sweep, self.path, holder)
                self.lost.set()
                return
            self.holder.heartbeat_at = time.time()
            try:
                self.file.replace(self._data())
            except OSError as err:  # a full disk or a network hiccup: try again next beat
                log.warning("sweep %s: could not renew the lease: %s", self.holder.sweep, err)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
            current = _parse(self.file.read())
            if current is not None and current.token == self.holder.token:
                self.file.delete()

    def __enter__(self) -> SweepLease:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
