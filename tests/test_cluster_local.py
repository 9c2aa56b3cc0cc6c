"""A real two-node Ray cluster on 127.0.0.1 with token authentication: a driver with the
token runs tasks on both nodes; a client without it (or with a wrong one) cannot submit
work. Plus the unit tests of hidden_core.cluster (auth env, address checks, node name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hidden_core import cluster as hc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_cluster_fixture import LocalRayCluster, is_loopback  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster() as c:
        print(
            f"\n[ray test cluster] isolated={c.isolated} up in {c.startup_seconds:.1f} s "
            f"(head {c.head.ready_seconds:.1f} s, worker {c.worker.ready_seconds:.1f} s)"
        )
        yield c


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{text}")


# ------------------------------------------------------------------------ the real cluster
@pytest.mark.slow
def test_cluster_is_up_on_loopback_only(cluster, record_property):
    record_property("ray_cluster_startup_seconds", round(cluster.startup_seconds, 2))
    assert cluster.head.raylet_pid != cluster.worker.raylet_pid
    assert cluster.address.startswith("127.0.0.1:")
    # The token file is private to its owner and lives in the cluster's temp root.
    assert cluster.token_path.stat().st_mode & 0o077 == 0
    assert not str(cluster.token_path).startswith(str(Path.home() / ".ray"))
    listening = cluster.listening()
    assert listening, "the cluster listens on no TCP port?"
    if not cluster.isolated:
        pytest.skip("no private network namespace here: Ray 2.60 binds all interfaces")
    outside = [(a, p) for a, p in listening if not is_loopback(a)]
    assert not outside, f"listening beyond loopback: {outside}"


DRIVER = textwrap.dedent(
    """
    import json, sys
    from hidden_core.cluster import apply_auth_env, auth_env, check_cluster, describe_auth, node_name
    env = apply_auth_env(auth_env(token_file=sys.argv[1]))   # the helper gives the token
    info = check_cluster(sys.argv[2])
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    ray.init(address=sys.argv[2], log_to_driver=False)

    @ray.remote(num_cpus=1)
    def where():
        from hidden_core.cluster import node_id, node_name
        return node_id(), node_name()

    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    pinned = ray.get([
        where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
        for n in alive
    ])
    spread = ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(4)])
    print(json.dumps({
        "auth": describe_auth(env), "cluster_id": info.cluster_id, "alive": alive,
        "pinned": pinned, "spread": spread, "driver_node": node_name(),
    }))
    """
)


@pytest.mark.slow
def test_driver_with_token_runs_tasks_on_both_nodes(cluster):
    # The child starts with NO token in its environment: only auth_env/apply_auth_env give it.
    t0 = time.monotonic()
    r = cluster.run(
        [sys.executable, "-c", DRIVER, str(cluster.token_path), cluster.address],
        with_token=False,
        timeout=90,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = _last_json(r.stdout)
    print(f"\n[driver] connected and ran 6 tasks in {time.monotonic() - t0:.1f} s")
    assert str(cluster.token_path) in out["auth"] and "token auth on" in out["auth"]
    assert len(out["cluster_id"]) > 8
    assert len(out["alive"]) == 2
    pinned_ids = [nid for nid, _ in out["pinned"]]
    assert pinned_ids == out["alive"], "a task pinned to a node ran elsewhere"
    names = {name for _, name in out["pinned"]}
    assert len(names) == 2, f"node_name() must tell the two nodes apart: {names}"
    assert all(name.startswith("127.0.0.1/") for name in names) or not cluster.isolated
    assert {nid for nid, _ in out["spread"]} <= set(out["alive"])
    assert "/" in out["driver_node"]  # the driver is a Ray process too


NO_TOKEN_CLIENT = textwrap.dedent(
    """
    import sys, ray
    marker = sys.argv[2]
    ray.init(address=sys.argv[1], log_to_driver=False)

    @ray.remote
    def touch():
        open(marker, "w").write("ran")

    ray.get(touch.remote())
    print("SUBMITTED")
    """
)


@pytest.mark.slow
def test_client_without_or_with_wrong_token_cannot_submit_work(cluster):
    markers = {k: cluster.root / f"marker-{k}" for k in ("none", "wrong")}
    t0 = time.monotonic()
    procs = {
        "none": cluster.popen(
            [sys.executable, "-c", NO_TOKEN_CLIENT, cluster.address, str(markers["none"])],
            with_token=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        "wrong": cluster.popen(
            [sys.executable, "-c", NO_TOKEN_CLIENT, cluster.address, str(markers["wrong"])],
            with_token=False,
            env_extra={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    }
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0, f"{kind}: a client without the right token got in:\n{out}"
        assert "SUBMITTED" not in out
        assert (
            "AuthenticationError" in err or "Authentication token is missing or incorrect" in err
        ), f"{kind}: refused, but not for authentication?\n{err[-2000:]}"
        assert not markers[kind].exists(), f"{kind}: the task ran on the cluster"
    print(f"\n[no-token clients] refused in {time.monotonic() - t0:.1f} s")


@pytest.mark.slow
def test_check_cluster_names_the_token_problem_at_once(cluster):
    code = textwrap.dedent(
        """
        import sys, time
        from hidden_core.cluster import ClusterError, check_cluster
        t = time.monotonic()
        try:
            check_cluster(sys.argv[1])
        except ClusterError as e:
            print("ERR", round(time.monotonic() - t, 2), e.problems[0])
        else:
            print("OK")
        """
    )
    refused = cluster.run(
        [sys.executable, "-c", code, cluster.address], with_token=False, timeout=60
    )
    assert refused.stdout.startswith("ERR"), refused.stdout + refused.stderr[-2000:]
    assert "refused this driver's token" in refused.stdout
    assert float(refused.stdout.split()[1]) < 5, "the auth check must not wait for retries"
    accepted = cluster.run(
        [sys.executable, "-c", code, cluster.address], with_token=True, timeout=60
    )
    assert accepted.stdout.strip() == "OK", accepted.stdout + accepted.stderr[-2000:]
    # 'auto' finds the cluster through RAY_ADDRESS (set by cluster.env()).
    auto = cluster.run([sys.executable, "-c", code, "auto"], with_token=True, timeout=60)
    assert auto.stdout.strip() == "OK", auto.stdout + auto.stderr[-2000:]


@pytest.mark.slow
def test_fixture_kills_the_worker_node_and_cleans_up_every_process():
    c = LocalRayCluster(workers_count=1)
    try:
        c.start()
        worker_ray_start = c.worker.popen
        raylet = c.worker.raylet_pid
        pids = c.pids()
        assert raylet in pids and c.head.raylet_pid in pids
        t0 = time.monotonic()
        assert c.kill_worker_raylet() == raylet
        # `ray start --block` notices its raylet died and takes the node down.
        worker_ray_start.wait(timeout=30)
        print(f"\n[worker node] down {time.monotonic() - t0:.1f} s after its raylet was killed")
        assert c.head.popen.poll() is None, "the head must survive a lost worker"
        # A replacement node joins the same cluster.
        t0 = time.monotonic()
        replacement = c.add_worker()
        print(f"[worker node] replacement up in {time.monotonic() - t0:.1f} s")
        assert replacement.raylet_pid not in pids
        pids |= c.pids()
    finally:
        c.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [p for p in pids if _running(p)]:
        time.sleep(0.1)
    assert not [p for p in pids if _running(p)], "processes of the cluster outlived stop()"
    assert not c.root.exists()


@pytest.mark.slow
def test_fixture_cleans_up_when_a_node_fails_to_start():
    c = LocalRayCluster(object_store_mb=1)  # below Ray's minimum: `ray start` exits
    with pytest.raises(RuntimeError, match="exited with"):
        c.start()
    assert not c.root.exists() and not c.pids()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# ------------------------------------------------------------------------ unit: auth_env
def test_auth_env_prefers_a_file_and_never_returns_its_content(tmp_path):
    token = tmp_path / "tok"
    token.write_text("s3cr3t-value\n")
    token.chmod(0o600)
    env = hc.auth_env(token_file=token, environ={"RAY_AUTH_TOKEN": "other"})
    assert env == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token.resolve())}
    assert "s3cr3t" not in repr(env) and "s3cr3t" not in hc.describe_auth(env)


def test_auth_env_follows_rays_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    token = tmp_path / "tok"
    token.write_text("abc")
    assert hc.auth_env(environ={"RAY_AUTH_TOKEN": "xyz", "RAY_AUTH_TOKEN_PATH": str(token)}) == {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": "xyz",
    }
    assert hc.auth_env(environ={"RAY_AUTH_TOKEN_PATH": str(token)})["RAY_AUTH_TOKEN_PATH"] == str(
        token.resolve()
    )
    with pytest.raises(hc.ClusterError, match="no Ray auth token found"):
        hc.auth_env(environ={})
    assert hc.auth_env(environ={}, required=False) == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("def")
    assert hc.auth_env(environ={})["RAY_AUTH_TOKEN_PATH"].endswith(".ray/auth_token")
    redacted = hc.redact({"RAY_AUTH_TOKEN": "xyz", "RAY_AUTH_MODE": "token"})
    assert "xyz" not in repr(redacted)


def test_auth_env_rejects_empty_or_missing_files_and_respects_disabled(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(hc.ClusterError, match="is empty"):
        hc.auth_env(token_file=empty)
    with pytest.raises(hc.ClusterError, match="cannot read"):
        hc.auth_env(token_file=tmp_path / "missing")
    with pytest.raises(hc.ClusterError, match="only 'token' and 'disabled'"):
        hc.auth_env(environ={"RAY_AUTH_MODE": "tokn"})
    assert hc.auth_env(environ={"RAY_AUTH_MODE": "disabled"}) == {"RAY_AUTH_MODE": "disabled"}


def test_driver_env_drops_stale_auth_variables():
    env = hc.driver_env(
        {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"},
        base={"RAY_AUTH_TOKEN": "stale", "PATH": "/bin"},
    )
    assert env == {"PATH": "/bin", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"}
    target: dict[str, str] = {"RAY_AUTH_TOKEN": "stale"}
    hc.apply_auth_env({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"}, environ=target)
    assert target == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"}


# ------------------------------------------------------------------------ unit: addresses
def test_module_does_not_import_ray():
    code = "import sys, hidden_core.cluster as c; c.node_name(); print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_node_name_outside_ray_is_the_host_name():
    import socket

    assert hc.node_name() == socket.gethostname() or "ray" in sys.modules


def test_split_address():
    assert hc.split_address("10.0.0.1:6380") == ("10.0.0.1", 6380)
    assert hc.split_address("head") == ("head", 6379)
    assert hc.split_address("[::1]:7000") == ("::1", 7000)
    with pytest.raises(hc.ClusterError, match="port"):
        hc.split_address("head:http")
    with pytest.raises(hc.ClusterError, match="HOST:PORT"):
        hc.split_address(":6379")


def test_check_cluster_local_and_urls():
    assert hc.check_cluster(None) is None and hc.check_cluster("local") is None
    with pytest.raises(hc.ClusterError, match="ray job submit"):
        hc.check_cluster("http://127.0.0.1:8265")


def test_check_cluster_unreachable_fails_fast():
    code = textwrap.dedent(
        """
        import socket, sys, time
        from hidden_core.cluster import ClusterError, check_cluster
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        t = time.monotonic()
        try:
            check_cluster(f"127.0.0.1:{port}", timeout=3)
        except ClusterError as e:
            print(round(time.monotonic() - t, 1), e.problems[0])
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert "cannot reach a Ray cluster" in out.stdout, out.stdout + out.stderr[-2000:]
    assert float(out.stdout.split()[0]) < 5
