"""The names of the metrics the analysis reads, defined once.

The test metric is the test accuracy at the epoch of best validation accuracy: selected on
validation, reported on test. The final epoch's test accuracy is an explicit option only,
always labelled as such. hidden_core/records.py owns the store's column vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from hidden_core.records import BEST_VAL_ACC, TEST_ACC, TEST_METRIC, TRAIN_ACC, VAL_ACC

FINAL_TEST_METRIC = TEST_ACC
# the column a search picks on when several settings were tried for one point: the
# validation accuracy of the same epoch the test metric was read at
SELECTED_BY = {TEST_METRIC: BEST_VAL_ACC, FINAL_TEST_METRIC: VAL_ACC}
METRIC_LABELS = {
    TEST_METRIC: "test accuracy at the best-validation epoch",
    FINAL_TEST_METRIC: "test accuracy at the final epoch",
    BEST_VAL_ACC: "best validation accuracy",
    VAL_ACC: "validation accuracy at the final epoch",
    TRAIN_ACC: "training accuracy at the final epoch",
}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def selection_column(metric: str) -> str:
    return SELECTED_BY.get(metric, BEST_VAL_ACC)


def best_by_validation(rows: pd.DataFrame, keys: Sequence[str], select_by: str) -> pd.DataFrame:
    """The selection rule of every analysis: where a search tried several settings for one
    point (one row per trial at the same `keys`, e.g. group, x and seed), keep the row with
    the highest `select_by` (a validation accuracy; the test metric is then read from that
    row). Ties keep the earlier row; rows without a `select_by` value come last."""
    return rows.sort_values(select_by, ascending=False, na_position="last", kind="stable").drop_duplicates(list(keys))


def chance_accuracy(num_classes: float) -> float:
    return 1.0 / num_classes if num_classes and not math.isnan(num_classes) else math.nan
