"""The reports between a trial (trainable.py, or a vectorized cell: cells.py) and the driver
(driver_state.py, pruning.py, trackers.py): the one place that writes and reads them.

A report is what the trainable hands to ``tune.report``: a flat mapping of three fields,

- ``kind``: one of records.REPORT_KINDS;
- ``val_acc`` (records.SELECTION_METRIC), which Tune wants in every report;
- ``payload``: everything else, as one JSON object (text).

Everything else travels inside the payload because Tune keeps, for every trial of the run
until the run ends, a running analysis (max, min, mean, last-5 and last-10 means) of every
numeric field of every result it is handed (ray/tune/trainable/metadata.py): with the
payload's thirty-odd numbers at the top level that was about 60 KB a trial, the driver's
memory growing with the sweep. No consumer reads a report's fields from Tune: they all go
through `decode`. Inside the payload:

- the run's fields (records.RUN_INFO_FIELDS, ``resumed_from``, ``threads``);
- one trial's epoch rows (training.EpochRecord.to_dict()): ``epochs`` (an epoch report:
  every epoch not reported yet, the latest one also spread among the fields) or
  ``history`` (a final or failed report: every epoch), and a final report its
  TrialResult's fields, a failed one its ``error``;
- or a vectorized cell's ``seeds``: per seed's trial_id its entry (its epochs since the
  last report, ``started_at``, ``resumed_from``, and at the end its own ``kind`` with its
  result, its ``status`` or its ``error``);
- a final report (a seed's final entry) may carry ``controls``: its subnetwork scored
  against its controls in the trial's worker (controls_entry: the rows, the device, or the
  problem that stopped it; controls_pass.score_in_worker).

`decode` checks what it reads: a report whose kind is unknown or whose JSON is not what a
report carries raises ReportError naming the field (a driver and workers running different
versions of hidden, say), instead of a KeyError deep in the driver. Imports neither Ray nor
torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hidden_core.records import (
    EPOCH,
    REPORT_EPOCH,
    REPORT_FAILED,
    REPORT_FINAL,
    REPORT_KINDS,
    SELECTION_METRIC,
)

# The report's own fields (the rest are metrics and run information).
KIND = "kind"
EPOCHS = "epochs"  # an epoch report's (and a cell seed's) epoch rows not reported yet
HISTORY = "history"  # a final or failed report's epoch rows, all of them
SEEDS = "seeds"  # a vectorized cell's per-seed entries, by trial_id
PAYLOAD = "payload"  # every field but the kind and the selection metric, as one JSON object
ERROR = "error"  # a failed report's error text
STATUS = "status"  # a final report's trial status (records.STATUSES)
CONTROLS = "controls"  # a final report's (a cell seed's) controls scored in the trial's worker: controls_entry
_ENDINGS = (REPORT_FINAL, REPORT_FAILED)


class ReportError(ValueError):
    """A report the driver cannot read."""


@dataclass(frozen=True)
class SeedEntry:
    """One seed's part of a vectorized cell's report."""

    trial_id: str
    rows: tuple[dict[str, Any], ...]  # its epoch rows since the last report (at the end: all of them)
    fields: dict[str, Any]  # the rest: started_at, resumed_from; at the end kind, status, metrics or error

    @property
    def kind(self) -> str | None:
        """REPORT_FINAL or REPORT_FAILED when the seed ended in this report, else None."""
        return self.fields.get(KIND)


@dataclass(frozen=True)
class Report:
    """A decoded report. `fields`: the report's fields (the payload's among them), less its
    epoch rows and seeds."""

    kind: str
    fields: dict[str, Any]
    rows: tuple[dict[str, Any], ...] = ()  # one trial's epoch rows: `epochs` or `history`
    seeds: dict[str, SeedEntry] = field(default_factory=dict)  # a vectorized cell's entries

    @property
    def ended(self) -> bool:
        return self.kind in _ENDINGS

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


# ---- encode (the trainable's side) ----------------------------------------------------------
def epoch_report(row: Mapping[str, Any], unreported: Sequence[Mapping[str, Any]], common: Mapping[str, Any]) -> dict[str, Any]:
    """One trial's epoch report: the latest epoch's `row`, every epoch not reported yet
    (`unreported`, `row` among them) and the run's fields `common`."""
    return _report(REPORT_EPOCH, row.get(SELECTION_METRIC), {**row, EPOCHS: list(unreported), **common})


def final_report(summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]], common: Mapping[str, Any]) -> dict[str, Any]:
    """One trial's final report: its TrialResult's fields `summary`, its whole `history`;
    the device the result names wins over the run option's."""
    fields = {**summary, HISTORY: list(history), **common, "device": summary.get("device") or common.get("device")}
    return _report(REPORT_FINAL, summary.get(SELECTION_METRIC), fields)


def failed_report(error: str, history: Sequence[Mapping[str, Any]], common: Mapping[str, Any]) -> dict[str, Any]:
    """One trial's failed report: the error text and the epochs it ran."""
    last = history[-1].get(SELECTION_METRIC) if history else None
    value = float("nan") if last is None else last  # Tune wants the metric in every report
    return _report(REPORT_FAILED, value, {ERROR: error, HISTORY: list(history), **common})


def seed_entry(epochs: Sequence[Mapping[str, Any]], **fields: Any) -> dict[str, Any]:
    """One seed's entry of a cell report: its epoch rows and its fields (started_at,
    resumed_from; at its end kind=REPORT_FINAL with its result or status, or
    kind=REPORT_FAILED with its error)."""
    return {**fields, EPOCHS: list(epochs)}


