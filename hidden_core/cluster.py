"""Running against an existing Ray cluster: token auth for the driver, a clear check of
`--address`, and the name of the node a trial runs on.

Ray (>= 2.52) authenticates every RPC and HTTP request with one shared token when
`RAY_AUTH_MODE=token` is set on the head, on every worker and on the driver. The token is
read, highest precedence first, from `RAY_AUTH_TOKEN` (the token itself),
`RAY_AUTH_TOKEN_PATH` (a file holding it), then `~/.ray/auth_token`; `ray get-auth-token
--generate` writes that last file. Keep the token in a file (Ray's own advice: an
environment variable is readable by every process that inherits it).

This module never imports Ray at import time (the store and the analysis must stay usable
on a laptop without it) and never logs or prints a token.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from hidden_core.errors import ConfigError

log = logging.getLogger(__name__)

AUTH_MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
AUTH_VARS = (AUTH_MODE_VAR, TOKEN_VAR, TOKEN_PATH_VAR)
DEFAULT_GCS_PORT = 6379
_REDACTED = "<redacted>"


def default_token_path() -> Path:
    """Where Ray looks for the token when neither variable is set (~/.ray/auth_token)."""
    return Path.home() / ".ray" / "auth_token"


class ClusterError(ConfigError):
    """The cluster named by `--address` cannot be used (unreachable, wrong token, ...).

    A ConfigError, so the CLI prints it as 'path: message' lines and exits with code 2."""

    def __init__(self, message: str, *more: str):
        super().__init__([message, *more])


# ----------------------------------------------------------------------------- node name
def node_id() -> str | None:
    """The Ray node id (hex) of this process, or None outside a connected Ray process."""
    ray = sys.modules.get("ray")  # only ask Ray if this process already uses it
    if ray is None:
        return None
    try:
        if not ray.is_initialized():
            return None
        return ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - defensive: never fail a trial over its name
        return None


def node_name() -> str:
    """A short, stable name of the machine/node this code runs on, for the results' `node`
    column: 'IP/nodeid12' inside a Ray worker or driver (two Ray nodes on one host differ by
    node id), the host name anywhere else. Never raises, never starts Ray."""
    nid = node_id()
    if nid:
        try:
            import ray.util

            ip = ray.util.get_node_ip_address()
        except Exception:  # pragma: no cover - defensive
            ip = socket.gethostname()
        return f"{ip}/{nid[:12]}"
    return socket.gethostname()


# ----------------------------------------------------------------------------- auth env
def _check_token_file(path: Path, origin: str) -> Path:
    path = path.expanduser()
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as err:
        raise ClusterError(
            f"{origin}: cannot read the Ray auth token file {path}: {err.strerror or err}"
        ) from None
    if not data.strip():
        raise ClusterError(f"{origin}: the Ray auth token file {path} is empty")
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the Ray auth token file %s is readable by other users; run: chmod 600 %s", path, path
        )
    return path.resolve()


def auth_env(
    token_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    required: bool = True,
) -> dict[str, str]:
    """The environment variables a driver (or a `ray start`) needs for token authentication.

    Source of the token, first that applies: `token_file`; `RAY_AUTH_TOKEN` in `environ`;
    `RAY_AUTH_TOKEN_PATH` in `environ`; `~/.ray/auth_token`. A file is passed on as
    `RAY_AUTH_TOKEN_PATH` (its content is only checked to be non-empty, never returned);
    only a token that already sits in `RAY_AUTH_TOKEN` is passed on as such.

    `RAY_AUTH_MODE=disabled` set explicitly in `environ` is respected (with a warning) and
    returned as is. With no token and `required`, raises ClusterError saying how to give one.
    The result may hold the secret (the RAY_AUTH_TOKEN case): log it with `redact()`.
    """
    env = os.environ if environ is None else environ
    mode = (env.get(AUTH_MODE_VAR) or "").strip().lower()
    if mode == "disabled" and token_file is None:
        log.warning(
            "RAY_AUTH_MODE=disabled: connecting WITHOUT token authentication; anyone who "
            "reaches this cluster's ports can run code on it"
        )
        return {AUTH_MODE_VAR: "disabled"}
    if mode not in ("", "token", "disabled"):
        raise ClusterError(f"{AUTH_MODE_VAR}={mode!r}: Ray knows only 'token' and 'disabled'")

    if token_file is not None:
        path = _check_token_file(Path(token_file), "token file")
        return {AUTH_MODE_VAR: "token", TOKEN_PATH_VAR: str(path)}
    token = env.get(TOKEN_VAR, "")
    if token.strip():
        return {AUTH_MODE_VAR: "token", TOKEN_VAR: token}
    if env.get(TOKEN_PATH_VAR):
        path = _check_token_file(Path(env[TOKEN_PATH_VAR]), TOKEN_PATH_VAR)
        return {AUTH_MODE_VAR: "token", TOKEN_PATH_VAR: str(path)}
    default = default_token_path()
    if default.exists():
        path = _check_token_file(default, "~/.ray/auth_token")
        return {AUTH_MODE_VAR: "token", TOKEN_PATH_VAR: str(path)}
    if required:
        raise ClusterError(
            "--address: no Ray auth token found for this driver. Give it the cluster's token: "
            f"{TOKEN_PATH_VAR}=<file holding it> (or {TOKEN_VAR}, or the file "
            "~/.ray/auth_token), with RAY_AUTH_MODE=token. On a cluster from cluster/*.yaml "
            "the nodes already have it in ~/.ray/auth_token; see cluster/README.md."
        )
    return {}


def redact(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` safe to log: the token value replaced."""
    return {k: (_REDACTED if k == TOKEN_VAR and v else v) for k, v in env.items()}


