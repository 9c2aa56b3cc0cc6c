"""A real two-node Ray cluster on 127.0.0.1 with token authentication, for tests.

Two `ray start --block` processes (a head and a worker), each the leader of its own process
group, with their own temp dir and ports, and `RAY_AUTH_MODE=token` with a random token kept
in a file of the cluster's temp root (never in ~/.ray). Every process the cluster starts is
killed BY PROCESS GROUP / PID when it stops, also when a test fails; `ray stop` (which kills
every Ray process of the machine) is never used.

Loopback only. Ray 2.60 on Linux replaces a loopback `--node-ip-address` / `--address` by
the machine's outward IP, and its gRPC servers (GCS, raylet, object manager, workers) then
listen on ALL interfaces. So, where Linux allows it (unprivileged user + network
namespaces: `unshare -rn`), the cluster runs in a private network namespace whose only
interface is loopback: Ray falls back to 127.0.0.1 and nothing is reachable from outside.
Drivers must then run inside it too: build their command lines with `cluster.command(argv)`
(or use `cluster.run` / `cluster.popen` / `cluster.python`). Where namespaces are not
available the cluster runs on the host network (`cluster.isolated` is False) and its ports
are reachable from the machine's network, protected only by the token.
`HIDDEN_TEST_NETNS=require` makes that a hard error, `=off` skips the namespace.

Use in a test module:

    from ray_cluster_fixture import LocalRayCluster

    @pytest.fixture(scope="module")
    def cluster():
        with LocalRayCluster() as c:
            yield c

    def test_x(cluster):
        out = cluster.python("import ray; ray.init(address='auto'); print(len(ray.nodes()))")

API: `cluster.address` ('127.0.0.1:PORT', the GCS), `cluster.token_env` (what a driver needs:
RAY_AUTH_MODE=token + RAY_AUTH_TOKEN_PATH), `cluster.env(with_token=...)` (a driver's whole
environment, RAY_ADDRESS set, this venv's bin first on PATH), `cluster.popen/run/python`
(drivers and clients; `popen(...).pid` is the driver itself, SIGKILL it to kill the driver),
`cluster.worker.raylet_pid` / `cluster.kill_worker_raylet()` (lose the worker node),
`cluster.add_worker()` (a replacement node), `cluster.pids()`, `cluster.listening()`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NETNS_ENV = "HIDDEN_TEST_NETNS"
READY_MARK = "Ray runtime started"
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")

# Runs as the first process of the private network namespace: brings `lo` up (a new
# namespace starts with it down), says so, then only holds the namespace open.
_NETNS_HOLDER = r"""
import fcntl, signal, socket, struct, sys
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
print("ready", flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    signal.pause()
"""


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child if the test process dies (Linux), so a killed pytest
    does not leave a cluster behind; Ray's `--block` mode makes its own children share fate."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, comm) of every process, from /proc (no psutil needed)."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        state, ppid, pgid = fields[0], int(fields[1]), int(fields[2])
        if state in ("Z", "X"):
            continue
        table[int(entry)] = (ppid, pgid, comm)
    return table


def _descendants(roots: set[int], pgids: set[int]) -> set[int]:
    """Every live process in one of `pgids` or below one of `roots` (by parent links)."""
    table = _proc_table()
    found = {pid for pid, (_, pgid, _) in table.items() if pgid in pgids}
    found |= {pid for pid in roots if pid in table}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = ""
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/stat").read_text()
        state = raw[raw.rindex(")") + 2 :].split()[0]
    return state not in ("Z", "X")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_executable() -> str:
    candidate = Path(sys.executable).parent / "ray"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed next to this Python")
    return found


def _netns_tools() -> tuple[str, str] | None:
    if not sys.platform.startswith("linux"):
        return None
    unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
    return (unshare, nsenter) if unshare and nsenter else None


@dataclass
class NodeProcess:
    """One `ray start --block` process and the Ray processes it started (its group)."""

    name: str
    popen: subprocess.Popen
    temp_dir: Path
    log_path: Path
    ready_seconds: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        return self.popen.pid  # started with start_new_session: leader of its own group

    def processes(self) -> dict[int, str]:
        """pid -> command name of this node's live processes."""
        table = _proc_table()
        return {pid: table[pid][2] for pid in _descendants({self.pid}, {self.pgid}) if pid in table}

    def find(self, comm: str) -> int | None:
        return next((pid for pid, name in self.processes().items() if name == comm), None)

    @property
    def raylet_pid(self) -> int:
        pid = self.find("raylet")
        if pid is None:
            raise RuntimeError(f"the {self.name} node has no raylet running")
        return pid

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass(eq=False)
class LocalRayCluster:
    """A head and `workers` worker nodes on 127.0.0.1, token auth on. See module docstring.

    Attributes once started: `address` ('127.0.0.1:PORT', the GCS), `token_path` (file with
    the token), `token_env` (what a driver needs), `head`, `workers` / `worker`
    (NodeProcess: `.raylet_pid`, `.pid`, `.temp_dir`, `.log_path`), `isolated` (True when
    in a private loopback-only network namespace), `startup_seconds`.
    """

    head_cpus: float = 1
    worker_cpus: float = 1
    # GPUs a node advertises; Ray only counts them (no device needed), so placement of
    # (fractional) GPU trials can be tested on a CPU-only machine
    head_gpus: float = 0
    worker_gpus: float = 0
    workers_count: int = 1
    object_store_mb: int = 150
    head_resources: Mapping[str, float] | None = None
    worker_resources: Mapping[str, float] | None = None
    dashboard: bool = False
    netns: str = field(default_factory=lambda: os.environ.get(NETNS_ENV, "auto"))
    startup_timeout: float = 90.0

    root: Path = field(init=False)
    token_path: Path = field(init=False)
    address: str = field(init=False, default="")
    isolated: bool = field(init=False, default=False)
    head: NodeProcess | None = field(init=False, default=None)
    workers: list[NodeProcess] = field(init=False, default_factory=list)
    startup_seconds: float = field(init=False, default=0.0)
    _holder: subprocess.Popen | None = field(init=False, default=None)
    _prefix: list[str] = field(init=False, default_factory=list)
    _children: list[subprocess.Popen] = field(init=False, default_factory=list)
    _port_base: int = field(init=False, default=0)
    _stopped: bool = field(init=False, default=False)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalRayCluster:
        if self._stopped or self.head is not None:
            raise RuntimeError("a LocalRayCluster starts once; make a new one")
        # Short root in /tmp: Ray's unix socket paths must stay under ~107 characters.
        base = "/tmp" if os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="hray", dir=base))
        _LIVE.add(self)
        t0 = time.monotonic()
        try:
            self.token_path = self.root / "auth_token"
            fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            self._port_base = random.randrange(20000, 30000, 200)
            self._enter_netns()
            gcs_port = 6379 if self.isolated else _free_port()
            self.address = f"127.0.0.1:{gcs_port}"
            self.head = self._start_node("head", gcs_port)
            # Workers start right away: `ray start --address` retries until the GCS is up,
            # so their start overlaps the head's.
            for i in range(self.workers_count):
                self.workers.append(self._start_node(f"worker{i + 1}", gcs_port))
            for node in (self.head, *self.workers):
                self._wait_ready(node, t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Kill everything this cluster started, by process group and pid, and remove its
        temp root. Safe to call twice and from atexit."""
        if self._stopped:
            return
        self._stopped = True
        nodes = [n for n in (self.head, *self.workers) if n is not None]
        roots = {p.pid for p in self._children} | {n.pid for n in nodes}
        if self._holder is not None:
            roots.add(self._holder.pid)
        pgids = set(roots)
        for _ in range(3):
            victims = _descendants(roots, pgids)
            for pgid in pgids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for popen in [*self._children, *(n.popen for n in nodes)] + (
                [self._holder] if self._holder is not None else []
            ):
                with contextlib.suppress(Exception):
                    popen.wait(timeout=5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(_alive(p) for p in victims):
                time.sleep(0.05)
            if not _descendants(roots, pgids):
                break
        _LIVE.discard(self)
        if (
            getattr(self, "root", None) is not None
            and os.environ.get("HIDDEN_TEST_KEEP_RAY") != "1"
        ):
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ network namespace
    def _enter_netns(self) -> None:
        mode = (self.netns or "auto").lower()
        if mode in ("0", "off", "false", "no"):
            return
        tools = _netns_tools()
        problem = None if tools else "needs Linux with `unshare` and `nsenter`"
        if tools:
            unshare, nsenter = tools
            holder = subprocess.Popen(
                [
                    unshare,
                    "--user",
                    "--map-root-user",
                    "--net",
                    sys.executable,
                    "-c",
                    _NETNS_HOLDER,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            line = holder.stdout.readline() if holder.stdout else ""
            if line.strip() == "ready":
                self._holder = holder
                self._prefix = [
                    nsenter,
                    f"--target={holder.pid}",
                    "--user",
                    "--net",
                    "--preserve-credentials",
                    "--",
                ]
                self.isolated = True
                return
            with contextlib.suppress(Exception):
                holder.kill()
            _, err = holder.communicate(timeout=5)
            problem = f"`unshare -rn` failed: {err.strip()[-300:]}"
        if mode in ("1", "on", "true", "yes", "require", "required"):
            raise RuntimeError(f"{NETNS_ENV}={mode}: no private network namespace: {problem}")
        import warnings

        warnings.warn(
            f"Ray test cluster on the HOST network ({problem}): Ray 2.60 then binds its gRPC "
            "ports on all interfaces (token auth still on)",
            stacklevel=3,
        )

    # ------------------------------------------------------------------ nodes
    def _ports(self, index: int) -> dict[str, int]:
        if self.isolated:  # a namespace of our own: fixed ports cannot collide
            base = 20000 + 1000 * index
            return {
                "node-manager-port": base + 1,
                "object-manager-port": base + 2,
                "metrics-export-port": base + 3,
                "dashboard-agent-listen-port": base + 4,
                "dashboard-agent-grpc-port": base + 5,
                "runtime-env-agent-port": base + 6,
                "min-worker-port": base + 100,
                "max-worker-port": base + 199,
            }
        base = self._port_base + 1000 * index
        return {
            "node-manager-port": _free_port(),
            "object-manager-port": _free_port(),
            "metrics-export-port": _free_port(),
            "dashboard-agent-listen-port": _free_port(),
            "dashboard-agent-grpc-port": _free_port(),
            "runtime-env-agent-port": _free_port(),
            "min-worker-port": base + 100,
            "max-worker-port": base + 199,
        }

    def _start_node(self, name: str, gcs_port: int) -> NodeProcess:
        is_head = name == "head"
        temp_dir = self.root / name
        temp_dir.mkdir()
        index = 0 if is_head else 1 + len(self.workers)
        args = [_ray_executable(), "start", "--block", "--disable-usage-stats"]
        if is_head:
            args += ["--head", f"--port={gcs_port}"]
            args += [f"--include-dashboard={'true' if self.dashboard else 'false'}"]
            if self.dashboard:
                args += [f"--dashboard-port={8265 if self.isolated else _free_port()}"]
        else:
            args += [f"--address={self.address}"]
        args += [
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={temp_dir}",
            f"--num-cpus={self.head_cpus if is_head else self.worker_cpus:g}",
            f"--num-gpus={self.head_gpus if is_head else self.worker_gpus:g}",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
        ]
        resources = self.head_resources if is_head else self.worker_resources
        if resources:
            args.append(f"--resources={json.dumps(dict(resources))}")
        args += [f"--{k}={v}" for k, v in self._ports(index).items()]
        log_path = self.root / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                self._prefix + args,
                env=self._base_env(with_token=True),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return NodeProcess(name=name, popen=popen, temp_dir=temp_dir, log_path=log_path)

    def _wait_ready(self, node: NodeProcess, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        while time.monotonic() < deadline:
            text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
            if READY_MARK in text:
                node.ready_seconds = time.monotonic() - t0
                return
            if node.popen.poll() is not None:
                raise RuntimeError(
                    f"`ray start` of the {node.name} node exited with {node.popen.returncode}:\n"
                    f"{node.log_tail()}"
                )
            time.sleep(0.1)
        raise RuntimeError(
            f"the {node.name} node was not up after {self.startup_timeout:g} s:\n{node.log_tail()}"
        )

    # ------------------------------------------------------------------ drivers / clients
    @property
    def worker(self) -> NodeProcess:
        return self.workers[0]

    @property
    def token_env(self) -> dict[str, str]:
        """What a driver needs to be let in: token auth on, the token read from a file."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def _base_env(
        self, *, with_token: bool, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS and k != "RAY_ADDRESS"}
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["PYTHONUNBUFFERED"] = "1"
        # This Python's scripts (`ray`, `hidden`) first on PATH, as in an activated venv.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if with_token:
            env.update(self.token_env)
        else:
            # No token anywhere: not in the environment, and a HOME without ~/.ray/auth_token
            # (Ray 2.60's local ray.init() writes one there, so the real HOME may have it).
            home = self.root / "no-token-home"
            home.mkdir(exist_ok=True)
            env["HOME"] = str(home)
            # Fail after ~2 s instead of ray.init's 20 retries of the refused GCS call.
            env["RAY_gcs_server_port_wait_time_s"] = "2"
        if extra:
            env.update(extra)
        return env

    def env(
        self, *, with_token: bool = True, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Environment for a driver/client process: RAY_ADDRESS set to the cluster, the token
        env with `with_token`, none at all (and a token-less HOME) without."""
        env = self._base_env(with_token=with_token, extra=None)
        env["RAY_ADDRESS"] = self.address
        if extra:
            env.update(extra)
        return env

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as it must be run to reach the cluster (inside its network namespace)."""
        return [*self._prefix, *argv]

    def popen(
        self,
        argv: Sequence[str],
        *,
        with_token: bool = True,
        env_extra: Mapping[str, str] | None = None,
        **kwargs: object,
    ) -> subprocess.Popen:
        """Start a process (e.g. a `hidden sweep run --address ...` driver) in its own process
        group; it is killed with the cluster at the latest. `.pid` is the driver's pid."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        popen = subprocess.Popen(
            self.command(argv),
            env=self.env(with_token=with_token, extra=env_extra),
            start_new_session=True,
            preexec_fn=_die_with_parent,
            **kwargs,  # type: ignore[arg-type]
        )
        self._children.append(popen)
        return popen

    def run(
        self,
        argv: Sequence[str],
        *,
        with_token: bool = True,
        env_extra: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        """Run `argv` to completion (killed, with its whole group, after `timeout`)."""
        popen = self.popen(
            argv,
            with_token=with_token,
            env_extra=env_extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            out, err = popen.communicate()
            raise AssertionError(
                f"{argv!r} ran past {timeout} s\nstdout:\n{out}\nstderr:\n{err}"
            ) from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)  # leftovers of the finished process
        return subprocess.CompletedProcess(popen.args, popen.returncode, out, err)

    def python(self, code: str, **kwargs: object) -> subprocess.CompletedProcess:
        """Run Python `code` as a driver/client of the cluster (see `run`)."""
        return self.run([sys.executable, "-c", code], **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ inspection
    def pids(self) -> set[int]:
        """Every live process this cluster started (nodes, their Ray workers, drivers)."""
        nodes = [n for n in (self.head, *self.workers) if n is not None]
        roots = {n.pid for n in nodes} | {p.pid for p in self._children}
        if self._holder is not None:
            roots.add(self._holder.pid)
        return _descendants(roots, set(roots))

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of every listening TCP socket in the cluster's network namespace
        (the host's when not isolated), read from /proc/net/tcp{,6}."""
        out = subprocess.run(
            self.command(["cat", "/proc/net/tcp", "/proc/net/tcp6"]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 4 or parts[3] != "0A" or ":" not in parts[1]:  # 0A = LISTEN
                continue
            addr_hex, port_hex = parts[1].rsplit(":", 1)
            found.append((_decode_addr(addr_hex), int(port_hex, 16)))
        return found

    def kill_worker_raylet(self, index: int = 0, sig: int = signal.SIGKILL) -> int:
        """Kill a worker node's raylet (the node is then lost: its `ray start --block`
        notices and takes the node's other processes down); returns the raylet's pid."""
        pid = self.workers[index].raylet_pid
        os.kill(pid, sig)
        return pid

    def add_worker(self) -> NodeProcess:
        """Start one more worker node (e.g. to replace a killed one) and wait until it is up."""
        gcs_port = int(self.address.rsplit(":", 1)[1])
        node = self._start_node(f"worker{len(self.workers) + 1}", gcs_port)
        self.workers.append(node)
        self._wait_ready(node, time.monotonic())
        return node


def _decode_addr(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def is_loopback(addr: str) -> bool:
    return (
        addr.startswith("127.")
        or addr in ("::1", "::ffff:127.0.0.1")
        or addr.startswith("::ffff:127.")
    )


_LIVE: weakref.WeakSet[LocalRayCluster] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """A module-wide two-node cluster (import this name into a test module to use it)."""
    with LocalRayCluster() as cluster:
        yield cluster