def controls_entry(rows: Sequence[Mapping[str, Any]], device: str, problem: str | None, seconds: float) -> dict[str, Any]:
    """A trial's controls scored in its worker: its control rows (control, draw, val_acc,
    test_acc), the device they were computed on, or the problem that stopped them, and the
    seconds the scoring took."""
    return {"rows": [dict(r) for r in rows], "device": device, "problem": problem, "seconds": float(seconds)}


def controls_in(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The controls_entry a final report's (or a seed entry's) fields carry, checked; None
    when it carries none (the controls pass after the trials scores that trial)."""
    entry = fields.get(CONTROLS)
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("rows"), list) or not isinstance(entry.get("device"), str) \
            or not all(isinstance(r, dict) for r in entry["rows"]) or not isinstance(entry.get("problem"), str | None) \
            or not isinstance(entry.get("seconds"), int | float):
        raise ReportError(f"report {CONTROLS}: expected {{rows: [objects], device: text, problem: text or null, seconds: number}}, "
                          f"got {entry!r:.200}")
    return entry


def cell_report(kind: str, seeds: Mapping[str, Mapping[str, Any]], value: float, common: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A vectorized cell's report: `seeds` (trial_id -> seed_entry), the best of its seeds'
    val_acc as the report's `value`, `extra` (the epoch of an epoch report, the error of a
    failed one, the status of a final one)."""
    _check_kind(kind)
    return _report(kind, value, {**extra, SEEDS: dict(seeds), **common})


def _report(kind: str, value: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    """What Tune is handed: the kind, the selection metric and one JSON payload (the
    module's docstring says why)."""
    payload = {k: v for k, v in fields.items() if k not in (KIND, SELECTION_METRIC)}
    return {KIND: kind, SELECTION_METRIC: value, PAYLOAD: json.dumps(payload, default=_plain)}


def _plain(value: Any) -> Any:
    """A numpy or torch scalar (what a metric may be) as the Python number it holds."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"a report field of type {type(value).__name__} is not JSON: report plain numbers and text")


# ---- decode (the driver's side) -------------------------------------------------------------
def decode(result: Mapping[str, Any]) -> Report | None:
    """The report in a Tune result, or None for a result without a kind (none of ours: Tune
    sends a trial's last result again when its function returns). Raises ReportError for a
    report it cannot read."""
    if not isinstance(result, Mapping):
        raise ReportError(f"a report is a mapping of fields; got {type(result).__name__}")
    if KIND not in result:
        return None
    kind = _check_kind(result[KIND])
    if PAYLOAD in result:
        result = {**_loads(result, PAYLOAD, dict, "a JSON object of the report's fields"),
                  **{k: v for k, v in result.items() if k != PAYLOAD}}
    fields = {k: v for k, v in result.items() if k not in (EPOCHS, HISTORY, SEEDS)}
    if SEEDS in result:
        raw = _loads(result, SEEDS, dict, "a JSON object trial_id -> entry")
        seeds = {trial_id: _seed(trial_id, entry) for trial_id, entry in raw.items()}
        return Report(kind, fields, (), seeds)
    payload = EPOCHS if kind == REPORT_EPOCH else HISTORY
    rows = _rows(_loads(result, payload, list, "a JSON list of epoch rows") if payload in result else [], f"{payload}")
    return Report(kind, fields, rows)


def _check_kind(kind: Any) -> str:
    if kind not in REPORT_KINDS:
        raise ReportError(f"report {KIND}: {kind!r} is not one of {', '.join(REPORT_KINDS)} (hidden_core/tune/report_codec.py)")
    return kind


def _loads(result: Mapping[str, Any], key: str, expected: type, what: str) -> Any:
    raw = result.get(key)
    if raw is None:
        return expected()
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except ValueError as err:
        raise ReportError(f"report {key}: not valid JSON ({err}); expected {what}") from None
    if not isinstance(value, expected):
        raise ReportError(f"report {key}: expected {what}, got {type(value).__name__}")
    return value


def _rows(rows: list[Any], where: str) -> tuple[dict[str, Any], ...]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ReportError(f"report {where}[{i}]: an epoch row is a JSON object, got {type(row).__name__}")
        epoch = row.get(EPOCH)
        if isinstance(epoch, bool) or not isinstance(epoch, int | float) or not math.isfinite(epoch) or epoch != int(epoch):
            raise ReportError(f"report {where}[{i}].{EPOCH}: an epoch row needs a whole epoch number, got {epoch!r}")
    return tuple(rows)


def _seed(trial_id: str, entry: Any) -> SeedEntry:
    where = f"{SEEDS}[{trial_id}]"
    if not isinstance(entry, dict):
        raise ReportError(f"report {where}: a seed's entry is a JSON object, got {type(entry).__name__}")
    epochs = entry.get(EPOCHS, [])
    if not isinstance(epochs, list):
        raise ReportError(f"report {where}.{EPOCHS}: expected a list of epoch rows, got {type(epochs).__name__}")
    kind = entry.get(KIND)
    if kind is not None and kind not in _ENDINGS:
        raise ReportError(f"report {where}.{KIND}: {kind!r} is not one of {', '.join(_ENDINGS)}")
    return SeedEntry(trial_id, _rows(epochs, f"{where}.{EPOCHS}"), {k: v for k, v in entry.items() if k != EPOCHS})
