"""hidden_core/store/schema.py: the trials table's metric columns come from one declaration
(records.METRIC_FIELDS / METRIC_TYPES) that training.TrialResult agrees with."""

from __future__ import annotations

import dataclasses
import typing

import pyarrow as pa

from hidden_core.records import METRIC_FIELDS, METRIC_TYPES
from hidden_core.store import TRIAL_SCHEMA
from hidden_core.store.schema import _arrow_type

# TrialResult fields stored under columns of their own kind, not as metrics
NOT_METRICS = {"status", "device", "history"}


def _result_types() -> dict[str, typing.Any]:
    from hidden_core.training import TrialResult

    hints = typing.get_type_hints(TrialResult)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrialResult) if f.name not in NOT_METRICS}


def test_every_metric_has_a_type_in_the_order_of_its_fields():
    assert tuple(METRIC_TYPES) == METRIC_FIELDS
    assert set(METRIC_TYPES.values()) <= {float, int, str}


def test_trial_result_and_the_schema_hold_the_same_metrics_with_the_same_types():
    result = _result_types()
    assert set(result) == set(METRIC_FIELDS), "a TrialResult field without a store column, or a column TrialResult does not fill"
    for name in METRIC_FIELDS:
        assert TRIAL_SCHEMA.field(name).type == _arrow_type(result[name]) == _arrow_type(METRIC_TYPES[name]), name


def test_the_metric_columns_sit_together_between_the_config_and_the_run_info():
    names = TRIAL_SCHEMA.names
    start = names.index(METRIC_FIELDS[0])
    assert tuple(names[start:start + len(METRIC_FIELDS)]) == METRIC_FIELDS
    assert names[start + len(METRIC_FIELDS)] == "device"
    assert TRIAL_SCHEMA.field("epochs_run").type == pa.int64() and TRIAL_SCHEMA.field("health_flags").type == pa.string()
