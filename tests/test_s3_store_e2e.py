"""Every command on an s3:// store, against a real S3 API (moto's server on 127.0.0.1,
started by the test; tests/s3_server.py): a tiny sweep whose driver is SIGKILLed mid-run,
the same command again (its dead lease taken over at once, an exact resume), then `subnet
export` (by id and --best) and `subnet eval` reproducing the stored accuracy, `subnet
masks`, `sweep status`, `results list/show/compact`, `analyze curves` and `results delete`
(issue 24, points 1 and 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.s3_server import s3_server  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]




def _env(s3, ray_root: Path) -> dict[str, str]:
    return {**os.environ, **s3.env, "HIDDEN_RAY_TEMP": str(ray_root),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _hidden(capsys, *argv: str) -> str:
    """One command in this process (the fixture set the AWS_* variables here too): the
    sweep runs are subprocesses, the rest would spend most of the test importing torch."""
    from hidden_core.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, f"hidden {' '.join(argv)} exited {code}:\n{out[-2000:]}\n{err[-3000:]}"
    return out


def _keys(s3, url: str) -> list[str]:
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    keys = (o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", []))
    return sorted(k for k in keys if k and not k.endswith("/"))  # not pyarrow's empty folder markers


def test_sweep_killed_resumed_exported_analyzed_deleted_on_s3(s3_server, tmp_path, ray_root, capsys, monkeypatch):  # noqa: F811
    from hidden_core.store import ResultStore

    results = s3_server.bucket("e2e") + "/results"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "s3sweep",
        "base": {"dataset": "mnist1d", "model": "mlp", "width": 0.25, "epochs": 2, "optimizer": "adam", "lr": 0.01},
        "grid": {"method": ["edge_popup"], "keep_fraction": [0.5], "seed": [0, 1]},
        "report_every_s": 0, "max_concurrent": 1, "run": {"checkpoint_every_s": 0},
    }))
    env = _env(s3_server, ray_root)
    run = [sys.executable, "-m", "hidden_core.cli", "sweep", "run", str(spec), "--results", results, "--quiet", "--num-cpus", "2", "--json"]

    # 1. the driver SIGKILLed mid-run: once it holds the lease and has written a trial. The two
    # seeds are one vectorized cell, so both rows come together and the kill may land after
    # them (while the driver stops Ray, before its release): then the re-run has nothing to
    # run and must still clear the dead lease (tests/test_lease_release.py, deterministically).
    # The deadline only catches a hang: a loaded 2-core machine took 93 s to the first row.
    driver = subprocess.Popen(run, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not any(k.startswith("s3sweep/trials/") for k in _keys(s3_server, results)):
        assert driver.poll() is None, driver.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no trial row within 90 s"
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert "s3sweep/lease.json" in _keys(s3_server, results)  # the dead driver's lease is left

    # 2. the same command: the lease is taken over at once (no spin, no 'racing'), exact resume
    started = time.monotonic()
    again = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert output.count("taking over the lease") == 1 and "racing" not in output, output[-3000:]
    print(f"re-run after SIGKILL: {time.monotonic() - started:.1f} s")
    store = ResultStore(results)
    frame = store.load_trials("s3sweep")
    assert len(frame) == 2 and frame.trial_id.is_unique and (frame.status == "completed").all()
    keys = _keys(s3_server, results)
    for trial_id in frame.trial_id:
        assert f"s3sweep/subnets/{trial_id}.safetensors" in keys
    assert "s3sweep/lease.json" not in keys and not any("/checkpoints/" in k for k in keys)

    # 3. every command on the s3:// store
    monkeypatch.chdir(tmp_path)
    status = _hidden(capsys, "sweep", "status", str(spec), "--results", results)
    assert "= 2 final" in status and "+ 0 still to run" in status
    listed = _hidden(capsys, "results", "list", "--results", results, "--format", "json")
    assert json.loads(listed)[0]["trials"] == 2
    best_id = frame.sort_values("val_acc", kind="stable").trial_id.iloc[-1]
    one = frame.trial_id.iloc[0]
    _hidden(capsys, "subnet", "export", "s3sweep", one, "-o", str(tmp_path / "one.safetensors"), "--results", results)
    best = _hidden(capsys, "subnet", "export", "s3sweep", "--best", "-o", str(tmp_path / "best.safetensors"), "--results", results)
    assert f"exported trial {best_id}" in best
    evaluated = json.loads(_hidden(capsys, "subnet", "eval", str(tmp_path / "one.safetensors"), "--json"))
    assert evaluated["matches_stored"] is True
    row = frame.set_index("trial_id").loc[one]
    assert (evaluated["val_acc"], evaluated["test_acc"]) == (row.val_acc, row.test_acc)
    remote = json.loads(_hidden(capsys, "subnet", "eval", f"{results}/s3sweep/subnets/{one}.safetensors", "--json"))  # by URL
    assert remote["matches_stored"] is True and remote["test_acc"] == row.test_acc
    masks = _hidden(capsys, "subnet", "masks", "s3sweep", "--results", results, "--format", "json", "--plot", str(tmp_path / "m.png"))
    assert json.loads(masks) and (tmp_path / "m.png").exists()
    compacted = _hidden(capsys, "results", "compact", "s3sweep", "--results", results)
    assert "compacted s3sweep" in compacted
    assert store.load_trials("s3sweep")[["trial_id", "val_acc"]].sort_values("trial_id").equals(frame[["trial_id", "val_acc"]].sort_values("trial_id"))
    _hidden(capsys, "analyze", "curves", "s3sweep", "--results", results, "--out", str(tmp_path / "curves"))
    assert any(p.suffix == ".csv" for p in (tmp_path / "curves").iterdir())
    _hidden(capsys, "results", "delete", "s3sweep", "--yes", "--results", results)
    assert _keys(s3_server, results) == []
