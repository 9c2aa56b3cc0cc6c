"""Does a spec's per-trial `resources:` fit the cluster it is about to run on? (The driver
asks once Ray is up, with each alive node's totals; no trial could ever start otherwise.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hidden_core.config import ConfigError
from hidden_core.spec.model import SweepSpec


def check_resources(spec: SweepSpec, nodes: Sequence[Mapping[str, float]], where: str = "the largest node", hint: str = "add a node that has them") -> None:
    """Raise ConfigError when no node of the cluster can ever hold one trial.

    `nodes`: each alive node's total resources ({'CPU': 16, 'GPU': 1, ...}); `where` names
    them in the message and `hint` says where else the trials could run."""
    if not nodes:
        raise ConfigError(["resources: the cluster has no alive nodes"])
    need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    if any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in need.items() if v > 0) for node in nodes):
        return
    problems = []
    for key, path in (("CPU", "resources.cpu"), ("GPU", "resources.gpu")):
        most = max(node.get(key, 0.0) for node in nodes)
        if need[key] > most + 1e-9:
            what = f"{key}s" if need[key] != 1 else key
            problems.append(
                f"{path}: {need[key]:g} {what} per trial, but {where} has {most:g}; "
                f"no trial could ever start (lower it, or {hint})"
            )
    if not problems:
        problems.append(f"resources: no single node has both {need['CPU']:g} CPUs and {need['GPU']:g} GPUs")
    raise ConfigError(problems)
