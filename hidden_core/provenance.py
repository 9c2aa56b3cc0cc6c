"""Which code produced a result: the git commit of the checkout hidden_core runs from.
Imports nothing of the project (no Ray, no torch): trial rows (tune/provenance.py) and subnet
files (subnet/state.py) both record it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str | None:
    """Commit of the checkout hidden_core runs from (with '-dirty' for local changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
