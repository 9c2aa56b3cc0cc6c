"""Which code produced a trial row: hidden's version, the git commit of the checkout it runs
from (hidden_core/provenance.py, re-exported here), Ray's version (torch's comes from the
worker that trained it)."""

from __future__ import annotations

from hidden_core.provenance import git_commit


def provenance() -> dict[str, str | None]:
    import ray

    import hidden_core

    return {"hidden_version": hidden_core.__version__, "git_commit": git_commit(), "ray_version": ray.__version__}
