"""The spec's subnet_controls: validation, the controls pass over a store (resume, determinism,
stale rows), the control columns of `hidden results`, and `hidden analyze controls` against
hand computation on a synthetic store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hidden_core.cli import main
from hidden_core.config import ConfigError, make_config
from hidden_core.records import CONTROL_COLUMNS, CONTROL_DRAWS_COLUMN, control_column
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore

BASE = {"name": "s", "base": {"dataset": "mnist1d", "epochs": 2, "width": 0.3}, "grid": {"method": ["edge_popup", "sign_flip", "dense"], "seed": [0, 1]}}


def hidden(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- the spec option -------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "message"), [
    ({"draws": 0}, "subnet_controls.draws: 0: input should be greater than or equal to 1"),
    ({"draws": 101}, "subnet_controls.draws: 101: input should be less than or equal to 100"),
    ({"draws": "3"}, "subnet_controls.draws: '3' is text, not a whole number"),
    ({"device": "gpu"}, "subnet_controls.device: 'gpu' is not one of auto, cpu, cuda, cuda:N, mps"),
    ({"draw": 3}, "subnet_controls.draw: unknown key (did you mean 'draws'?); allowed keys: draws, device"),
    (5, "subnet_controls: must be a mapping like {draws: 5, device: auto}"),
])
def test_spec_option_is_validated(value, message):
    with pytest.raises(ConfigError) as err:
        parse_spec({**BASE, "subnet_controls": value})
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_spec_option_needs_a_controlled_method_and_is_not_trial_identity():
    with pytest.raises(ConfigError) as err:
        parse_spec({**BASE, "grid": {"method": ["dense", "bn_only"]}, "subnet_controls": {}})
    assert "subnet_controls: no trial of this sweep has controls (methods: bn_only, dense)" in err.value.problems[0]
    on, off = parse_spec({**BASE, "subnet_controls": {"draws": 3, "device": "cpu"}}), parse_spec(BASE)
    assert on.subnet_controls.draws == 3 and off.subnet_controls is None
    assert [t.trial_id for t in on.plan().trials] == [t.trial_id for t in off.plan().trials]
    assert parse_spec({**BASE, "subnet_controls": {}}).subnet_controls.draws == 5


def test_spec_option_on_the_command_line_exits_2(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {dataset: mnist1d, method: edge_popup}\nsubnet_controls: {draws: -1}\n")
    code, _, err = hidden(capsys, "sweep", "run", spec, "--dry-run", "--results", tmp_path / "r")
    assert code == 2 and "subnet_controls.draws" in err and not (tmp_path / "r").exists()


def test_a_controls_device_this_machine_lacks_exits_2_before_any_trial(tmp_path, capsys):
    """The pass runs in the driver: a device it does not have would train every trial and
    then skip every control (exit 0); it is refused up front instead, nothing written."""
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {dataset: mnist1d, method: edge_popup, epochs: 1}\nsubnet_controls: {device: 'cuda:63'}\n")
    code, _, err = hidden(capsys, "sweep", "run", spec, "--results", tmp_path / "r")
    assert code == 2 and "subnet_controls.device: 'cuda:63' is not available" in err and "available here: cpu" in err
    assert not (tmp_path / "r").exists()


# ---- the pass --------------------------------------------------------------------------------
def _store(root) -> tuple[ResultStore, dict[str, str]]:
    """Sweep 's': edge_popup seeds 0, 1 and sign_flip seed 0 final with files (one pruned),
    a failed edge_popup, a dense trial with a file, and a completed edge_popup without one."""
    from hidden_core.methods import build_model
    from hidden_core.paths import trial_subnet_path
    from hidden_core.subnet.state import save_subnet

    store = ResultStore(root, compact_every=None)
    ids = {}
    for name, method, seed, status, keep in (("ep0", "edge_popup", 0, "completed", True), ("ep1", "edge_popup", 1, "pruned", True),
                                             ("sf0", "sign_flip", 0, "completed", True), ("failed", "edge_popup", 2, "failed", True),
                                             ("dense", "dense", 0, "completed", True), ("nofile", "edge_popup", 3, "completed", False)):
        config = make_config(method=method, seed=seed, width=0.3, epochs=2)
        store.write_trial("s", {"trial_id": config.trial_id, "cell_id": method, "status": status, "val_acc": 0.5, "test_acc": 0.4, **config.model_dump()})
        if keep:
            save_subnet(trial_subnet_path(store.root, "s", config.trial_id), build_model(config), config)
        ids[name] = config.trial_id
    return store, ids


def _spec(draws: int = 2):
    return parse_spec({**BASE, "subnet_controls": {"draws": draws, "device": "cpu"}})


def test_pass_stores_rows_for_every_final_trial_resumes_and_shows_columns(tmp_path, capsys):
    from hidden_core.tune import controls_pass

    store, ids = _store(tmp_path / "r")
    report = controls_pass.run(_spec(2), store)
    assert (report.trials, report.rows) == (3, 7 + 7 + 8)  # found + 3 controls x 2 draws; sign_flip also initial
    rows = store.load_controls("s")
    per_trial = rows.groupby("trial_id").size().to_dict()
    assert per_trial == {ids["ep0"]: 7, ids["ep1"]: 7, ids["sf0"]: 8}
    assert set(rows["control"]) == {"found", "random", "shuffled", "fresh", "initial"} and (rows["device"] == "cpu").all()
    assert len(store._list("s", "controls")) == 1  # the pass merges its part files

    # resume: nothing is missing, nothing is computed or written
    again = controls_pass.run(_spec(2), store)
    assert (again.trials, again.rows) == (0, 0) and controls_pass.pending(_spec(2), store) == []
    pd.testing.assert_frame_equal(store.load_controls("s"), rows)

    # more draws: only the new draw of each drawn control is computed; the old rows stay
    more = controls_pass.run(_spec(3), store)
    assert (more.trials, more.rows) == (3, 9)
    merged = store.load_controls("s")
    old = merged[merged["draw"] < 2].drop(columns="write_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(old, rows.drop(columns="write_id").reset_index(drop=True))

    # the columns: mean over the draws, the number of draws, null for trials without controls
    trials = store.load_trials("s").set_index("trial_id")
    ep0 = merged[merged["trial_id"] == ids["ep0"]]
    assert trials.loc[ids["ep0"], control_column("random")] == pytest.approx(ep0[ep0["control"] == "random"]["test_acc"].mean())
    assert trials.loc[ids["ep0"], control_column("found", "val_acc")] == ep0[ep0["control"] == "found"]["val_acc"].iloc[0]
    assert trials.loc[ids["ep0"], CONTROL_DRAWS_COLUMN] == 3 and np.isnan(trials.loc[ids["ep0"], control_column("initial")])
    assert not np.isnan(trials.loc[ids["sf0"], control_column("initial")])
    assert trials.loc[[ids["dense"], ids["nofile"], ids["failed"]], list(CONTROL_COLUMNS)].isna().all().all()

    capsys.readouterr()  # the pass's progress lines
    code, out, err = hidden(capsys, "results", "show", "s", "--results", tmp_path / "r", "--format", "json")
    assert code == 0, err
    shown = {r["trial_id"]: r for r in json.loads(out)}
    assert shown[ids["sf0"]][control_column("shuffled")] == pytest.approx(trials.loc[ids["sf0"], control_column("shuffled")])
    assert {control_column(c) for c in ("found", "random", "shuffled", "fresh", "initial")} <= set(shown[ids["ep0"]])
    code, out, err = hidden(capsys, "results", "show", "s", "--results", tmp_path / "r", "--format", "json",
                            "--where", f"{control_column('found')} >= {control_column('random')} - 1 and {CONTROL_DRAWS_COLUMN} == 3",
                            "--columns", "trial_id", CONTROL_DRAWS_COLUMN)
    assert code == 0, err
    assert sorted(r["trial_id"] for r in json.loads(out)) == sorted([ids["ep0"], ids["ep1"], ids["sf0"]])
    code, _, err = hidden(capsys, "results", "show", "s", "--results", tmp_path / "r", "--columns", "control_random_tst_acc")
    assert code == 2 and "control_random_test_acc" in err  # a typo gets the near miss


def test_killed_pass_recomputes_only_the_missing_trials_and_matches_a_clean_run(tmp_path, monkeypatch):
    from hidden_core.subnet import controls
    from hidden_core.tune import controls_pass

    clean, _ = _store(tmp_path / "clean")
    controls_pass.run(_spec(2), clean)
    store, _ = _store(tmp_path / "killed")
    real, calls = controls.score_controls, []

    def dies_on_the_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(controls, "score_controls", dies_on_the_second_trial)
    with pytest.raises(KeyboardInterrupt):
        controls_pass.run(_spec(2), store)
    monkeypatch.setattr(controls, "score_controls", real)
    assert store.load_controls("s")["trial_id"].nunique() == 1
    resumed = controls_pass.run(_spec(2), store)
    assert resumed.trials == 2
    columns = ["trial_id", "control", "draw", "val_acc", "test_acc"]
    pd.testing.assert_frame_equal(store.load_controls("s")[columns], clean.load_controls("s")[columns])


def test_rows_of_a_replaced_trial_row_are_hidden_and_recomputed(tmp_path):
    from hidden_core.tune import controls_pass

    store, ids = _store(tmp_path / "r")
    controls_pass.run(_spec(1), store)
    row = store.load_trials("s", where=f"trial_id == '{ids['ep0']}'").iloc[0].to_dict()
    row = {k: v for k, v in row.items() if k in ("trial_id", "cell_id", "status", "val_acc", "test_acc", *make_config().model_dump())}
    store.write_trial("s", row)  # a newer row of the same trial: its controls must be its own
    assert ids["ep0"] not in set(store.load_controls("s")["trial_id"])
    assert [w.trial_id for w in controls_pass.pending(_spec(1), store)] == [ids["ep0"]]
    store.compact("s")  # drops the stale rows for good, keeps the others
    assert store.load_controls("s")["trial_id"].nunique() == 2


# ---- the analysis --------------------------------------------------------------------------
def test_analyze_controls_matches_hand_computation(tmp_path, capsys):
    from scipy import stats
    from synthetic_store import grid, write_synthetic_controls, write_synthetic_sweep

    from hidden_core.analysis.controls import control_points

    root = tmp_path / "r"
    store = ResultStore(root, compact_every=None)
    write_synthetic_sweep(store, "q", grid(methods=("dense", "edge_popup", "sign_flip"), widths=(1, 2), seeds=(0, 1, 2)))
    written = write_synthetic_controls(store, "q", draws=3)
    trials = store.load_trials("q")
    points = control_points(trials, x="width")
    assert set(points["group"]) == {"edge_popup", "sign_flip"}  # dense has no controls
    assert set(points[points["group"] == "sign_flip"]["series"]) == {"found", "random", "shuffled", "fresh", "initial"}

    # by hand: sign_flip at width 2, control shuffled; each trial's value is the mean of its 3 draws
    ids = trials[(trials["method"] == "sign_flip") & (trials["width"] == 2)]["trial_id"]
    mine = written[written["trial_id"].isin(ids)]
    shuffled = mine[mine["control"] == "shuffled"].groupby("trial_id")["test_acc"].mean()
    found = mine[mine["control"] == "found"].set_index("trial_id")["test_acc"].reindex(shuffled.index)
    assert len(shuffled) == 3
    half = stats.t.ppf(0.975, 2) * shuffled.std(ddof=1) / np.sqrt(3)
    gap = found - shuffled
    gap_half = stats.t.ppf(0.975, 2) * gap.std(ddof=1) / np.sqrt(3)
    p = points[(points["group"] == "sign_flip") & (points["x"] == 2) & (points["series"] == "shuffled")].iloc[0]
    assert p["n"] == 3
    assert p["mean"] == pytest.approx(shuffled.mean()) and p["ci_low"] == pytest.approx(shuffled.mean() - half) and p["ci_high"] == pytest.approx(shuffled.mean() + half)
    assert p["gap"] == pytest.approx(gap.mean()) and p["gap_ci_high"] - p["gap_ci_low"] == pytest.approx(2 * gap_half)

    out = tmp_path / "out"
    code, stdout, err = hidden(capsys, "analyze", "controls", "q", "--results", root, "--out", out)
    assert code == 0, err
    assert "found - random" in stdout
    recorded = "health_flags" in trials.columns and trials["health_flags"].notna().all()  # synthetic rows may carry "" (healthy)
    assert ("health: every cell healthy" if recorded else "health: edge_popup, width=1: health unknown for 3 of 3 seeds") in stdout
    for name in ("controls.csv", "controls_points.csv", "controls.md", "controls.png", "controls.svg"):
        assert (out / name).stat().st_size > 100, name
    assert "Student-t" in (out / "controls.md").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(out / "controls_points.csv")[["mean", "gap"]], points[["mean", "gap"]].reset_index(drop=True).astype(float), check_exact=False)

    # a sweep without controls: a clear error, exit 2
    write_synthetic_sweep(store, "plain", grid(methods=("edge_popup",), widths=(1,), seeds=(0,)))
    code, _, err = hidden(capsys, "analyze", "controls", "plain", "--results", root, "--out", out)
    assert code == 2 and "subnet_controls" in err


def test_a_damaged_file_is_reported_and_retried_never_stops_the_pass(tmp_path):
    import io

    from hidden_core.paths import trial_subnet_path
    from hidden_core.tune import controls_pass

    store, ids = _store(tmp_path / "r")
    path = trial_subnet_path(store.root, "s", ids["ep1"])
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF  # a flipped bit in the last tensor
    open(path, "wb").write(bytes(data))
    out = io.StringIO()
    report = controls_pass.run(_spec(1), store, out=out)
    assert report.trials == 2 and report.skipped == [ids["ep1"]]
    assert f"trial {ids['ep1']} skipped" in out.getvalue() and "sha256 does not match" in out.getvalue()
    assert set(store.load_controls("s")["trial_id"]) == {ids["ep0"], ids["sf0"]}
    assert [w.trial_id for w in controls_pass.pending(_spec(1), store)] == [ids["ep1"]]


def test_sweep_status_counts_controls(tmp_path, capsys):
    from hidden_core.tune import controls_pass

    store, _ = _store(tmp_path / "r")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {dataset: mnist1d, width: 0.3, epochs: 2}\ngrid: {method: [edge_popup], seed: [0, 1]}\nsubnet_controls: {draws: 1, device: cpu}\n")
    code, out, err = hidden(capsys, "sweep", "status", spec, "--results", tmp_path / "r")
    assert code == 0, err
    assert "subnet_controls: 0 trials have controls, 3 lack some" in out
    controls_pass.run(_spec(1), store)
    code, out, err = hidden(capsys, "sweep", "status", spec, "--results", tmp_path / "r")
    assert "subnet_controls: 3 trials have controls, 0 lack some" in out
