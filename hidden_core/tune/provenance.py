"""Which code produced a trial row: hidden's version, the git commit of the checkout it runs
from, Ray's version (torch's comes from the worker that trained it)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str | None:
    """Commit of the checkout hidden_core runs from (with '-dirty' for local changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, str | None]:
    import ray

    import hidden_core

    return {"hidden_version": hidden_core.__version__, "git_commit": git_commit(), "ray_version": ray.__version__}
