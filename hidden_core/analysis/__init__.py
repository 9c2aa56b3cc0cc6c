"""Results analysis: summaries, scaling-law fits with measured-coverage intervals, plots, reports.

Sub-modules load on first use, so `hidden results list` does not pay for scipy and
matplotlib. Neither torch nor Ray is ever imported here.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "saturating_power_law": "fits", "fit_power_law": "fits", "fit_many": "fits", "TEST_METRIC": "metrics", "FINAL_TEST_METRIC": "metrics", "metric_label": "metrics", "PowerLawFit": "fits", "error_crossing": "fits",
    "analyze_scaling": "scaling", "ScalingAnalysis": "scaling", "select_points": "scaling",
    "summarize": "tables", "best_per_group": "tables", "format_table": "tables",
    "extrapolation_check": "scaling", "plot_accuracy_vs_x": "plots", "plot_gap_vs_x": "plots", "plot_accuracy_vs_keep_fraction": "plots", "save_figure": "plots",
    "write_scaling_report": "report",
    "unhealthy_cells": "health", "worsening_baselines": "health",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