def describe_auth(env: Mapping[str, str]) -> str:
    """One line for logs, e.g. 'token auth on (token from file /home/u/.ray/auth_token)'."""
    mode = env.get(AUTH_MODE_VAR, "")
    if mode == "token":
        if env.get(TOKEN_VAR):
            return f"token auth on (token from ${TOKEN_VAR})"
        return f"token auth on (token from file {env.get(TOKEN_PATH_VAR, default_token_path())})"
    if mode == "disabled":
        return "token auth DISABLED (RAY_AUTH_MODE=disabled)"
    return "token auth not configured"


def driver_env(auth: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A full environment for a child process (a driver, `ray job submit`, a test client):
    `base` (default os.environ) with the auth variables replaced by `auth`, so a stale
    RAY_AUTH_TOKEN cannot shadow the RAY_AUTH_TOKEN_PATH chosen (Ray prefers the former)."""
    env = dict(os.environ if base is None else base)
    for key in AUTH_VARS:
        env.pop(key, None)
    env.update(auth)
    return env


def apply_auth_env(
    auth: Mapping[str, str] | None = None, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Put `auth` (default: `auth_env()`) into this process's environment, dropping stale
    auth variables, and make an already imported Ray see the change. Call before ray.init.
    Returns the variables set."""
    auth = dict(auth_env() if auth is None else auth)
    target = os.environ if environ is None else environ
    for key in AUTH_VARS:
        target.pop(key, None)
    target.update(auth)
    if target is os.environ:
        _refresh_ray_auth()
    return auth


def _refresh_ray_auth() -> None:
    """Ray caches RAY_AUTH_MODE in its C++ config and the token in a loader singleton when
    `ray._raylet` is first loaded; re-read both if that has already happened."""
    raylet = sys.modules.get("ray._raylet")
    if raylet is None:
        return
    try:
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()
    except Exception as err:  # pragma: no cover - depends on Ray internals
        log.debug("could not refresh Ray's auth settings: %s", err)


# ----------------------------------------------------------------------------- address
@dataclass(frozen=True)
class ClusterInfo:
    """What `check_cluster` found: the address Ray will use and the cluster's id."""

    address: str
    cluster_id: str | None


def split_address(address: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port', or 'host' meaning port 6379) -> (host, port)."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ClusterError(f"--address {address!r}: expected HOST:PORT (the head's GCS port)")
    if not port_text:
        return host, DEFAULT_GCS_PORT
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ClusterError(f"--address {address!r}: the port must be a number in 1..65535")
    return host, port


def _same_target(address: str, host: str, port: int) -> bool:
    try:
        return split_address(address.removeprefix("ray://")) == (host, port)
    except Exception:  # noqa: BLE001 - 'auto' and other names that are not host:port
        return False


def _tcp_check(host: str, port: int, timeout: float, address: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        # Ray dials a loopback address as this node's IP: say so, but name what was given
        dialled = address.removeprefix("ray://")
        if not _same_target(address, host, port):
            dialled += f" (Ray dials a loopback address as this node's IP: {host}:{port})"
        raise ClusterError(
            f"--address {address}: cannot reach a Ray cluster at {dialled} "
            f"({err.strerror or err}). Is the head running (`ray status` on it), and are you "
            "on a machine of the cluster? A driver must run inside the cluster's network: "
            "from a laptop, submit with `ray job submit` through the dashboard tunnel "
            "instead (cluster/README.md)."
        ) from None


def _resolve(address: str) -> str:
    """The host:port Ray itself will dial for `address` ('auto' = RAY_ADDRESS or the
    cluster started on this machine; a loopback host = this node's IP, as in ray.init)."""
    from ray._private import services  # lazy: Ray only when a cluster is asked for

    try:
        resolved = services.canonicalize_bootstrap_address(address)
    except Exception as err:
        raise ClusterError(f"--address {address}: {err}") from None
    if resolved is None:
        raise ClusterError(
            f"--address {address}: no running Ray cluster found (RAY_ADDRESS is unset and "
            "none was started on this machine); pass HEAD_IP:6379, or start one with "
            "`ray start --head`"
        )
    return resolved


def _probe_gcs(address: str, given: str, timeout: float) -> str:
    """Ask the GCS for its cluster id: proves it is a Ray GCS and that it accepts our token."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    outcome: dict[str, object] = {}

    def probe() -> None:
        try:
            outcome["id"] = GcsClient(address=address).cluster_id.hex()
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = err

    thread = threading.Thread(target=probe, name="hidden-gcs-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ClusterError(
            f"--address {given}: {address} accepts connections but did not answer as a Ray GCS "
            f"within {timeout:g} s (is that the head's GCS port, 6379 by default?)"
        )
    err = outcome.get("error")
    if isinstance(err, AuthenticationError):
        raise ClusterError(
            f"--address {given}: the Ray cluster at {address} refused this driver's token "
            "(missing or wrong). It runs with token authentication: give the driver the "
            f"cluster's token with RAY_AUTH_MODE=token and {TOKEN_PATH_VAR}=<file> (or "
            "~/.ray/auth_token). On a cluster node the file is already there."
        ) from None
    if err is not None:
        raise ClusterError(
            f"--address {given}: {address} did not answer as a Ray GCS: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    return str(outcome["id"])


def check_cluster(address: str | None, *, timeout: float = 10.0) -> ClusterInfo | None:
    """Fail fast, with one clear message, when `--address` cannot be used.

    None/'local' -> None (an embedded local Ray will be started). 'ray://...' (Ray Client)
    is only checked for reachability. Otherwise the address is resolved as ray.init would
    ('auto' included), reached over TCP, and asked for its cluster id with this process's
    auth settings (call `apply_auth_env()` first): a refused token raises ClusterError at
    once instead of ray.init's ~20 s of retries. Imports Ray lazily.
    """
    if address is None or address.strip() in ("", "local"):
        return None
    address = address.strip()
    if address.startswith(("http://", "https://")):
        raise ClusterError(
            f"--address {address}: that is a dashboard / job API URL. `hidden sweep run` "
            "connects to the head's GCS (HEAD_IP:6379, or 'auto' on a cluster node); to start "
            "a sweep from a laptop use `ray job submit --address "
            f"{address} -- hidden sweep run ...`"
        )
    if address.startswith("ray://"):
        host, port = split_address(address[len("ray://") :])
        _tcp_check(host, port, timeout, address)
        return ClusterInfo(address=address, cluster_id=None)
    _refresh_ray_auth()
    resolved = _resolve(address)
    host, port = split_address(resolved)
    _tcp_check(host, port, timeout, address)
    cluster_id = _probe_gcs(resolved, address, timeout)
    return ClusterInfo(address=resolved, cluster_id=cluster_id)
