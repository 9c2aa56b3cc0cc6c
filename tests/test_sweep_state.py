"""A sweep's durable state is the store plus trial-keyed checkpoints; real driver processes:

- two drivers started 1 s apart (with RAY_ADDRESS pointing nowhere and a stale Ray address
  file): the second exits 2 at once naming the first; the first runs every trial once on a
  new local Ray;
- the driver SIGKILLed mid-trial at three moments, the same command run again each time:
  interrupted trials resume from their checkpoints (their earlier epoch rows are the
  checkpoint's, not recomputed), every trial stored once with epochs 1..N, nothing left in
  the system temp dir, no Ray process of any of the runs alive;
- a trial's worker SIGKILLed: Tune's retry resumes from the trial's checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from hidden_core import paths
from hidden_core.spec import load_spec
from hidden_core.store import ResultStore
from hidden_core.tune.ray_setup import processes_of

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]




def _spec_file(tmp_path: Path, name: str, seeds: int, epochs: int, **extra) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "base": {"dataset": "mnist1d", "model": "mlp", "width": 4, "epochs": epochs, "optimizer": "adam", "lr": 0.003},
        "grid": {"method": ["dense", "sign_flip"], "seed": list(range(seeds))},
        "report_every_s": 0, "max_concurrent": 2, "run": {"checkpoint_every_s": 0},  # a checkpoint every epoch: kills land between them
        **extra,
    }))
    return path


def _driver(spec: Path, results: Path, ray_root: Path, cwd: Path, **env_extra: str) -> subprocess.Popen:
    env = {**os.environ, "HIDDEN_RAY_TEMP": str(ray_root), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "hidden_core.cli", "sweep", "run", str(spec), "--results", str(results), "--quiet", "--num-cpus", "2", "--json"],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _report(output: str) -> dict:
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def _checkpoint_epochs(results: Path, sweep: str) -> dict[str, list[dict]]:
    from hidden_core.training import checkpoint_history

    out = {}
    folder = results / sweep / "checkpoints"
    for trial in folder.iterdir() if folder.exists() else []:
        try:
            history = checkpoint_history(trial)
        except Exception:  # being replaced right now
            continue
        if history:
            out[trial.name] = history
    return out


def _folders(root: Path) -> list[Path]:
    return list(root.iterdir()) if root.exists() else []


def _hidden_temp_folders(trial_ids: set[str]) -> list[str]:
    return [p for p in os.listdir(tempfile.gettempdir()) if p.startswith("hidden-") and any(t in p for t in trial_ids)]


def test_two_drivers_one_second_apart_and_ray_address_pointing_nowhere(tmp_path: Path, ray_root: Path):
    spec = _spec_file(tmp_path, "twodrivers", seeds=2, epochs=3)
    results = tmp_path / "results"
    stale_tmp = tmp_path / "raytmp"  # Ray's temp dir as the environment names it, with a stale address file
    stale_tmp.mkdir()
    (stale_tmp / "ray_current_cluster").write_text("127.0.0.1:1")
    nowhere = {"RAY_ADDRESS": "127.0.0.1:1", "RAY_TMPDIR": str(stale_tmp)}
    first = _driver(spec, results, ray_root, tmp_path, **nowhere)
    time.sleep(1.0)
    started = time.monotonic()
    second = _driver(spec, results, ray_root, tmp_path, **nowhere)
    second_out, _ = second.communicate(timeout=120)
    second_seconds = time.monotonic() - started
    first_out, _ = first.communicate(timeout=300)
    print(f"second driver exited {second.returncode} after {second_seconds:.1f} s (incl. Python start-up): {second_out.strip()[-400:]}")
    assert first.returncode == 0, first_out[-3000:]
    assert second.returncode == 2, second_out[-3000:]
    assert f"pid {first.pid} on host {socket.gethostname()}" in second_out and str(results) in second_out
    assert "Traceback" not in second_out
    store = ResultStore(results)
    frame = store.load_trials("twodrivers", columns=["trial_id", "status"])
    planned = {t.trial_id for t in load_spec(spec).plan().trials}
    assert sorted(frame.trial_id) == sorted(planned) and (frame.status == "completed").all()
    assert _report(first_out)["counts"]["completed"] == 4
    assert (stale_tmp / "ray_current_cluster").read_text() == "127.0.0.1:1"  # not ours: untouched
    assert sorted(os.listdir(stale_tmp)) == ["ray_current_cluster"]  # nothing of the run went there
    assert not _folders(ray_root)  # the run's Ray temp dir is gone
    assert sorted(p.name for p in (results / "twodrivers").iterdir()) == ["epochs", paths.SWEEP_MARKER, "subnets", "trials"]


def test_driver_killed_three_times_then_rerun(tmp_path: Path, ray_root: Path):
    epochs = 10
    # one cell at a time: with two at once the second cell (same cost) could be at its last
    # epoch when the first ended, leave the third driver nothing to train and end it before
    # its kill (seen once in CI)
    spec_path = _spec_file(tmp_path, "killed", seeds=3, epochs=epochs, max_concurrent=1)
    spec = load_spec(spec_path)
    planned = {t.trial_id for t in spec.plan().trials}
    results = tmp_path / "results"
    store = ResultStore(results)

    def final_count() -> int:
        return len(store.final_trial_ids("killed")) if "killed" in store.sweeps() else 0

    def advanced(ck: dict, start: dict, by: int) -> bool:
        return any(len(h) - len(start.get(t, [])) >= by for t, h in ck.items())

    moments = [  # (what must hold before the kill, description); `start`: the checkpoints when the run began
        (lambda done, ck, start: advanced(ck, start, 2), "two epochs of a first trial checkpointed"),
        (lambda done, ck, start: done >= 1 and advanced(ck, start, 1), "after a trial ended, another in flight"),
        (lambda done, ck, start: any(t in start and len(h) > len(start[t]) for t, h in ck.items()) or advanced(ck, start, 3),
         "a resumed trial one epoch further"),
    ]

    snapshots: dict[str, list[dict]] = {}  # trial -> the checkpoint's epochs seen after a kill
    ray_folders: set[str] = set()
    for condition, what in moments:
        done_before = final_count()
        at_start = _checkpoint_epochs(results, "killed")
        driver = _driver(spec_path, results, ray_root, tmp_path)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                if driver.poll() is not None:
                    pytest.fail(f"the driver ended before the kill ({what}):\n{driver.stdout.read()[-3000:]}")
                ray_folders |= {str(p) for p in _folders(ray_root) if p.name.startswith(f"{driver.pid}-")}
                if condition(final_count() - done_before, _checkpoint_epochs(results, "killed"), at_start):
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"never reached the kill moment: {what}")
            driver.send_signal(signal.SIGKILL)
            driver.wait(30)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.stdout.close()
        time.sleep(1.0)
        for trial, history in _checkpoint_epochs(results, "killed").items():
            if len(history) > len(snapshots.get(trial, [])):
                snapshots[trial] = history
        assert (results / "killed" / "lease.json").exists()  # the dead driver's, taken over by the next

    assert final_count() < len(planned) and snapshots
    rerun = _driver(spec_path, results, ray_root, tmp_path)
    out, _ = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, out[-3000:]
    report = _report(out)
    assert report["unfinished"] == 0 and report["resumed"] >= 1

    frame = store.load_trials("killed", columns=["trial_id", "status", "epochs_run"])
    assert sorted(frame.trial_id) == sorted(planned) and frame.trial_id.is_unique
    assert (frame.status == "completed").all() and (frame.epochs_run == epochs).all()
    rows = store.load_epochs("killed")
    for trial_id, trial_rows in rows.groupby("trial_id"):
        assert list(trial_rows.epoch) == list(range(1, epochs + 1)), trial_id  # no gap, no duplicate
    resumed = 0
    for trial_id, history in snapshots.items():
        stored = rows[rows.trial_id == trial_id].set_index("epoch")
        for epoch_row in history:  # the epochs before a kill were not recomputed: same measured seconds
            assert stored.loc[epoch_row["epoch"], "seconds"] == epoch_row["seconds"], (trial_id, epoch_row["epoch"])
        resumed += 1
    print(f"{resumed} interrupted trials resumed from checkpoints holding {sorted(len(h) for h in snapshots.values())} epochs")

    assert not (results / "killed" / "checkpoints").exists() and not (results / "killed" / "lease.json").exists()
    assert not _hidden_temp_folders(planned)
    assert ray_folders and not any(Path(f).exists() for f in ray_folders)  # the killed runs' Ray temp dirs: cleaned
    alive = {f: processes_of(f) for f in ray_folders}
    assert not any(alive.values()), f"Ray processes of the killed runs still alive: {alive}"


def test_a_killed_worker_is_retried_from_the_trials_checkpoint(tmp_path: Path, ray_root: Path):
    spec_path = tmp_path / "workerkill.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "workerkill",
        "base": {"dataset": "mnist1d", "model": "mlp", "width": 4, "epochs": 12, "optimizer": "adam", "lr": 0.003, "method": "dense"},
        "grid": {"seed": [0]}, "report_every_s": 0, "max_failures": 2, "run": {"checkpoint_every_s": 0},
    }))
    results = tmp_path / "results"
    driver = _driver(spec_path, results, ray_root, tmp_path)
    try:
        deadline = time.monotonic() + 240
        worker = None
        while time.monotonic() < deadline and worker is None:
            if driver.poll() is not None:
                pytest.fail(f"the driver ended before the kill:\n{driver.stdout.read()[-3000:]}")
            ckpt = _checkpoint_epochs(results, "workerkill")
            if any(len(h) >= 3 for h in ckpt.values()):
                for folder in _folders(ray_root):
                    for pid in processes_of(str(folder)):
                        try:
                            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                        except OSError:
                            continue
                        if title.startswith("ray::ImplicitFunc"):
                            worker = pid
            time.sleep(0.1)
        assert worker is not None, "no trial worker found"
        snapshot = next(iter(_checkpoint_epochs(results, "workerkill").values()))
        os.kill(worker, signal.SIGKILL)
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-3000:]
    report = _report(out)
    assert report["counts"]["completed"] == 1 and report["resumed"] == 1, report
    store = ResultStore(results)
    rows = store.load_epochs("workerkill").set_index("epoch")
    assert list(rows.index) == list(range(1, 13))
    for epoch_row in snapshot:
        assert rows.loc[epoch_row["epoch"], "seconds"] == epoch_row["seconds"]
    print(f"worker {worker} killed after epoch {len(snapshot)}; the retry resumed from the checkpoint")
