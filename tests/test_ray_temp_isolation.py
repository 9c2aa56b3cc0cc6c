"""Per-user isolation of the embedded Ray's temp dirs (issue 24, point 8): a run cleans
only the leftovers of its own user's runs whose driver is dead; another user's folder (a
dead pid to us) and another user's process naming our folder are left alone. Needs root
(to own files and run a process as another user)."""

from __future__ import annotations

import os
import stat
import subprocess
import time

import pytest

from hidden_core.tune.ray_setup import EmbeddedRay, clean_stale

OTHER_UID = 54321


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.geteuid() != 0, reason="making files and processes of another user needs root")
def test_a_run_cleans_only_its_own_users_dead_leftovers(tmp_path):
    root = tmp_path / "ray"
    root.mkdir()
    mine = root / f"{_dead_pid()}-aaaaaa"
    mine.mkdir()
    (mine / "session_x").write_text("left by a SIGKILLed driver of mine")
    theirs = root / f"{_dead_pid()}-bbbbbb"
    theirs.mkdir()
    (theirs / "sockets").write_text("another user's live run (its pid is in another namespace)")
    os.chown(theirs, OTHER_UID, OTHER_UID)
    # a process of the other user that names my dead folder (its RAY_TMPDIR)
    other = subprocess.Popen(["sleep", "30"], user=OTHER_UID, env={"RAY_TMPDIR": str(mine)})  # names my folder, not mine to end
    try:
        time.sleep(0.2)
        assert clean_stale(root) == 1
        assert not mine.exists()
        assert theirs.is_dir() and (theirs / "sockets").exists()
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()


def test_the_run_folder_is_private(tmp_path, monkeypatch):
    embedded = EmbeddedRay(root=tmp_path / "ray")
    monkeypatch.setattr("ray.init", lambda **kwargs: None)
    monkeypatch.setattr("ray.shutdown", lambda: None)
    embedded.start()
    try:
        assert stat.S_IMODE(os.stat(embedded.folder).st_mode) == 0o700
    finally:
        embedded.stop()
