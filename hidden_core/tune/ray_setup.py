"""Starting Ray for a sweep: an embedded local Ray that is really embedded, or a cluster.

Embedded (no ``--address``):
- ``ray.init(address="local")``: always a new local Ray. ``RAY_ADDRESS`` and Ray's address
  file (``<ray temp>/ray_current_cluster``, left by any ``ray start`` not stopped cleanly)
  are ignored; ``--address`` stays the one way to join a cluster.
- Loopback only: ``_node_ip_address="127.0.0.1"`` plus Ray's
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` switch (without it Ray 2.60 on Linux swaps a
  loopback node IP for the machine's outward IP, and its gRPC servers then listen on every
  interface). Measured on Linux with Ray 2.60: GCS, raylet (2 ports), driver, workers and
  the runtime-env agent (``ray::RuntimeEnvAgent``) listen on 127.0.0.1 only; the dashboard
  agent opens no TCP port.
- Its own temp dir, never the system one: ``<EMBEDDED_ROOT>/<pid>-<random>`` (short: Ray's
  Unix socket paths live under it; mode 0700), removed after ``ray.shutdown()``. A driver
  that was SIGKILLed leaves its folder and possibly some Ray agents behind; the next
  embedded start of the same user ends those processes (found by the folder in their
  command line or their RAY_TMPDIR) and removes the folder. Per user: only folders owned by
  this user whose driver pid is dead, and only processes of this user, are touched; another
  user's runs sharing the root (a shared ``$HIDDEN_RAY_TEMP`` or home) are left alone.
- Token authentication as Ray (>= 2.52) sets it up for a new local cluster (on, unless
  the user set ``RAY_AUTH_MODE``), without its warning "Token authentication is enabled
  ... Set RAY_AUTH_MODE=disabled to opt out" on every run: that one record is filtered
  out during ``ray.init``. Not by setting ``RAY_AUTH_MODE=token`` ourselves: Ray reads its
  config once per process, and a driver that imported Ray earlier then starts a GCS that
  requires a token its own client does not send (measured with Ray 2.60).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from hidden_core.tune.lease import pid_alive

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOCAL_ONLY_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps a loopback node IP
ROOT_VAR = "HIDDEN_RAY_TEMP"  # where embedded Rays keep their temp dirs (default below)
_MAX_ROOT_CHARS = 48  # Ray's socket paths (<root>/<run>/session_<43 chars>/sockets/plasma_store) stay < 108

AUTH_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_WORKER_LOGGER = "ray._private.worker"  # ray.init's notice when it is called off the main thread


class _DropAuthDefaultNotice(logging.Filter):
    """Drops Ray's notice that token auth is on by default (the 'opt out' line): on for an
    embedded Ray is what we want, and the notice tells a user of `hidden` nothing to do.
    Any other record of that logger (a missing token, auth disabled) still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "to opt out" not in record.getMessage()


