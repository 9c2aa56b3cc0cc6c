"""The sweep lease: at most one live driver per sweep and store.

Two drivers on one sweep would run every trial twice and race on its checkpoints. So a
driver holds ``<results>/<sweep>/lease.json`` (host, pid, start time, store, a token and a
heartbeat time) while it runs. The rule (docs/object_storage.md repeats it for users):

- Taking it: an exclusive create. Local folders (also NFS): O_CREAT|O_EXCL. S3 and
  S3-compatible stores: a PUT with ``If-None-Match: *`` (boto3, the ``s3`` extra). Of two
  drivers exactly one gets it; the other stops at once with `SweepLeaseHeld` (exit 2)
  naming the holder.
- Holding it: a heartbeat thread rewrites the file every `heartbeat_s` seconds, only while
  it is still its own (local: token checked, then tmp + os.replace; S3: ``If-Match`` on the
  ETag it last wrote). A driver that finds the lease taken stops with an error.
- Taking over: the holder is dead when it ran on this host and its pid is gone (at once: a
  SIGKILLed driver's re-run starts right away), or, from any host, when its heartbeat is
  older than `stale_after_s` (30 s). The takeover replaces exactly the lease that was
  judged dead: local, by renaming it away (atomic; of two drivers one rename wins) and
  creating anew; S3, by a PUT with ``If-Match`` on the ETag that was read. One attempt per
  change of the file, at most `MAX_ATTEMPTS`, never a retry loop on the same file.
- Broken leases: a file that is empty, larger than `MAX_LEASE_BYTES` (never read past
  that), not JSON, or with a field of the wrong type, not finite, or a heartbeat more than
  `MAX_CLOCK_SKEW_S` in the future, names the problem. It counts as held (maybe being
  written) while the file itself is younger than `stale_after_s`, and is taken over like a
  dead holder's after that.
- Leftovers of interrupted drivers (``lease.json.<pid>.tmp``, ``lease.json.broken-*``,
  ``lease.json.stale-*``) older than `stale_after_s` are removed by the next driver that
  takes the lease, with a warning naming them.
- Releasing it: the driver removes its own lease (S3: a DELETE with ``If-Match`` on its
  ETag) once no heartbeat write is in flight, and no heartbeat is written after that: a
  heartbeat and the release hold one lock, and the heartbeat checks under it that the
  lease is not being released. A re-run that finds nothing left to do removes a dead
  driver's lease by the takeover rule (`release_dead_lease`): a driver killed after its
  last trial leaves none behind for good.
- Object stores without conditional writes (gs://, an S3 store that answers 501, no
  boto3): best effort, check, then PUT, then read back after `OBJECT_STORE_SETTLE_S`. Two
  drivers started within that wait can both believe they hold it (the later PUT wins the
  file, and the other driver notices at its next heartbeat and stops with an error).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from hidden_core import paths
from hidden_core.errors import ConfigError, clip

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0
OBJECT_STORE_SETTLE_S = 2.0
MAX_LEASE_BYTES = 64 * 1024  # a lease is ~300 bytes; a larger file is refused unread
MAX_CLOCK_SKEW_S = 60.0  # hosts sharing a store are assumed to agree on the time within this
MAX_ATTEMPTS = 5  # lease changes seen while taking it before giving up (each one a real change)
RELEASE_WAIT_S = 120.0  # a release waits this long for a heartbeat write in flight (a hung store)
_FIELDS = {"host": str, "pid": int, "started_at": str, "store": str, "sweep": str, "token": str, "heartbeat_at": float}
_LEFTOVER = re.compile(re.escape(paths.LEASE_FILE) + r"\.(\d+\.tmp|broken-.*|stale-.*)")


class SweepLeaseHeld(ConfigError):
    """Another live driver holds the sweep (exit 2 in the CLI)."""


class LeaseInvalid(ValueError):
    """A lease file whose contents are not a lease (the message names the problem)."""


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


@dataclass
class Seen:
    """One read of the lease file: its bytes (at most MAX_LEASE_BYTES of them), its size, the
    version a conditional write can name (an ETag; None locally), and its age in seconds."""

    data: bytes
    size: int
    version: str | None
    age_s: float | None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # not ours to judge (OverflowError: a pid no process can have, refused earlier)
    return True


def parse_holder(seen: Seen, now: float | None = None) -> Holder:
    """The holder a lease file names; LeaseInvalid naming the first problem otherwise."""
    if seen.size > MAX_LEASE_BYTES:
        raise LeaseInvalid(f"the file is {seen.size:,} bytes (a lease is at most {MAX_LEASE_BYTES:,}; not read)")
    if not seen.data.strip():
        raise LeaseInvalid("the file is empty")
    try:
        raw = json.loads(seen.data)
    except (ValueError, RecursionError) as err:
        raise LeaseInvalid(f"not JSON ({clip(str(err), 80)})") from None
    if not isinstance(raw, dict):
        raise LeaseInvalid(f"not a JSON object (a {type(raw).__name__})")
    values: dict[str, Any] = {}
    for name, kind in _FIELDS.items():
        value = raw.get(name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise LeaseInvalid(f"field {name!r} is {clip(repr(value), 40)}, expected {'a number' if kind is float else 'an integer' if kind is int else 'text'}")
        values[name] = value
    if values["pid"] <= 0 or values["pid"] > 2**31:
        raise LeaseInvalid(f"field 'pid' is {values['pid']}, not a process id")
    if not math.isfinite(values["heartbeat_at"]):
        raise LeaseInvalid(f"field 'heartbeat_at' is {values['heartbeat_at']}, not a finite time")
    ahead = values["heartbeat_at"] - (time.time() if now is None else now)
    if ahead > MAX_CLOCK_SKEW_S:
        raise LeaseInvalid(f"field 'heartbeat_at' is {ahead:.0f} s in the future (clocks may differ by at most {MAX_CLOCK_SKEW_S:.0f} s)")
    if not values["token"] or not values["host"]:
        raise LeaseInvalid("field 'token' or 'host' is empty")
    return Holder(**values)


def _age(mtime: float | None) -> float | None:
    return None if mtime is None else max(0.0, time.time() - mtime)


class _LocalFile:
    def __init__(self, path: str):
        self.path = path
        self.made_dirs: list[str] = []  # folders the lease created (removed with it when empty)

    def read(self) -> Seen | None:
        try:
            with open(self.path, "rb") as f:
                stat = os.fstat(f.fileno())
                data = f.read(MAX_LEASE_BYTES + 1) if stat.st_size <= MAX_LEASE_BYTES else b""
        except FileNotFoundError:
            return None
        return Seen(data, max(stat.st_size, len(data)), None, _age(stat.st_mtime))

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

    def renew(self, data: bytes, token: str) -> bool:
        seen = self.read()
        if seen is None or _token(seen) != token:
            return False
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)
        return True

    def take_over(self, seen: Seen, data: bytes, token: str) -> bool:
        """Replace exactly the lease `seen` (judged dead): rename it away (atomic), check that
        what moved is what was judged, create anew."""
        moved = f"{self.path}.stale-{token}"
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return False  # someone else moved it first
        try:
            with open(moved, "rb") as f:
                same = f.read(MAX_LEASE_BYTES + 1) == seen.data
            if not same:  # a newer lease appeared between our read and the rename: put it back
                try:
                    os.link(moved, self.path)
                except FileExistsError:
                    pass  # yet another driver created one meanwhile; the loop looks again
                return False
        finally:
            try:
                os.unlink(moved)
            except FileNotFoundError:
                pass
        return self.create(data)

    def release(self, token: str) -> None:
        seen = self.read()
        if seen is not None and _token(seen) == token:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        for folder in self.made_dirs:  # deepest first: a run that wrote nothing leaves nothing
            try:
                os.rmdir(folder)
            except OSError:
                break

    def leftovers(self, older_than_s: float) -> list[str]:
        """Remove what interrupted drivers left beside the lease; returns their names."""
        folder = os.path.dirname(self.path)
        removed = []
        try:
            names = os.listdir(folder)
        except OSError:
            return removed
        for name in names:
            if not _LEFTOVER.fullmatch(name):
                continue
            path = os.path.join(folder, name)
            try:
                if time.time() - os.path.getmtime(path) > older_than_s:
                    os.unlink(path)
                    removed.append(name)
            except OSError:
                pass  # another driver removed it
        return sorted(removed)


def _token(seen: Seen) -> str | None:
    try:
        return parse_holder(seen).token
    except LeaseInvalid:
        return None


class _ObjectFile:
    """Best effort on an object store without conditional writes (module docstring)."""

    def __init__(self, url: str):
        import pyarrow.fs as pafs

        self.fs, self.path = pafs.FileSystem.from_uri(url)

    def read(self) -> Seen | None:
        return read_lease_file(self.fs, self.path)

    def _put(self, data: bytes) -> None:
        self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def _settled(self, data: bytes) -> bool:
        time.sleep(OBJECT_STORE_SETTLE_S)
        seen = self.read()
        return seen is not None and seen.data == data

    def create(self, data: bytes) -> bool:
        if self.read() is not None:
            return False
        self._put(data)
        return self._settled(data)

    def renew(self, data: bytes, token: str) -> bool:
        seen = self.read()
        if seen is None or _token(seen) != token:
            return False
        self._put(data)
        return True

    def take_over(self, seen: Seen, data: bytes, token: str) -> bool:
        now = self.read()
        if now is None or now.data != seen.data:
            return False  # it changed since it was judged: look again
        self._put(data)
        return self._settled(data)

    def release(self, token: str) -> None:
        seen = self.read()
        if seen is not None and _token(seen) == token:
            try:
                self.fs.delete_file(self.path)
            except (FileNotFoundError, OSError):
                pass

    def leftovers(self, older_than_s: float) -> list[str]:
        return []  # a PUT is atomic: nothing is left beside the lease


class _S3File:
    """S3 and S3-compatible stores with conditional writes (boto3): If-None-Match: * creates,
    If-Match: <ETag> renews, takes over and releases exactly the version that was read. A
    store that answers 501 to them is used best effort (`_ObjectFile`), with a warning."""

    def __init__(self, url: str):
        import boto3

        bucket_and_key = url.split("://", 1)[1]
        self.bucket, _, self.key = bucket_and_key.partition("/")
        self.url = url
        self.client = boto3.client("s3")  # endpoint, keys and region from the AWS_* variables
        self.etag: str | None = None  # of the lease this driver wrote last

    def _errors(self):
        from botocore.exceptions import BotoCoreError, ClientError

        return ClientError, BotoCoreError

    def _code(self, err: Exception) -> str:
        response = getattr(err, "response", {}) or {}
        return str(response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))

    def read(self) -> Seen | None:
        client_error, _ = self._errors()
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except client_error as err:
            if self._code(err) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise OSError(f"cannot read the lease {self.url}: {err}") from None
        size = int(response.get("ContentLength") or 0)
        body = response["Body"]
        try:
            data = body.read(MAX_LEASE_BYTES + 1) if size <= MAX_LEASE_BYTES else b""
        finally:
            body.close()
        modified = response.get("LastModified")
        return Seen(data, max(size, len(data)), response.get("ETag"), _age(modified.timestamp() if modified else None))

    def _put(self, data: bytes, **condition: str) -> bool:
        client_error, _ = self._errors()
        try:
            self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except client_error as err:
            code = self._code(err)
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"):
                return False
            if code in ("NotImplemented", "501"):
                raise _NoConditionalWrites(str(err)) from None
            raise
        return True

    def create(self, data: bytes) -> bool:
        return self._put(data, IfNoneMatch="*")

    def renew(self, data: bytes, token: str) -> bool:
        return self.etag is not None and self._put(data, IfMatch=self.etag)

    def take_over(self, seen: Seen, data: bytes, token: str) -> bool:
        return seen.version is not None and self._put(data, IfMatch=seen.version)

    def release(self, token: str) -> None:
        client_error, botocore_error = self._errors()
        if self.etag is None:
            return
        try:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except client_error as err:
                code = self._code(err)
                if code in ("NotImplemented", "501"):  # no conditional delete: check, then delete
                    seen = self.read()
                    if seen is not None and _token(seen) == token:
                        self.client.delete_object(Bucket=self.bucket, Key=self.key)
                elif code not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    raise
                # PreconditionFailed: another driver holds it now, not ours to delete; NoSuchKey: gone already
        except (client_error, botocore_error) as err:  # said by SweepLease.release, never silently left
            raise OSError(f"cannot remove the lease {self.url}: {err}") from None

    def leftovers(self, older_than_s: float) -> list[str]:
        return []


class _NoConditionalWrites(Exception):
    pass


def _lease_file(path: str) -> Any:
    if not paths.is_url(path):
        return _LocalFile(path)
    if path.startswith("s3://") and "?" not in path:
        try:
            return _S3File(path)
        except ImportError:
            log.warning("lease %s: boto3 is not installed, so the lease uses no conditional writes (best effort); "
                        "install hidden-core[s3] (docs/object_storage.md)", path)
    return _ObjectFile(path)


def why_stale(other: Holder, host: str, stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Why `other` no longer holds its sweep, as judged from `host`; None while it does."""
    if other.host == host and not pid_alive(other.pid):
        return f"its process {other.pid} on this host is gone"
    age = time.time() - other.heartbeat_at
    if age > stale_after_s:
        return f"no heartbeat for {age:.0f} s"
    return None


