"""SIGINT and SIGTERM end a sweep with one line saying what finished and how to resume
(the same command), exit 130 / 143, no Ray or Tune hint, and a clean state: lease
released, the embedded Ray's temp dir gone (issue 24, point 7). One small sweep: the
SIGTERM'd run is resumed and then SIGINT'd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]




def _interrupted(command: list[str], env: dict, cwd: Path, results: Path, signum: int, rows: int) -> tuple[int, str]:
    """Run the driver until `rows` trial rows are in the store, then send it `signum`."""
    driver = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)  # its own session: SIGINT is not ignored as in a background job
    trials = results / "sigs" / "trials"
    deadline = time.monotonic() + 120
    while len(list(trials.glob("*.parquet")) if trials.is_dir() else []) < rows:
        assert driver.poll() is None, driver.communicate()[0][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(driver.pid, signum)
    out, _ = driver.communicate(timeout=120)
    return driver.returncode, out


def test_sigterm_then_sigint_end_the_sweep_with_one_line_and_a_clean_state(tmp_path, ray_root):
    spec = tmp_path / "sigs.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "sigs",
        "base": {"dataset": "mnist1d", "model": "mlp", "width": 0.25, "epochs": 150, "optimizer": "adam", "lr": 0.01},
        "grid": {"method": ["edge_popup"], "keep_fraction": [0.3, 0.5, 0.7], "seed": [0]},  # 3 cells: 3 Tune trials, one at a time
        "report_every_s": 0, "max_concurrent": 1,
    }))
    results = tmp_path / "results"
    env = {**os.environ, "HIDDEN_RAY_TEMP": str(ray_root), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "hidden_core.cli", "sweep", "run", str(spec), "--results", str(results), "--quiet", "--num-cpus", "2"]
    again = f"run the same command again to resume: hidden sweep run {spec} --results {results}"
    for signum, code, rows in ((signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 2)):
        rc, out = _interrupted(command, env, tmp_path, results, signum, rows)
        print(out[-1500:])
        assert rc == code, out[-3000:]
        lines = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and f"interrupted by {signal.Signals(signum).name}" in lines[0] and again in lines[0], out[-3000:]
        assert f"{rows} of 3 trials are final in the store" in lines[0] or f"{rows + 1} of 3 trials are final" in lines[0]
        assert "Tuner.restore" not in out and "Traceback" not in out and "SIGABRT" not in out and "Exception ignored" not in out
        assert not (results / "sigs" / "lease.json").exists()
        assert not ray_root.exists() or list(ray_root.iterdir()) == []  # the run's Ray temp dir is gone