class _DropOffMainThreadNotice(logging.Filter):
    """Drops ray.init's warning that it set no SIGTERM handler because it runs off the main
    thread (BackgroundStart): the sweep's own SIGINT/SIGTERM handlers are in place (runner.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


# Worker-side environment (trial processes):
WORKER_ENV = {
    "RAY_CHDIR_TO_TRIAL_DIR": "0",  # keep the working directory: relative data paths work
}
# Driver-side environment for Tune (set before Tune reads it, unless the user set it):
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial JSON/CSV/TensorBoard files: the store is the record
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: Tune prints nothing; progress.py prints one line
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "1",
    # Tune's experiment-state snapshot (every trial's state as JSON, for Tune's own resume)
    # is never restored here (runner.py): one at the end instead of one every 10 s or more,
    # which cost up to 5% of the driver's time, growing with the trials in the run
    "TUNE_GLOBAL_CHECKPOINT_S": "86400",
}
# What Tune sends as every trial actor's runtime_env (ray.tune.execution.class_cache
# .DEFAULT_ENV_VARS): an embedded Ray's workers inherit it from the raylet instead, so that a
# trial actor needs no runtime env of its own (trials_on_started_workers)
EMBEDDED_WORKER_ENV = {**WORKER_ENV, "PL_DISABLE_FORK": "1"}


def quiet_sigterm_exit() -> None:
    """In a trial worker: a SIGTERM that lands where Python cannot raise ends the process
    quietly instead of printing a traceback and going on.

    Ray's worker loop turns SIGTERM into SystemExit(1) (ray/_private/worker.py,
    ``sigterm_handler``). When the raylet ends the workers at a sweep's end, a worker may be
    tearing itself down, and the signal then lands inside a weakref callback (a WeakSet's
    ``_remove``) or a finalizer: Python cannot raise there, so it prints "Exception ignored in
    ... SystemExit: 1" (streamed to the user's terminal) and the exit is lost. This hook
    (sys.unraisablehook, which may be set from any thread, unlike a signal handler: trials
    run in Tune's runner thread) ends the process there with the SystemExit's code, as the
    signal meant. A worker so ended mid-trial dies like any lost worker (Tune retries the
    trial). Every other unraisable exception goes to the hook that was in place. Idempotent."""
    previous = sys.unraisablehook
    if getattr(previous, "hidden_quiet_exit", False):
        return

    # defaults bind what the hook uses: it may run while the interpreter clears module globals
    def hook(unraisable: Any, _previous: Any = previous, _exit: Any = os._exit, _sys: Any = sys) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, SystemExit):
            code = getattr(unraisable.exc_value, "code", 1)
            for stream in (_sys.stdout, _sys.stderr):
                try:
                    stream.flush()
                except Exception:  # a closed or missing stream: nothing to flush
                    pass
            _exit(code if isinstance(code, int) else (0 if code is None else 1))
        _previous(unraisable)

    hook.hidden_quiet_exit = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


@contextlib.contextmanager
def trials_on_started_workers(started: Any) -> Iterator[None]:
    """Tuner.fit on an EmbeddedRay `started` with Tune's trial actors registered without the
    runtime_env Tune gives them, so that they run on the Python workers the raylet started
    with the sweep's Ray instead of new ones.

    Tune registers each trainable with ``runtime_env={"env_vars": ...}`` (ray.tune.execution
    .class_cache: PL_DISABLE_FORK and the variables it propagates from the driver), and Ray
    runs an actor with a runtime env only on a worker started for that env: each concurrent
    trial's actor then waited for a new process (Ray's setup_worker, the runtime-env agent,
    a second Python start and `import ray`: about 0.7 s of CPU a slot, measured on this
    2-core machine) while the workers the raylet had already started sat idle. An embedded
    Ray's workers inherit the driver's environment at its start (EmbeddedRay.worker_env,
    EMBEDDED_WORKER_ENV included): where every variable Tune would send has that value there,
    its runtime env changes nothing and is left out; otherwise (a variable set after Ray
    started), Tune's own registration runs. A cluster, or a Ray without that module, is left
    as it is."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        class_cache = None
    original = getattr(getattr(class_cache, "_ActorClassCache", None), "get", None)
    if not isinstance(started, EmbeddedRay) or original is None or not hasattr(class_cache, "DEFAULT_ENV_VARS"):
        yield
        return
    import ray

    def get(cache: Any, trainable_cls: Any) -> Any:
        env_vars = dict(class_cache.DEFAULT_ENV_VARS)
        env_vars.update({k: os.environ[k] for k in getattr(class_cache, "ENV_VARS_TO_PROPAGATE", ()) if k in os.environ})
        if any(started.worker_env.get(k) != v for k, v in env_vars.items()):
            return original(cache, trainable_cls)
        if trainable_cls not in cache._cache:
            cache._cache[trainable_cls] = ray.remote(trainable_cls)
        return cache._cache[trainable_cls]

    class_cache._ActorClassCache.get = get
    try:
        yield
    finally:
        class_cache._ActorClassCache.get = original


@contextlib.contextmanager
def without_callback_telemetry() -> Iterator[None]:
    """Tuner.fit without Tune's usage tag of its callbacks (ray.air._internal.usage
    .tag_callbacks, called on every fit given any callback, and a sweep always gives its own):
    to count callback classes it imports Ray's tracker integrations, and with them mlflow and
    wandb where installed (the trackers extra): 2.2-5.5 s of the driver's CPU before the
    first trial on a loaded 2-core machine, measured, for a tag of Ray's usage statistics. A tracker the spec configures
    imports its integration itself (trackers.py). Where Ray has no such function any more,
    nothing changes."""
    try:
        from ray.air._internal import usage
    except ImportError:
        usage = None
    original = getattr(usage, "tag_callbacks", None)
    if original is None:
        yield
        return
    usage.tag_callbacks = lambda callbacks: False
    try:
        yield
    finally:
        usage.tag_callbacks = original


