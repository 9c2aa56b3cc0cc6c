"""cluster/slurm/hidden-sweep.sbatch on a real Slurm: Debian's slurmctld, two slurmd and
munge on this machine (installed with apt when missing: CI runs as root), a tiny sweep
submitted with sbatch on two nodes, the store checked (every trial exactly once), and every
daemon this test started stopped by its pid.

Two nodes on one host: two NodeNames with the same NodeHostname, their own slurmd ports,
and `%n` in the spool/pid/log paths, each slurmd started with `-N <node>` (Debian's 22.05
build allows it). The job then runs a Ray head (node n1) and a Ray worker (node n2) on this
one machine, as on two hosts; the template gives each its own temp dir and free ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from hidden_core.spec import load_spec
from hidden_core.store import ResultStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "cluster" / "slurm" / "hidden-sweep.sbatch"
DAEMONS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch")


def _ensure_slurm() -> None:
    """Install Debian's Slurm and munge when they are missing (root + apt only)."""
    if all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Slurm is not installed and this user cannot apt-get it (needs root and apt: "
                    "apt-get install -y slurm-wlm munge)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class LocalSlurm:
    """munged + slurmctld + slurmd in the foreground, as children of this test, with every
    file (config, state, sockets, logs) under one temp folder."""

    def __init__(self, root: Path):
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        r = self.root
        for d in ("state", "spool-n1", "spool-n2", "munge"):
            (r / d).mkdir(mode=0o700)
        key = r / "munge" / "munge.key"
        subprocess.run([_sbin("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        sock = r / "munge" / "munge.sock"
        self._spawn([_sbin("munged"), "-F", "--force", f"--socket={sock}", f"--key-file={key}",
                     f"--pid-file={r / 'munge' / 'munged.pid'}", f"--log-file={r / 'munge' / 'munged.log'}",
                     f"--seed-file={r / 'munge' / 'munged.seed'}"], "munged")
        self._wait(lambda: sock.exists(), "munged socket", 30)
        cpus = max(1, (os.cpu_count() or 2) // 2)  # per node
        self.conf.write_text(f"""\
ClusterName=hiddentest
SlurmctldHost={self.node}
SlurmctldPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r}/spool-%n
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r / 'slurmctld.log'}
SlurmdLogFile={r}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName=n1 NodeHostname={self.node} NodeAddr=127.0.0.1 Port={_free_port()} CPUs={cpus} State=UNKNOWN
NodeName=n2 NodeHostname={self.node} NodeAddr=127.0.0.1 Port={_free_port()} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        self.cpus = cpus
        self._spawn([_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld")
        for node in ("n1", "n2"):
            self._spawn([_sbin("slurmd"), "-D", "-f", str(self.conf), "-N", node], f"slurmd-{node}")
        self._wait(lambda: self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout.split() == ["idle", "idle"],
                   "two idle Slurm nodes", 90)

    def _spawn(self, cmd: list[str], name: str) -> None:
        log = open(self.root / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True))

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited ({p.returncode}) while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"no {what} after {timeout:.0f}s:\n{self.logs()}")

    def run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=check, timeout=60)

    def logs(self) -> str:
        parts = []
        for f in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-2500:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Each daemon this test started, by pid: SIGTERM, then SIGKILL after 15 s."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            p.stdout and p.stdout.close()


@pytest.fixture(scope="module")
def slurm():
    started = time.monotonic()
    _ensure_slurm()
    installed = time.monotonic() - started
    root = Path(tempfile.mkdtemp(prefix="hslurm-", dir="/tmp"))  # short: unix socket paths
    cluster = LocalSlurm(root)
    try:
        cluster.start()
        cluster.install_seconds = installed
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_sbatch_template_runs_a_sweep_into_the_store(slurm, tmp_path):
    spec_path = tmp_path / "slurm_tiny.yaml"
    spec_path.write_text(
        "name: slurm_tiny\n"
        "base: {dataset: mnist1d, model: mlp, width: 0.25, epochs: 2, optimizer: adam, lr: 0.01}\n"
        "grid: {method: [dense, edge_popup]}\n"
        "resources: {cpu: 1}\n"
    )
    results = tmp_path / "results"  # the "shared filesystem": one node sees it
    venv = Path(sys.executable).parent.parent
    output = tmp_path / "job.log"
    submitted = slurm.run([
        "sbatch", "--parsable", "--nodes=2", f"--cpus-per-task={slurm.cpus}", "--gpus-per-node=0", f"--output={output}",
        f"--chdir={ROOT}", f"--export=ALL,SPEC={spec_path},RESULTS={results},HIDDEN_VENV={venv},PYTHONPATH={ROOT}",
        str(TEMPLATE),
    ], check=False)
    assert submitted.returncode == 0, submitted.stderr + slurm.logs()
    job = submitted.stdout.strip().split(";")[0]

    deadline = time.monotonic() + 600
    state = ""
    while time.monotonic() < deadline:
        info = slurm.run(["scontrol", "show", "job", job], check=False).stdout
        state = next((w.split("=", 1)[1] for w in info.split() if w.startswith("JobState=")), "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            break
        time.sleep(2)
    log = output.read_text(errors="replace") if output.exists() else "(no job output)"
    assert state == "COMPLETED", f"job {job}: {state}\n{log[-6000:]}\n{slurm.logs()}"

    spec = load_spec(spec_path)
    planned = {t.trial_id for t in spec.plan().trials}
    frame = ResultStore(results).load_trials("slurm_tiny")
    assert sorted(frame["trial_id"]) == sorted(planned) and set(frame["status"]) == {"completed"}
    raw = ds.dataset(str(results / "slurm_tiny" / "trials"), format="parquet").to_table(columns=["trial_id"]).to_pylist()
    assert sorted(r["trial_id"] for r in raw) == sorted(planned)  # each trial written exactly once
    assert "hidden-sweep: job" in log and "2 node(s), head n1" in log
    assert "hidden-sweep: 2 Ray node(s) up" in log and "sweep slurm_tiny: ran 2 trials" in log
    # the job cleaned up: no token left on the shared filesystem, no Ray temp dir on a node
    assert not list((results / "_slurm").glob("*/ray_auth_token"))
    assert not list(Path("/tmp").glob(f"ray-hidden-{job}-*"))
    print(f"apt install: {slurm.install_seconds:.0f}s", file=sys.stderr)
