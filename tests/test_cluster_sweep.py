"""`hidden sweep run --address` against a real two-node Ray cluster on 127.0.0.1 with token
auth (tests/ray_cluster_fixture.py: a head and a worker node of 1 CPU each, so two 1-CPU
trials run at once, one on each node):

- multi-node: the store shows trials on both nodes, every trial exactly once;
- no token: a driver without (or with a wrong) token is refused with exit code 2 and a
  clear message, and nothing is written;
- killed driver: SIGKILL mid-sweep, the same command again finishes it: every trial exactly
  once, epochs 1..N each once, in-flight trials resumed from their trial-keyed checkpoints;
- fractional GPUs: {cpu: 0.5, gpu: 0.5} trials share the worker's (advertised) GPU;
- lost worker node: SIGKILL of the worker's raylet mid-trial; the sweep ends with every
  trial once, the interrupted one resumed from its last checkpoint on the head. The
  recomputed epochs and the recovery time are printed (`pytest -s`) and written to
  `<tmp>/worker_kill.json`.

Every process is started through the fixture and killed by pid/process group with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from hidden_core import paths
from hidden_core.spec import load_spec
from hidden_core.store import ResultStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_cluster_fixture import LocalRayCluster  # noqa: E402

EPOCHS = 6
KILL_EPOCHS = 8  # the kill tests: a kill lands well before the last epoch
# ~0.5-1 s an epoch on one core of a 2-core machine with both nodes busy: a trial lasts a few
# seconds, so a kill lands mid-trial; the kill tests checkpoint every epoch (checkpoint_every_s 0)
BASE = {"dataset": "digits", "model": "mlp", "width": 8, "batch_size": 16, "epochs": EPOCHS, "optimizer": "adam", "lr": 0.003}


@pytest.fixture(scope="module")
def two_nodes():
    with LocalRayCluster(head_cpus=1, worker_cpus=1, worker_gpus=1) as c:  # the GPU is only counted
        print(f"\n[ray test cluster] isolated={c.isolated} up in {c.startup_seconds:.1f} s")
        yield c


@pytest.fixture
def cluster(two_nodes: LocalRayCluster) -> LocalRayCluster:
    """The module's cluster with a live worker node (one is added if a test killed it)."""
    if _live_worker(two_nodes) is None:
        two_nodes.add_worker()
    return two_nodes


def _live_worker(c: LocalRayCluster) -> int | None:
    live = [i for i, w in enumerate(c.workers) if w.popen.poll() is None]
    return live[-1] if live else None


def _write_spec(folder: Path, name: str, grid: dict, **extra) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": BASE, "grid": grid, "resources": {"cpu": 1}, **extra}))
    return path


def _sweep_argv(spec: Path, results: Path, address: str, *more: str) -> list[str]:
    return ["hidden", "sweep", "run", str(spec), "--address", address, "--results", str(results), *more]


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in the output:\n{text[-3000:]}")


def _check_store(results: Path, spec_path: Path, epochs_per_trial: int = EPOCHS):
    """Every planned trial exactly once, completed, with epoch rows 1..N each once."""
    spec = load_spec(spec_path)
    store = ResultStore(results)
    frame = store.load_trials(spec.name)
    planned = sorted(t.trial_id for t in spec.plan().trials)
    assert sorted(frame.trial_id) == planned, "every trial exactly once"
    assert (frame.status == "completed").all(), frame[["trial_id", "status", "error"]]
    assert (frame.epochs_run == epochs_per_trial).all()
    epochs = store.load_epochs(spec.name)
    for trial_id in planned:
        rows = epochs[epochs.trial_id == trial_id]
        assert list(rows.epoch) == list(range(1, epochs_per_trial + 1)), f"{trial_id}: epoch rows {list(rows.epoch)}"
    return frame


def _checkpoints(results: Path, sweep: str) -> dict[str, int]:
    """trial_id -> epochs its trial-keyed checkpoint holds (trials with one)."""
    from hidden_core.training import checkpoint_history

    out: dict[str, int] = {}
    folder = results / sweep / "checkpoints"
    for trial in folder.iterdir() if folder.is_dir() else ():
        try:
            history = checkpoint_history(trial)
        except Exception:  # being replaced right now
            continue
        if history:
            out[trial.name] = len(history)
    return out


