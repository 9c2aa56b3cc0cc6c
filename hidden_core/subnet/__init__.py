"""Found subnetworks as results: what a trial learned in one safetensors file per trial
(fileformat), back into a plain network (state), re-evaluated (evaluate), tested against
controls (controls) and compared across seeds (masks). See docs/subnetworks.md.

Import the parts you need; `hidden_core.subnet.fileformat` alone needs no torch."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "read_subnet_file": "hidden_core.subnet.fileformat",
    "SubnetFile": "hidden_core.subnet.fileformat",
    "SubnetFormatError": "hidden_core.subnet.fileformat",
    "save_subnet": "hidden_core.subnet.state",
    "load_subnetwork": "hidden_core.subnet.state",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hidden_core.subnet' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
