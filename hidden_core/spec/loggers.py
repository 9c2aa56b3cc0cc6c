"""The spec's `loggers:` key: which experiment trackers a sweep may name, the options each
takes and the package each needs. Checked here with the rest of the spec (no Ray, no tracker
package imported); hidden_core/tune/trackers.py wires them to Ray Tune's logger callbacks."""

from __future__ import annotations

from typing import Any

# tracker -> (options it takes, the modules it needs, the extra that installs them)
TRACKERS: dict[str, tuple[frozenset[str], tuple[str, ...], str]] = {
    "mlflow": (frozenset({"tracking_uri", "experiment"}), ("mlflow",), "mlflow"),
    "tensorboard": (frozenset({"dir"}), ("tensorboardX",), "tensorboard"),
    "wandb": (frozenset({"project", "entity", "group", "mode", "dir"}), ("wandb",), "wandb"),
}
WANDB_MODES = ("online", "offline", "disabled")


def normalize_loggers(value: Any) -> dict[str, dict[str, Any]]:
    """The spec's `loggers:` value (a list of names, or a mapping name -> options) as a
    mapping; raises ValueError naming the tracker or option that is wrong."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"a list of tracker names ({', '.join(TRACKERS)}) or a mapping name -> options; got {value!r}")
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise ValueError(f"a list of tracker names ({', '.join(TRACKERS)}) or a mapping name -> options; got {value!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, options in value.items():
        if name not in TRACKERS:
            raise ValueError(f"{name!r} is not a tracker; allowed: {', '.join(TRACKERS)}")
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise ValueError(f"{name}: options must be a mapping ({', '.join(sorted(TRACKERS[name][0]))}); got {options!r}")
        unknown = set(options) - TRACKERS[name][0]
        if unknown:
            raise ValueError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(TRACKERS[name][0]))}")
        bad = [k for k, v in options.items() if not isinstance(v, str) or not v]
        if bad:
            raise ValueError(f"{name}.{bad[0]}: must be a non-empty string; got {options[bad[0]]!r}")
        if name == "wandb" and options.get("mode", "online") not in WANDB_MODES:
            raise ValueError(f"wandb.mode: {options['mode']!r} is not one of {', '.join(WANDB_MODES)}")
        out[name] = dict(options)
    return out
