"""hidden: sweeps over untrained subnetworks.

The public surface is re-exported lazily, so `import hidden_core.store` (or the analysis)
on a laptop with only pandas never imports torch or Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "TrialConfig": "hidden_core.config",
    "RunOptions": "hidden_core.config",
    "ConfigError": "hidden_core.errors",
    "make_config": "hidden_core.config",
    "build_model": "hidden_core.methods",
    "train": "hidden_core.trial",
    "TrialResult": "hidden_core.training",
    "EpochRecord": "hidden_core.training",
    "load_data": "hidden_core.data",
    "load_subnetwork": "hidden_core.subnet.state",
}

if TYPE_CHECKING:
    from hidden_core.config import RunOptions, TrialConfig, make_config
    from hidden_core.data import load_data
    from hidden_core.errors import ConfigError
    from hidden_core.methods import build_model
    from hidden_core.subnet.state import load_subnetwork
    from hidden_core.training import EpochRecord, TrialResult
    from hidden_core.trial import train


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hidden_core' has no attribute {name!r}")


__all__ = ["ConfigError", "EpochRecord", "RunOptions", "TrialConfig", "TrialResult", "build_model", "load_data", "load_subnetwork", "make_config", "train"]