def read_lease_file(fs: Any, path: str) -> Seen | None:
    """A lease file through a pyarrow filesystem (bounded: a file over MAX_LEASE_BYTES is
    not read), or None when there is none or it cannot be read."""
    try:
        info = fs.get_file_info(path)
        if info.type.name != "File":
            return None
        size = info.size or 0
        data = b""
        if size <= MAX_LEASE_BYTES:
            with fs.open_input_stream(path) as f:
                data = f.read(MAX_LEASE_BYTES + 1)
    except (FileNotFoundError, OSError):
        return None
    return Seen(data, max(size, len(data)), None, _age(info.mtime.timestamp() if info.mtime else None))


def read_lease(results_root: str, sweep: str) -> Seen | None:
    """The sweep's lease file as it is now (bounded read), or None when there is none."""
    path = paths.lease_path(results_root, sweep)
    try:
        return _lease_file(path).read()
    except OSError:
        return None


def release_dead_lease(results_root: str, sweep: str) -> bool:
    """For a run with nothing left to do: remove the sweep's lease when its driver is dead
    (`SweepLease.release_dead`), so a sweep that ended keeps no lease; True when one was."""
    if read_lease(results_root, sweep) is None:
        return False  # the usual case: no write, no boto3 client made
    try:
        return SweepLease(results_root, sweep, heartbeat_s=3600).release_dead()
    except OSError as err:  # the run itself is done: a store hiccup here costs only the leftover
        log.warning("sweep %s: could not remove the lease of a driver that died: %s", sweep, clip(str(err), 200))
        return False