def _wait_exec(pid: int, word: str, timeout: float = 10) -> None:
    """`cluster.popen` runs argv through nsenter, which execs it in place: wait until the pid
    is the driver itself, so that killing it kills the driver."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        if word in cmdline and "nsenter" not in cmdline.split("\0")[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} did not become the driver: {cmdline!r}")


# ------------------------------------------------------------------------------ multi-node
@pytest.mark.slow
def test_sweep_runs_trials_on_both_nodes(cluster: LocalRayCluster, tmp_path: Path):
    spec = _write_spec(tmp_path, "multinode", {"seed": [0, 1, 2, 3]}, vectorize="none")  # four trials, not one cell
    results = tmp_path / "results"
    t0 = time.monotonic()
    r = cluster.run(_sweep_argv(spec, results, cluster.address, "--json"), timeout=180)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    report = _last_json(r.stdout)
    assert report["counts"]["completed"] == 4 and report["unfinished"] == 0
    assert report["concurrency"] == 2, "the cluster holds two 1-CPU trials"
    frame = _check_store(results, spec)
    nodes = frame.groupby("node").size().to_dict()
    print(f"\n[multi-node] 4 trials in {seconds:.1f} s, per node: {nodes}")
    assert len(nodes) == 2, f"trials ran on one node only: {nodes}"
    if cluster.isolated:
        assert all(n.startswith("127.0.0.1/") for n in nodes)
    assert frame.ray_version.notna().all() and (frame.device == "cpu").all()
    assert sorted(p.name for p in (results / "multinode").iterdir()) == ["epochs", paths.SWEEP_MARKER, "subnets", "trials"]  # no checkpoint, no lease left


# ------------------------------------------------------------------------------ no token
@pytest.mark.slow
def test_driver_without_the_token_cannot_run_a_sweep(cluster: LocalRayCluster, tmp_path: Path):
    spec = _write_spec(tmp_path, "notoken", {"seed": [0]})
    results = tmp_path / "results"
    cases = {
        "no token": ({}, "no Ray auth token found"),
        "wrong token": ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}, "refused this driver's token"),
    }
    for case, (extra, message) in cases.items():
        t0 = time.monotonic()
        r = cluster.run(_sweep_argv(spec, results, cluster.address), with_token=False, env_extra=extra, timeout=90)
        seconds = time.monotonic() - t0
        print(f"\n[{case}] exit {r.returncode} after {seconds:.1f} s: {r.stderr.strip().splitlines()[-1][:160]}")
        assert r.returncode == 2, f"{case}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        assert message in r.stderr, f"{case}: not the expected message:\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr
        assert not results.exists(), f"{case}: something was written to the store"


# ------------------------------------------------------------------------------ killed driver
@pytest.mark.slow
def test_killed_driver_rerun_resumes_and_finishes(cluster: LocalRayCluster, tmp_path: Path):
    # a report every epoch
    spec = _write_spec(tmp_path, "driverkill", {"method": ["dense", "edge_popup"], "seed": [0, 1], "epochs": [KILL_EPOCHS]}, report_every_s=0,
                       run={"checkpoint_every_s": 0})
    results = tmp_path / "results"
    store = ResultStore(results)
    argv = _sweep_argv(spec, results, cluster.address)
    first_log = tmp_path / "driver1.log"
    t0 = time.monotonic()
    with open(first_log, "w") as log:
        driver = cluster.popen(argv, stdout=log, stderr=subprocess.STDOUT)
    _wait_exec(driver.pid, "sweep")
    # kill once a trial is in the store and another is in flight, several epochs from its
    # end, with a checkpoint of at least two epochs
    deadline = time.monotonic() + 150
    while True:
        assert driver.poll() is None, f"the driver ended before it was killed:\n{first_log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no trial finished in time"
        final = store.final_trial_ids("driverkill") if "driverkill" in store.sweeps() else set()
        in_flight = {t: n for t, n in _checkpoints(results, "driverkill").items() if t not in final and 2 <= n <= KILL_EPOCHS - 4}
        if final and in_flight:
            break
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)
    t_kill = time.time()
    killed_after = time.monotonic() - t0
    driver.wait(timeout=30)
    before = store.load_trials("driverkill", columns=["trial_id", "write_id"])
    assert 1 <= len(before) < 4
    in_flight = {t: n for t, n in in_flight.items() if t not in set(before.trial_id)}
    assert in_flight, "the trial in flight ended before the kill landed"

    t1 = time.monotonic()
    r = cluster.run(argv + ["--json"], timeout=180)
    rerun_seconds = time.monotonic() - t1
    (tmp_path / "rerun.log").write_text(r.stdout + "\n--- stderr ---\n" + r.stderr)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    report = _last_json(r.stdout)
    assert report["unfinished"] == 0 and report["resumed"] >= 1 and report["skipped"] == len(before)
    assert report["counts"]["completed"] == 4 - len(before)

    frame = _check_store(results, spec, KILL_EPOCHS)
    # what the killed run had finished was neither re-run nor rewritten
    kept = frame.set_index("trial_id").loc[list(before.trial_id), "write_id"]
    assert dict(kept) == dict(zip(before.trial_id, before.write_id, strict=True))
    # trials in flight at the kill went on from their checkpoints: their start time comes
    # from the checkpoint folder (a trial started afresh would have started after t1)
    started = frame.set_index("trial_id").loc[list(in_flight), "started_at"]
    resumed = sorted(t for t, s in started.items() if s.timestamp() < t_kill)
    print(
        f"\n[driver kill] killed {killed_after:.1f} s into the first run with {len(before)} of 4 trials in the store "
        f"and {len(in_flight)} in flight {in_flight} (epochs checkpointed); the re-run took {rerun_seconds:.1f} s and "
        f"resumed {report['resumed']} trial(s) from checkpoints: {resumed}"
    )
    assert resumed, f"no in-flight trial resumed from its checkpoint: {started.to_dict()} (kill at {t_kill})"
    assert not (results / "driverkill" / "checkpoints").exists() and not (results / "driverkill" / "lease.json").exists()


# ------------------------------------------------------------------------------ lost worker node
# A driver that runs the sweep with the core train wrapped to log every epoch it computes
# (trial, epoch, node, time) to a JSON-lines file, so the test can see where each epoch ran
# and which were computed twice, and with an extra Tune callback (run_sweep's `callbacks`)
# logging when Tune notices a lost trial and retries it. Both are defined in __main__: Ray
# pickles them by value.
LOGGED_DRIVER = textwrap.dedent(
    """
    import json, sys, time
    spec_path, results, address, log_path = sys.argv[1:5]
    from hidden_core.cluster import node_name
    from hidden_core.tune.ray_setup import start_ray
    from hidden_core.tune.runner import run_sweep
    from ray.tune import Callback

    class LogRecover(Callback):
        def on_trial_recover(self, iteration, trials, trial, **info):
            with open(log_path, "a") as f:
                f.write(json.dumps({"trial_id": trial.config["trial_id"], "node": "driver", "t": time.time(), "event": "recover"}) + "\\n")

    def logged_train(config, run, *, data=None, on_epoch=None):
        import json, time
        from hidden_core.cluster import node_name
        from hidden_core.trial import train

        where = node_name()

        def log(**row):
            with open(log_path, "a") as f:
                f.write(json.dumps({"trial_id": config.trial_id, "node": where, "t": time.time(), **row}) + "\\n")

        def hook(record):
            log(event="epoch", epoch=record.epoch)
            if on_epoch is not None:
                on_epoch(record)

        import os, ray
        resources = ray.get_runtime_context().get_assigned_resources()
        log(event="start", resources=resources, cuda=os.environ.get("CUDA_VISIBLE_DEVICES"), device=run.device)
        # the test cluster's GPU is only advertised: train on the CPU whatever the trial asked
        return train(config, run.model_copy(update={"device": "cpu"}), data=data, on_epoch=hook)

    start_ray(address)
    print("HEAD " + node_name(), flush=True)
    report = run_sweep(spec_path, results, address=address, train_fn=logged_train, callbacks=[LogRecover()])
    print(json.dumps(report.to_dict()), flush=True)
    sys.exit(1 if report.unfinished else 0)
    """
)


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _head_name(driver_output: str) -> str | None:
    return next((line.split()[1] for line in driver_output.splitlines() if line.startswith("HEAD ")), None)


# ------------------------------------------------------------------------------ fractional GPUs
@pytest.mark.slow
def test_fractional_gpu_trials_share_the_gpu_node(cluster: LocalRayCluster, tmp_path: Path):
    """resources {cpu: 0.5, gpu: 0.5}: Tune reserves half the worker's (advertised) GPU per
    trial, so both trials run on the worker at once, on the same device; the head has none."""
    spec = _write_spec(tmp_path, "fracgpu", {"seed": [0, 1], "epochs": [3]}, resources={"cpu": 0.5, "gpu": 0.5})
    results, epoch_log = tmp_path / "results", tmp_path / "epochs.jsonl"
    t0 = time.monotonic()
    r = cluster.run([sys.executable, "-c", LOGGED_DRIVER, str(spec), str(results), cluster.address, str(epoch_log)], timeout=150)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    head = _head_name(r.stdout)
    report = _last_json(r.stdout)
    assert report["concurrency"] == 2 and report["counts"]["completed"] == 2
    frame = _check_store(results, spec, 3)
    starts = [row for row in _read_log(epoch_log) if row["event"] == "start"]
    assert len(starts) == 2, starts
    print(f"\n[fractional GPU] 2 trials in {seconds:.1f} s: " + "; ".join(f"{s['node']} {s['resources']} CUDA_VISIBLE_DEVICES={s['cuda']}" for s in starts))
    assert all(s["device"] == "cuda" for s in starts), "a GPU trial is asked to train on the GPU"
    assert all(s["resources"].get("GPU") == 0.5 and s["resources"].get("CPU") == 0.5 for s in starts)
    gpu_node = {s["node"] for s in starts}
    assert len(gpu_node) == 1 and head not in gpu_node, "both trials on the node with the GPU"
    assert set(frame.node) == gpu_node
    assert starts[0]["cuda"] == starts[1]["cuda"] and starts[0]["cuda"], "both see the same device"
    last_epoch = {row["trial_id"]: row["t"] for row in _read_log(epoch_log) if row["event"] == "epoch"}
    assert max(s["t"] for s in starts) < min(last_epoch.values()), "the two trials shared the GPU at the same time"


@pytest.mark.slow
def test_lost_worker_node_trials_resume_from_checkpoint(cluster: LocalRayCluster, tmp_path: Path):
    # the spec's default max_failures 1 (one retry), a checkpoint every epoch;
    # longer trials, so that the kill lands well before the victim's last epoch
    spec = _write_spec(tmp_path, "workerkill", {"seed": [0, 1, 2, 3], "epochs": [KILL_EPOCHS]}, run={"checkpoint_every_s": 0})
    assert load_spec(spec).max_failures >= 1
    results = tmp_path / "results"
    epoch_log, driver_log = tmp_path / "epochs.jsonl", tmp_path / "driver.log"
    worker_index = _live_worker(cluster)
    t0 = time.monotonic()
    with open(driver_log, "w") as out:
        driver = cluster.popen(
            [sys.executable, "-c", LOGGED_DRIVER, str(spec), str(results), cluster.address, str(epoch_log)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    # wait for a trial on the worker node with a checkpoint and two epochs done
    head = victim = None
    deadline = time.monotonic() + 150
    while victim is None:
        assert driver.poll() is None, f"the driver ended early:\n{driver_log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no trial got going on the worker node:\n{driver_log.read_text()[-4000:]}"
        if head is None:
            head = _head_name(driver_log.read_text())
        checkpointed = _checkpoints(results, "workerkill")
        for row in _read_log(epoch_log):
            if head and row["node"] not in (head, "driver") and row["event"] == "epoch" and 2 <= row["epoch"] <= KILL_EPOCHS - 4 and row["trial_id"] in checkpointed:
                victim = row
        time.sleep(0.1)
    worker = victim["node"]
    # land the kill mid-epoch: about half an epoch after the last one ended
    times = [r["t"] for r in _read_log(epoch_log) if r["trial_id"] == victim["trial_id"] and r["event"] == "epoch"]
    time.sleep(min(1.0, max(0.1, (times[-1] - times[-2]) / 2 if len(times) > 1 else 0.5)))
    t_kill = time.time()
    raylet = cluster.kill_worker_raylet(worker_index)
    killed_after = time.monotonic() - t0
    cluster.workers[worker_index].popen.wait(timeout=30)  # `ray start --block` takes the node down
    node_down_s = time.time() - t_kill
    try:
        driver.wait(timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the sweep did not end after the worker was lost:\n{driver_log.read_text()[-4000:]}")
    output = driver_log.read_text()
    assert driver.returncode == 0, output[-5000:]
    report = _last_json(output)
    assert report["unfinished"] == 0 and report["counts"]["completed"] == 4

    frame = _check_store(results, spec, KILL_EPOCHS)
    rows = _read_log(epoch_log)
    epochs = [r for r in rows if r["event"] == "epoch"]
    on_worker = {r["trial_id"] for r in epochs if r["node"] == worker}
    done_on_worker = {r["trial_id"] for r in epochs if r["node"] == worker and r["epoch"] == KILL_EPOCHS}
    interrupted = sorted(on_worker - done_on_worker)
    assert victim["trial_id"] in interrupted
    measured = []
    for trial_id in interrupted:
        mine = [r for r in rows if r["trial_id"] == trial_id]
        before = [r for r in mine if r["event"] == "epoch" and r["t"] < t_kill]
        # a Ray worker outlives its raylet for a moment (until `ray start` takes the node
        # down) and may finish, and even report and checkpoint, one more epoch
        late = [r for r in mine if r["event"] == "epoch" and r["t"] >= t_kill and r["node"] == worker]
        after = [r for r in mine if r["t"] >= t_kill and r["node"] not in (worker, "driver")]
        recover = next((r for r in mine if r["event"] == "recover"), None)
        assert recover is not None and recover["t"] > t_kill, f"{trial_id}: Tune did not retry it"
        after_epochs = [r for r in after if r["event"] == "epoch"]
        assert after_epochs, f"{trial_id}: never ran again after the worker was lost"
        assert {r["node"] for r in after} == {head}, "the retry ran on the head (the worker is gone)"
        last_before = max([r["epoch"] for r in before + late], default=0)
        resumed_from = min(r["epoch"] for r in after_epochs) - 1
        assert resumed_from >= 1, f"{trial_id}: restarted from scratch, not from its checkpoint"
        assert [r["epoch"] for r in after_epochs] == list(range(resumed_from + 1, KILL_EPOCHS + 1))
        checkpoint_row = next(r for r in before + late if r["epoch"] == resumed_from)
        restart = next(r for r in after if r["event"] == "start")
        others = sorted({r["trial_id"][:8] for r in rows if r["event"] == "start" and r["node"] == head and t_kill <= r["t"] < restart["t"]})
        measured.append({
            "trial_id": trial_id,
            "last_epoch_on_worker": last_before,
            "epochs_on_worker_after_kill": len(late),
            "resumed_from_epoch": resumed_from,
            "epochs_recomputed": sum(1 for r in after_epochs if r["epoch"] <= last_before),
            # computing time thrown away: from the checkpoint resumed to the node going down
            "work_lost_s": round(max(0.0, t_kill + node_down_s - checkpoint_row["t"]), 2),
            "retried_by_tune_after_s": round(recover["t"] - t_kill, 2),
            "restarted_after_s": round(restart["t"] - t_kill, 2),
            "progress_after_s": round(after_epochs[0]["t"] - t_kill, 2),
            "finished_after_s": round(after_epochs[-1]["t"] - t_kill, 2),
            "head_slot_taken_first_by": others,
        })
        assert frame.set_index("trial_id").loc[trial_id, "node"] == head
    result = {
        "killed_after_s": round(killed_after, 1),
        "raylet_pid": raylet,
        "worker_node_down_after_s": round(node_down_s, 2),
        "sweep_wall_s": round(report["wall_seconds"], 1),
        "epochs_per_trial": KILL_EPOCHS,
        "interrupted": measured,
        "epochs_recomputed_total": sum(m["epochs_recomputed"] for m in measured),
    }
    (tmp_path / "worker_kill.json").write_text(json.dumps(result, indent=2))
    print(f"\n[worker kill] {json.dumps(result)}")