def embedded_root() -> Path:
    """Where embedded Rays keep their temp dirs: $HIDDEN_RAY_TEMP, else ~/.cache/hidden/ray,
    else (a home too deep for Ray's socket paths) a folder of this user's in the system temp
    dir, which each run removes when it ends."""
    configured = os.environ.get(ROOT_VAR)
    if configured:
        return Path(configured).absolute()
    home = Path.home() / ".cache" / "hidden" / "ray"
    if len(str(home)) <= _MAX_ROOT_CHARS:
        return home
    return Path(tempfile.gettempdir()) / f"hidden-ray-{os.getuid()}"


def processes_of(folder: str, uid: int | None = None) -> list[int]:
    """Live processes of the Ray that ran in `folder`: the folder in their command line, or
    the RAY_TMPDIR they inherited (Ray's agents rename their command lines); with `uid`,
    only that user's. Linux /proc; elsewhere none are found."""
    pids = []
    marker = f"RAY_TMPDIR={folder}".encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return pids
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if uid is not None and entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if folder in cmdline or marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def end_processes(pids: Iterable[int], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after `grace_s`."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if pid_alive(p)]
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def clean_stale(root: Path) -> int:
    """End the Ray processes of this user's earlier embedded runs whose driver is gone and
    remove their temp dirs; returns how many folders were removed. Folders and processes of
    other users are never touched (a pid of theirs may look dead or alive to us alike)."""
    removed = 0
    if not root.is_dir():
        return 0
    uid = os.getuid()
    for folder in root.iterdir():
        pid_text = folder.name.split("-", 1)[0]
        try:
            mine = folder.is_dir() and folder.stat().st_uid == uid
        except OSError:
            continue
        if not mine or not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        leftover = processes_of(str(folder), uid)
        if leftover:
            log.warning("ending %d Ray process(es) left by an embedded sweep whose driver died (%s)", len(leftover), folder)
            end_processes(leftover)
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


class EmbeddedRay:
    """One embedded local Ray (see the module docstring); `stop()` ends it and removes its
    temp dir."""

    def __init__(self, num_cpus: int | None = None, root: Path | None = None):
        self.num_cpus = num_cpus
        self.root = root or embedded_root()
        self.folder: str | None = None
        self._saved_env: dict[str, str | None] = {}
        self.worker_env: dict[str, str] = {}  # the environment its raylet (and so every worker) started with

    def start(self) -> None:
        import ray
        import ray._private.ray_constants as ray_constants

        self.root.mkdir(parents=True, exist_ok=True)
        clean_stale(self.root)
        self.folder = str(self.root / f"{os.getpid()}-{secrets.token_hex(3)}")
        os.makedirs(self.folder, mode=0o700)  # this user's: sockets and logs of its run
        # the trial workers inherit this environment through the raylet
        env = {"RAY_TMPDIR": self.folder, LOCAL_ONLY_VAR: "0", "RAY_ADDRESS": None, **EMBEDDED_WORKER_ENV}
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            elif key in EMBEDDED_WORKER_ENV:
                os.environ.setdefault(key, value)
            else:
                os.environ[key] = value
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at import; the driver may have imported Ray already
        self.worker_env = dict(os.environ)
        notice, off_main = _DropAuthDefaultNotice(), _DropOffMainThreadNotice()
        logging.getLogger(AUTH_SETUP_LOGGER).addFilter(notice)
        logging.getLogger(RAY_WORKER_LOGGER).addFilter(off_main)
        try:
            ray.init(
                address="local", num_cpus=self.num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK,
                _temp_dir=self.folder, logging_level=logging.WARNING, log_to_driver=True,
            )
        except BaseException:
            self.stop()
            raise
        finally:
            logging.getLogger(AUTH_SETUP_LOGGER).removeFilter(notice)
            logging.getLogger(RAY_WORKER_LOGGER).removeFilter(off_main)

    def stop(self) -> None:
        import ray
        import ray._private.ray_constants as ray_constants

        with contextlib.suppress(Exception):
            ray.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = True
        if self.folder is not None:
            leftover = processes_of(self.folder, os.getuid())
            if leftover:
                end_processes(leftover)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only when empty: other drivers may be using it


class BackgroundStart:
    """start_ray in a thread of its own, so that a driver goes on with its own start (torch's
    import, the largest trial's size, the plan, the lease) while Ray's processes come up:
    most of ray.init's 2-4 s is waiting for them (measured on this 2-core machine: the
    driver's CPU is idle for about 2 s of it).

        early = BackgroundStart(num_cpus=2, then=import_tune)
        ...                                   # the driver's own work
        started = early.result()              # what start_ray returned; its error re-raised
        ...                                   # the caller stops it when done, then:
        early.stop()                          # (or, not taken: ends what it started)

    `then` runs in that thread after the start (not when it failed). `taken` is set once
    `result()` handed the Ray over (its new owner stops it).

    The thread lives until `stop()`: Ray starts its GCS and raylet with the parent-death
    signal (PR_SET_PDEATHSIG), which Linux sends when the *thread* that started them ends,
    so a thread that returned after ray.init would take the new Ray down with it."""

    def __init__(self, num_cpus: int | None = None, *, then: Callable[[], Any] | None = None):
        self.num_cpus, self.then = num_cpus, then
        self.taken = False
        self._started: EmbeddedRay | bool = False
        self._error: BaseException | None = None
        self._ready, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._start, name="hidden-ray-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            # looked up now: benchmarks/common.py times start_ray by replacing it in this module
            self._started = sys.modules[__name__].start_ray(None, self.num_cpus)  # an embedded Ray
            if self.then is not None:
                self.then()  # more of the driver's start, off its main thread (Tune's import)
        except BaseException as err:  # re-raised by result() in the driver's thread
            self._error = err
        finally:
            self._ready.set()
        self._release.wait()  # see the class docstring: Ray's processes live as long as this thread

    def result(self) -> EmbeddedRay | bool:
        """Wait for the start; return what start_ray returned (the caller stops it now)."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self.taken = True
        return self._started

    def stop(self) -> None:
        """End the Ray this start made, unless result() handed it over, and the thread once no
        Ray it started runs. Waits for the start to end first (Ray's processes cannot be
        stopped half started). Idempotent."""
        self._ready.wait()
        if not self.taken and self._started:
            stop_ray(self._started)
            self._started = False
        if self.taken and self._started and ray_initialized():
            return  # its owner keeps it running (run_sweep's keep_ray): so does the thread
        self._release.set()
        self._thread.join()


def ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def check_address(address: str) -> str:
    """Token auth on for this driver (or RAY_AUTH_MODE=disabled said explicitly) and the
    cluster at `address` asked whether it lets us in: one clear ClusterError at once (no
    token, token refused, nothing there) instead of ray.init's retries. Returns the address
    to give ray.init."""
    from hidden_core.cluster import apply_auth_env, auth_env, check_cluster

    apply_auth_env(auth_env())
    info = check_cluster(address)
    return info.address if info is not None else address


def connect(address: str, *, checked: bool = False) -> None:
    """Join the cluster at `address` (`checked`: it already went through check_address)."""
    import ray

    ray.init(address=address if checked else check_address(address), logging_level=logging.WARNING,
             log_to_driver=True, runtime_env={"env_vars": dict(WORKER_ENV)})


def start_ray(address: str | None, num_cpus: int | None = None, *, checked: bool = False) -> EmbeddedRay | bool:
    """Connect to `address`, or start an EmbeddedRay. Returns the EmbeddedRay started (stop
    it when done), True when this call connected to a cluster, False when Ray was already
    initialized in this process (nothing to undo)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        connect(address, checked=checked)
        return True
    embedded = EmbeddedRay(num_cpus)
    embedded.start()
    return embedded


def stop_ray(started: EmbeddedRay | bool) -> None:
    if isinstance(started, EmbeddedRay):
        started.stop()
    elif started:
        import ray

        ray.shutdown()


def local_nodes(gpu_wanted: bool) -> list[dict[str, float]]:
    """This machine as one node (resources), before any Ray is started."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    gpus = 0
    if gpu_wanted:
        with contextlib.suppress(Exception):
            import torch

            gpus = torch.cuda.device_count()
    return [{"CPU": float(cpus), "GPU": float(gpus)}]


def cluster_nodes() -> list[dict[str, Any]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def capacity(spec: Any, nodes: Iterable[dict[str, float]]) -> int:
    """How many trials of `spec` fit on the nodes at once."""
    total = 0
    for node in nodes:
        fits = int(node.get("CPU", 0.0) // spec.resources.cpu + 1e-9)
        if spec.resources.gpu > 0:
            fits = min(fits, int(node.get("GPU", 0.0) // spec.resources.gpu + 1e-9))
        total += max(0, fits)
    return max(1, total)