def live_holder(seen: Seen | bytes | None) -> Holder | None:
    """The driver a lease file names, while it is alive (seen from this host); None for no
    lease, a dead holder or a broken file."""
    if seen is None:
        return None
    if isinstance(seen, bytes):
        seen = Seen(seen[: MAX_LEASE_BYTES + 1], len(seen), None, None)
    try:
        other = parse_holder(seen)
    except LeaseInvalid:
        return None
    return other if why_stale(other, socket.gethostname()) is None else None


class SweepLease:
    """Hold a sweep for one driver (`with SweepLease(root, sweep): ...`)."""

    def __init__(self, results_root: str, sweep: str, *, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S):
        self.path = paths.lease_path(results_root, sweep)
        self.file: Any = _lease_file(self.path)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.holder = Holder(
            host=socket.gethostname(), pid=os.getpid(), started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            store=paths.normalize_root(results_root), sweep=sweep, token=uuid.uuid4().hex, heartbeat_at=time.time(),
        )
        self.lost = threading.Event()  # set when another driver took the lease from us
        self._stop = threading.Event()
        # held by each heartbeat write and by the release: the release never runs beside a
        # write in flight (it would name an ETag that write replaces), and no write follows it
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._held = False

    def _data(self) -> bytes:
        return json.dumps(asdict(self.holder)).encode()

    def stale(self, other: Holder) -> str | None:
        """Why `other` no longer holds the sweep, or None while it does."""
        return why_stale(other, self.holder.host, self.stale_after_s)

    def acquire(self) -> None:
        self._take(create=True)
        self._start_heartbeat()

    def release_dead(self) -> bool:
        """Remove the lease only when a dead driver holds it (judged and replaced exactly as
        a takeover, with its warning), for a run that has nothing left to do; a live driver's
        lease, a young broken one, or none, is left as it is. Returns whether one was removed."""
        try:
            if not self._take(create=False):
                return False
        except SweepLeaseHeld:
            return False  # a live driver's (it releases its own) or one still being written
        self.release()
        return True

    def _take(self, *, create: bool) -> bool:
        try:
            taken = self._acquire(create=create)
        except _NoConditionalWrites as err:
            log.warning("lease %s: the store refuses conditional writes (%s); using the best-effort lease", self.path, clip(str(err), 120))
            self.file = _ObjectFile(self.path)
            taken = self._acquire(create=create)
        if not taken:
            return False
        self._held = True
        removed = self.file.leftovers(self.stale_after_s)
        if removed:
            log.warning("sweep %s: removed %d leftover lease file(s) of interrupted drivers: %s", self.holder.sweep, len(removed), ", ".join(removed[:10]))
        return True

    def _acquire(self, *, create: bool = True) -> bool:
        """Take the lease (True), by an exclusive create or by taking over a dead holder's;
        with create=False only the takeover, and False when there is no lease."""
        sweep = self.holder.sweep
        for attempt in range(MAX_ATTEMPTS):
            self.holder.heartbeat_at = time.time()
            if create and self.file.create(self._data()):
                return True
            seen = self.file.read()
            if seen is None:
                if not create:
                    return False
                continue  # released in between: try again
            try:
                other: Holder | None = parse_holder(seen)
            except LeaseInvalid as problem:
                other = None
                age = seen.age_s if seen.age_s is not None else self.stale_after_s + 1
                if age <= self.stale_after_s:
                    if attempt == 0 and not seen.data.strip():
                        time.sleep(0.2)  # an exclusive create just made it and is writing it
                        continue
                    raise SweepLeaseHeld([
                        f"sweep {sweep}: the lease {self.path} is broken ({problem}) and {age:.0f} s old. It counts as held "
                        f"until it is {self.stale_after_s:.0f} s old, then the next run takes it over; if no driver runs "
                        "this sweep, wait that long or delete the file."
                    ]) from None
                why = f"the lease file is broken ({problem}) and {age:.0f} s old"
            else:
                why = self.stale(other)
                if why is None:
                    raise SweepLeaseHeld([
                        f"sweep {other.sweep}: another driver is running it ({other.describe()}; lease {self.path}, "
                        f"heartbeat {max(0.0, time.time() - other.heartbeat_at):.0f} s ago). Wait for it to end or stop it; "
                        f"a driver that died is taken over after {self.stale_after_s:.0f} s without a heartbeat."
                    ])
            self.holder.heartbeat_at = time.time()
            if self.file.take_over(seen, self._data(), self.holder.token):
                log.warning("sweep %s: taking over the lease %s (%s; %s)", sweep, self.path,
                            f"of a driver that died: {other.describe()}" if other else "a broken lease", why)
                return True
            # the lease changed between our read and the takeover (another driver): judge it again
        raise SweepLeaseHeld([f"sweep {sweep}: the lease {self.path} changed {MAX_ATTEMPTS} times while this driver tried to take it: "
                              "other drivers are starting this sweep right now; run it again once they are done"])

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="hidden-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._writing:
                if self._stop.is_set():
                    return  # released while this beat waited for the lock: never write again
                previous = self.holder.heartbeat_at
                self.holder.heartbeat_at = time.time()
                try:
                    ours = self.file.renew(self._data(), self.holder.token)
                except Exception as err:  # a full disk, a network hiccup (OSError, botocore): try again next beat
                    self.holder.heartbeat_at = previous
                    log.warning("sweep %s: could not renew the lease: %s", self.holder.sweep, clip(str(err), 200))
                    continue
            if not ours:
                seen = self._read_quietly()
                holder = live_holder(seen)
                log.error("sweep %s: lost the lease %s (now held by %s); this driver's later results may duplicate",
                          self.holder.sweep, self.path, holder.describe() if holder else "nobody")
                self.lost.set()
                return

    def _read_quietly(self) -> Seen | None:
        try:
            return self.file.read()
        except OSError:
            return None

    def release(self) -> None:
        self._stop.set()  # before the lock: a beat that gets the lock after us sees it and writes nothing
        if not self._writing.acquire(timeout=RELEASE_WAIT_S):
            # a heartbeat write hung on the store: removing now would name the ETag it replaces
            # (S3) or be undone by it (a folder); it is the next driver's to take over (dead pid)
            log.warning("sweep %s: could not remove the lease %s: a heartbeat write is still unanswered after %.0f s; "
                        "the next run takes it over", self.holder.sweep, self.path, RELEASE_WAIT_S)
            self._held = False
            return
        try:
            if self._held and not self.lost.is_set():
                try:
                    self.file.release(self.holder.token)
                except OSError as err:
                    log.warning("sweep %s: could not remove the lease %s: %s", self.holder.sweep, self.path, clip(str(err), 200))
            elif self._held and isinstance(self.file, _LocalFile):
                self.file.made_dirs = []
            self._held = False
        finally:
            self._writing.release()
        if self._thread is not None:
            self._thread.join(timeout=10)  # it ends at once now (stop set, nothing in flight)
            self._thread = None

    def __enter__(self) -> SweepLease:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
