"""The reports between the trainable and the driver (hidden_core/tune/report_codec.py): what a
producer writes, every consumer reads back the same; a malformed report is a clear error."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hidden_core.records import (
    COMPLETED,
    PRUNED,
    REPORT_EPOCH,
    REPORT_FAILED,
    REPORT_FINAL,
    SELECTION_METRIC,
)
from hidden_core.tune import report_codec
from hidden_core.tune.report_codec import (
    ReportError,
    cell_report,
    decode,
    epoch_report,
    failed_report,
    final_report,
    seed_entry,
)

ROOT = Path(__file__).resolve().parents[1]
COMMON = {"node": "n1", "device": "cpu", "torch_version": "2.x", "threads": 1, "resumed_from": 0, "started_at": 1.5}


def _row(epoch: int, val: float = 0.5) -> dict:
    return {"epoch": epoch, "train_loss": 1.0, "train_acc": 0.4, "val_acc": val, "test_acc": val - 0.01, "lr": 0.1, "seconds": 0.2,
            "level": None, "branch": None, "level_epoch": None, "density": None}


def test_one_trials_reports_round_trip():
    rows = [_row(1, 0.3), _row(2, 0.4)]
    report = decode(epoch_report(rows[-1], rows, COMMON))
    assert report.kind == REPORT_EPOCH and not report.ended
    assert list(report.rows) == rows and report.get("epoch") == 2 and report.get(SELECTION_METRIC) == 0.4
    assert {k: report.get(k) for k in COMMON} == COMMON and report.seeds == {}

    summary = {"status": COMPLETED, "epochs_run": 2, "best_val_acc": 0.4, "device": "cuda:0"}
    report = decode(final_report(summary, rows, COMMON))
    assert report.kind == REPORT_FINAL and report.ended and list(report.rows) == rows
    assert report.get("best_val_acc") == 0.4 and report.get("device") == "cuda:0"  # the result's device wins
    assert report_codec.HISTORY not in report.fields  # the payload is decoded once, not kept as text

    report = decode(failed_report("ValueError: boom", rows, COMMON))
    assert report.kind == REPORT_FAILED and report.get(report_codec.ERROR) == "ValueError: boom"
    assert report.get(SELECTION_METRIC) == 0.4 and list(report.rows) == rows
    assert math.isnan(decode(failed_report("x", [], COMMON)).get(SELECTION_METRIC))  # Tune wants the metric


def test_a_cells_reports_round_trip():
    a, b = [_row(1, 0.3)], [_row(1, 0.2), _row(2, 0.25)]
    seeds = {"t-a": seed_entry(a, started_at=1.0, resumed_from=0),
             "t-b": seed_entry(b, started_at=2.0, resumed_from=1, kind=REPORT_FINAL, status=PRUNED)}
    report = decode(cell_report(REPORT_FINAL, seeds, 0.3, COMMON, status=COMPLETED))
    assert report.kind == REPORT_FINAL and report.rows == () and report.get("status") == COMPLETED
    assert list(report.seeds["t-a"].rows) == a and report.seeds["t-a"].kind is None
    assert report.seeds["t-b"].kind == REPORT_FINAL and report.seeds["t-b"].fields == {"started_at": 2.0, "resumed_from": 1,
                                                                                       "kind": REPORT_FINAL, "status": PRUNED}
    assert list(report.seeds["t-b"].rows) == b
    assert decode(cell_report(REPORT_EPOCH, {}, 0.1, COMMON, epoch=3)).get("epoch") == 3


def test_tune_sees_the_kind_the_metric_and_one_payload():
    """Every other field goes in the payload (report_codec's docstring: Tune analyses every
    number it is handed, for every trial of the run)."""
    rows = [_row(1, 0.3)]
    seeds = {"t-a": seed_entry(rows, started_at=1.0, resumed_from=0)}
    for report in (epoch_report(rows[0], rows, COMMON), final_report({"status": COMPLETED, "val_acc": 0.3}, rows, COMMON),
                   failed_report("boom", rows, COMMON), cell_report(REPORT_EPOCH, seeds, 0.3, COMMON, epoch=1)):
        assert sorted(report) == sorted([report_codec.KIND, SELECTION_METRIC, report_codec.PAYLOAD])
        assert report[SELECTION_METRIC] == 0.3 and isinstance(report[report_codec.PAYLOAD], str)


def test_a_numpy_number_in_a_report_travels_as_a_plain_one():
    import numpy as np

    report = decode(final_report({"status": COMPLETED, "val_acc": np.float32(0.5), "epochs_run": np.int64(2)}, [], COMMON))
    assert report.get("epochs_run") == 2 and type(report.get("epochs_run")) is int


def test_a_result_without_a_kind_is_none_of_ours():
    assert decode({"done": True, "trial_id": "x"}) is None


@pytest.mark.parametrize("result, message", [
    ({"kind": "epoch", "epochs": "[]"}, r"report kind: 'epoch' is not one of epoch_report, final_report, failed_report"),
    ({"kind": REPORT_EPOCH, "epochs": "[{"}, r"report epochs: not valid JSON .*expected a JSON list of epoch rows"),
    ({"kind": REPORT_FINAL, "history": '{"epoch": 1}'}, r"report history: expected a JSON list of epoch rows, got dict"),
    ({"kind": REPORT_FINAL, "history": "[3]"}, r"report history\[0\]: an epoch row is a JSON object, got int"),
    ({"kind": REPORT_EPOCH, "epochs": '[{"val_acc": 0.1}]'}, r"report epochs\[0\]\.epoch: an epoch row needs a whole epoch number, got None"),
    ({"kind": REPORT_EPOCH, "epochs": '[{"epoch": 1.5}]'}, r"report epochs\[0\]\.epoch: .* got 1\.5"),
    ({"kind": REPORT_FINAL, "seeds": "[]"}, r"report seeds: expected a JSON object trial_id -> entry, got list"),
    ({"kind": REPORT_FINAL, "seeds": '{"t": 1}'}, r"report seeds\[t\]: a seed's entry is a JSON object, got int"),
    ({"kind": REPORT_FINAL, "seeds": '{"t": {"epochs": {}}}'}, r"report seeds\[t\]\.epochs: expected a list of epoch rows, got dict"),
    ({"kind": REPORT_FINAL, "seeds": '{"t": {"kind": "final"}}'}, r"report seeds\[t\]\.kind: 'final' is not one of final_report, failed_report"),
    ("not a mapping", r"a report is a mapping of fields; got str"),
    ({"kind": REPORT_FINAL, "payload": "{"}, r"report payload: not valid JSON .*expected a JSON object of the report's fields"),
    ({"kind": REPORT_FINAL, "payload": "[]"}, r"report payload: expected a JSON object of the report's fields, got list"),
    ({"kind": REPORT_FINAL, "payload": '{"history": [{"epoch": "x"}]}'}, r"report history\[0\]\.epoch: an epoch row needs a whole epoch number, got 'x'"),
])
def test_a_malformed_report_is_a_clear_error_naming_the_field(result, message):
    with pytest.raises(ReportError, match=message):
        decode(result)


def test_a_cell_report_of_an_unknown_kind_is_refused_when_written():
    with pytest.raises(ReportError, match="report kind: 'done'"):
        cell_report("done", {}, 0.0, COMMON)


def test_the_codec_imports_neither_ray_nor_torch():
    code = "import sys, hidden_core.tune.report_codec; print(sorted(m for m in ('ray', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def report_decoders() -> list[str]:
    """json.loads calls in the Tune modules outside the codec (each a report decoder before it)."""
    found = []
    for path in sorted((ROOT / "hidden_core" / "tune").glob("*.py")):
        if path.name == "report_codec.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "loads" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "json":
                found.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    return found


# lease.json: the lease file's own format (lease.py), not a report
NOT_REPORTS = {"hidden_core/tune/lease.py"}


def test_reports_are_decoded_only_by_the_codec():
    assert [f for f in report_decoders() if f.split(":")[0] not in NOT_REPORTS] == []


def test_what_a_trial_reports_the_driver_stores(tmp_path):
    """Producer to consumer: the driver's record of a trial from the trainable's reports."""
    from types import SimpleNamespace

    from hidden_core.tune.driver_state import SweepRuntime, TrialRecord

    runtime = SweepRuntime.__new__(SweepRuntime)
    runtime.records, runtime.cell_seeds, runtime.progress, runtime.pruned = {}, {}, None, set()
    trial = SimpleNamespace(trial_id="ray_0", config={"trial_id": "t0", "cell_id": "c", "trial": {}})
    rows = [_row(1, 0.3), _row(2, 0.4)]
    runtime.on_result(trial, epoch_report(rows[0], rows[:1], {**COMMON, "resumed_from": 1}))
    runtime.on_result(trial, final_report({"status": COMPLETED, "best_val_acc": 0.4}, rows, COMMON))
    rec: TrialRecord = runtime.records["ray_0"]
    assert sorted(rec.epochs) == [1, 2] and rec.epochs[2]["val_acc"] == 0.4
    assert rec.info["node"] == "n1" and rec.info["resumed_from"] == 1
    assert rec.final["kind"] == REPORT_FINAL and rec.final["best_val_acc"] == 0.4
    assert json.dumps(rec.final)  # plain fields, no payload text
