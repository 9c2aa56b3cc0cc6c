"""Training health (hidden_core/health.py, training.dead_unit_fractions): what every trial
records (early_loss_peak, dead_units_max, train_acc, health_flags) and the flags it raises.
Fast, no Ray."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from synthetic_splits import synthetic_splits
from torch import nn
from torch.overrides import TorchFunctionMode

from hidden_core import health
from hidden_core.config import RunOptions, make_config
from hidden_core.data import load_data
from hidden_core.methods import build_model
from hidden_core.methods.base import parametrization_of, weight_layers
from hidden_core.models import build_architecture
from hidden_core.records import HEALTH_FIELDS, METRIC_FIELDS
from hidden_core.store import TRIAL_SCHEMA, ResultStore
from hidden_core.training import CheckpointMismatch, alive_units, dead_unit_fractions, train_network
from hidden_core.trial import train
from hidden_core.vectorized import train_seeds

RUN = RunOptions(device="cpu", threads=1)


# ---- (1) the acceptance test of issue 20 --------------------------------------------------
# The dense 1-D Conv2 of sweeps/repro/edge_popup_width_conv.yaml (no biases, no
# normalization, kaiming_normal, Adam, cosine, batch 128) at width 4. Its first Adam steps at
# lr 0.003 make the loss spike and kill the conv/FC layers for good; at lr 0.003/4 it trains.
# The first 1024 training examples (8 steps an epoch) reproduce both within 2 epochs
# (measured: lr 0.003 ends with 98% of a layer dead, train acc 12%, loss at ln 10, peak
# 31x ln 10; lr 0.003/4 with at most 18% dead, train acc 27%, peak 5x); one epoch is not
# enough to tell the healthy run from chance, hence two.
CONV2_RECIPE = {"dataset": "mnist1d", "model": "convnet", "depth": 2, "width": 4, "method": "dense", "optimizer": "adam",
                "weight_dist": "kaiming_normal", "batch_size": 128, "schedule": "cosine", "epochs": 2, "seed": 0}


@pytest.fixture(scope="module")
def mnist1d_head():
    full = load_data(make_config(CONV2_RECIPE))
    # the test split only costs evaluation time here: a tenth of it
    return dataclasses.replace(full, x_train=full.x_train[:1024], y_train=full.y_train[:1024], x_test=full.x_test[:100], y_test=full.y_test[:100])


@pytest.mark.slow  # seconds to a minute (a subprocess, a real training or a heavy import): not the unit loop
def test_the_old_conv2_recipe_is_flagged_and_its_fair_lr_is_not(mnist1d_head):
    broken = train(make_config({**CONV2_RECIPE, "lr": 0.003}), RUN, data=mnist1d_head)
    assert broken.status == "completed"
    assert broken.dead_units_max > health.DEAD_UNITS_MAX
    assert health.DEAD_UNITS in health.parse_flags(broken.health_flags), broken.health_flags
    fair = train(make_config({**CONV2_RECIPE, "lr": 0.003 / 4}), RUN, data=mnist1d_head)
    assert fair.health_flags == health.HEALTHY, (fair.health_flags, fair.dead_units_max, fair.train_acc, fair.train_loss)
    assert fair.dead_units_max < health.DEAD_UNITS_MAX


# ---- (2) the dead-unit hooks ----------------------------------------------------------------
def test_dead_units_of_a_hand_built_mlp():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        # inputs are positive: a row of negative weights is a unit that never fires
        net[1].weight.copy_(torch.tensor([[1.0, 0, 0], [-1, -1, -1], [0, 1, 0], [-1, -2, -3]]))
        # layer 2 sees units 0 and 2 only; unit 4 fires on the first example alone
        net[3].weight.copy_(torch.tensor([[1.0, 0, 1, 0], [-1, 0, -1, 0], [0, 0, 0, 0], [0, 5, 0, 5], [1, 0, -1, 0]]))
    x = torch.tensor([[2.0, 1.0, 0.5], [0.1, 3.0, 1.0]])  # example 0: u0 > u2, example 1: u0 < u2
    alive = alive_units(net, x)
    assert [a.tolist() for a in alive] == [[True, False, True, False], [True, False, False, False, True]]
    assert dead_unit_fractions(net, x) == [0.5, 0.6]


@pytest.mark.parametrize("conv", [nn.Conv1d, nn.Conv2d])
def test_a_channel_is_dead_only_when_zero_at_every_position_of_every_example(conv):
    spatial = (5,) if conv is nn.Conv1d else (5, 5)
    net = nn.Sequential(conv(1, 3, kernel_size=1, bias=False), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3 * math.prod(spatial), 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0, 1.0]).view(3, 1, *([1] * len(spatial))))
    x = -torch.ones(2, 1, *spatial)  # channels 0 and 2 negative everywhere...
    x[1].view(-1)[-1] = 1.0  # ...but at one position of one example; channel 1 fires elsewhere
    assert [a.tolist() for a in alive_units(net, x)] == [[True, True, True]]
    x[1].view(-1)[-1] = -1.0
    assert dead_unit_fractions(net, x) == [2 / 3]


class _CountReLUs(TorchFunctionMode):
    """Counts every ReLU the forward applies, by module or functionally (the ground truth the
    hook sites are checked against)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.nn.functional.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("fields", [
    {"model": "mlp"},
    {"model": "convnet", "depth": 4},
    {"model": "convnet", "depth": 2, "norm": "batchnorm"},
    {"model": "resnet", "depth": 8},
    {"dataset": "digits", "model": "convnet", "depth": 2},
    {"dataset": "digits", "model": "resnet", "depth": 8},
])
def test_the_hooks_see_every_relu_of_every_architecture(fields):
    config = make_config({"dataset": "mnist1d", "width": 0.25, **fields})
    net = build_architecture(config).eval()
    x = torch.randn(4, *config.dataset_info.input_shape)
    with torch.no_grad(), _CountReLUs() as counter:
        net(x)
    fractions = dead_unit_fractions(net, x)
    assert len(fractions) == counter.count > 0
    assert all(0.0 <= f <= 1.0 for f in fractions)


def test_dead_units_are_measured_on_the_effective_weights():
    """An edge-popup network whose scores mask every incoming weight of a unit: that unit is
    dead (no bias), though its frozen weights are not zero."""
    config = make_config({"dataset": "mnist1d", "model": "mlp", "mlp_units": 8, "method": "edge_popup", "keep_fraction": 0.5})
    model = build_model(config)
    first = weight_layers(model.net)[0]
    with torch.no_grad():
        scores = parametrization_of(first).scores
        scores.copy_(1.0 + torch.rand_like(scores))
        scores[3] = 0.0  # the lowest scores: pruned first
    x = torch.randn(64, *config.dataset_info.input_shape)
    assert not alive_units(model, x)[0][3]
    assert first.parametrizations.weight.original[3].abs().sum() > 0


# ---- (3) early_loss_peak ----------------------------------------------------------------------
class _ScriptedLoss(nn.CrossEntropyLoss):
    """Cross-entropy whose value is a scripted sequence (its gradient still the real one's)."""

    script: list[float] = []
    calls = 0

    def forward(self, logits, y):
        real = super().forward(logits, y)
        value = _ScriptedLoss.script[_ScriptedLoss.calls]
        _ScriptedLoss.calls += 1
        return real - real.detach() + value


def test_early_loss_peak_is_the_first_epochs_largest_minibatch_loss_over_ln_classes(monkeypatch):
    data = synthetic_splits(n=96, classes=10)
    config = make_config({"method": "dense", "model": "mlp", "mlp_units": 8, "epochs": 2, "batch_size": 32})  # 3 steps an epoch
    # epoch 1 peaks at 7.0 on its second step; epoch 2's larger losses do not count
    monkeypatch.setattr(_ScriptedLoss, "script", [2.0, 7.0, 3.0, 50.0, 60.0, 1.0])
    monkeypatch.setattr(_ScriptedLoss, "calls", 0)
    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", _ScriptedLoss)
    result = train_network(config, RUN, data=data)
    assert _ScriptedLoss.calls == 6
    assert result.history[0].train_loss == pytest.approx(4.0)
    assert result.early_loss_peak == pytest.approx(7.0 / math.log(10))


def test_early_loss_peak_survives_a_resume(tmp_path):
    data = synthetic_splits()
    config = make_config({"method": "dense", "model": "mlp", "mlp_units": 8, "epochs": 3, "batch_size": 32, "lr": 0.5})
    whole = train_network(config, RUN, data=data)

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record.epoch == 2:
            raise Stop

    run = RUN.model_copy(update={"checkpoint_dir": str(tmp_path), "checkpoint_every_s": 0.0})
    with pytest.raises(Stop):
        train_network(config, run, data=data, on_epoch=stop_after_two)
    resumed = train_network(config, run, data=data)
    assert math.isfinite(whole.early_loss_peak)
    assert resumed.early_loss_peak == whole.early_loss_peak
    assert resumed.dead_units_max == whole.dead_units_max and resumed.health_flags == whole.health_flags
    with pytest.raises(CheckpointMismatch):  # (the checkpoint still names its trial)
        train_network(config.model_copy(update={"seed": 9}), run, data=data)


# ---- (4) the flags: a pure function of the recorded numbers ---------------------------------
HEALTHY_NUMBERS = {"early_loss_peak": 1.2, "dead_units_max": 0.1, "train_loss": 0.5, "train_acc": 0.9, "classes": 10}


@pytest.mark.parametrize(("change", "flags"), [
    ({}, ""),
    ({"dead_units_max": 0.5}, ""),  # at the threshold: not above it
    ({"dead_units_max": 0.51}, "dead_units"),
    ({"early_loss_peak": 10.0}, ""),
    ({"early_loss_peak": 10.5}, "loss_spike"),
    ({"train_loss": math.log(10) * 0.96}, "loss_stuck"),
    ({"train_loss": math.log(10) * 1.04}, "loss_stuck"),
    ({"train_loss": math.log(10) * 0.94}, ""),
    ({"train_loss": math.log(100), "classes": 100, "train_acc": 0.5}, "loss_stuck"),
    ({"train_acc": 0.15}, "train_chance"),
    ({"train_acc": 0.151}, ""),
    ({"train_acc": 0.015, "classes": 100}, "train_chance"),
    ({"dead_units_max": 1.0, "early_loss_peak": 21.0, "train_loss": math.log(10), "train_acc": 0.1}, "dead_units,loss_spike,loss_stuck,train_chance"),
    ({"dead_units_max": None}, None),  # unknown is not healthy
    ({"early_loss_peak": float("nan")}, None),
    ({"train_loss": float("inf")}, None),  # a diverged trial: its status says so
    ({"train_acc": None}, None),
])
def test_health_flags_table(change, flags):
    assert health.health_flags(**{**HEALTHY_NUMBERS, **change}) == flags


def test_flags_are_recomputed_from_a_trials_row():
    row = {"dataset": "cifar100", "early_loss_peak": 1.0, "dead_units_max": 0.0, "train_loss": 1.0, "train_acc": 0.012}
    assert health.row_health_flags(row) == "train_chance"
    assert health.row_health_flags({**row, "dead_units_max": None}) is None
    assert health.parse_flags("") == [] and health.parse_flags(None) is None and health.parse_flags("a,b") == ["a", "b"]
    assert list(health.FLAGS) == sorted(health.FLAGS)


# ---- (5) vectorized seeds record each seed's own health ---------------------------------------
@pytest.mark.parametrize("fields", [{"method": "dense", "lr": 0.5}, {"method": "edge_popup", "keep_fraction": 0.3}])
def test_a_vectorized_cell_records_each_seeds_health_as_alone(fields):
    data = synthetic_splits(n=128)
    config = make_config({"model": "mlp", "mlp_units": 16, "epochs": 2, "batch_size": 32, **fields})
    cell = train_seeds(config, [0, 4], RUN, data=data)
    for seed, vectorized in zip([0, 4], cell, strict=True):
        alone = train_network(config.model_copy(update={"seed": seed}), RUN, data=data)
        assert vectorized.early_loss_peak == pytest.approx(alone.early_loss_peak, abs=1e-5)
        # a unit on the edge of firing may flip with a batched matmul's rounding: one unit of 16
        assert vectorized.dead_units_max == pytest.approx(alone.dead_units_max, abs=1 / 16 + 1e-9)
        assert vectorized.train_acc == pytest.approx(alone.train_acc, abs=0.005)
        assert vectorized.health_flags == alone.health_flags


def test_a_lottery_trial_records_its_last_ticket_levels_health(tmp_path):
    """The trial's row describes its last ticket level: so does its health (measured on the
    pruned, trained ticket)."""
    config = make_config({"method": "lottery_ticket", "model": "mlp", "mlp_units": 24, "epochs": 2, "batch_size": 32, "lr": 0.05,
                          "keep_fraction": 0.4, "prune_rate": 0.4})
    result = train(config, RUN, data=synthetic_splits())
    assert math.isfinite(result.early_loss_peak) and 0.0 <= result.dead_units_max <= 1.0
    last_ticket = [r for r in result.history if r.branch == "ticket"][-1]
    assert result.train_acc == last_ticket.train_acc and result.train_loss == last_ticket.train_loss
    assert result.health_flags == health.health_flags(early_loss_peak=result.early_loss_peak, dead_units_max=result.dead_units_max,
                                                      train_loss=result.train_loss, train_acc=result.train_acc, classes=10)


# ---- (6) the store -------------------------------------------------------------------------------
def test_the_health_columns_are_trial_metrics_and_store_columns():
    assert set(HEALTH_FIELDS) <= set(METRIC_FIELDS)  # what the driver copies from a final report into the row
    assert TRIAL_SCHEMA.field("early_loss_peak").type == pa.float64()
    assert TRIAL_SCHEMA.field("dead_units_max").type == pa.float64()
    assert TRIAL_SCHEMA.field("health_flags").type == pa.string()
    result = train_network(make_config({"model": "mlp", "mlp_units": 8, "epochs": 1}), RUN, data=synthetic_splits())
    assert set(HEALTH_FIELDS) | {"train_acc"} <= set(result.to_dict())


def _row(trial_id: str, **metrics) -> dict:
    config = make_config({"model": "mlp", "seed": int(trial_id[-1])})
    return {"trial_id": trial_id, "status": "completed", **config.model_dump(), "step_milestones": list(config.step_milestones),
            "train_loss": 0.4, "train_acc": 0.9, **metrics}


def test_the_store_round_trips_health_and_reads_an_old_store_as_unknown(tmp_path):
    store = ResultStore(tmp_path)
    store.write_trial("s", _row("t1", early_loss_peak=21.3, dead_units_max=0.996, health_flags="dead_units,loss_spike"))
    store.write_trial("s", _row("t2", early_loss_peak=1.1, dead_units_max=0.0, health_flags=""))
    # a part file an older hidden wrote: the trials schema without the health columns
    old = pa.Table.from_pylist([{**_row("t3"), "sweep": "s", "write_id": "old"}],
                               schema=pa.schema([f for f in TRIAL_SCHEMA if f.name not in HEALTH_FIELDS]))
    pq.write_table(old, tmp_path / "s" / "trials" / "part-old.parquet")
    frame = store.load_trials("s").set_index("trial_id")
    assert frame.loc["t1", "early_loss_peak"] == 21.3 and frame.loc["t1", "dead_units_max"] == 0.996
    assert frame.loc["t1", "health_flags"] == "dead_units,loss_spike"
    assert frame.loc["t2", "health_flags"] == ""  # healthy...
    assert pd.isna(frame.loc["t3", "health_flags"])  # ...and unknown (null) are told apart
    assert math.isnan(frame.loc["t3", "early_loss_peak"]) and math.isnan(frame.loc["t3", "dead_units_max"])
    assert health.parse_flags(frame.loc["t3", "health_flags"]) is None
    assert health.row_health_flags(frame.loc["t3"].to_dict()) is None
    assert set(store.load_trials("s", where="health_flags == ''")["trial_id"]) == {"t2"}


def test_a_resumed_cell_keeps_each_seeds_early_loss_peak(tmp_path):
    """The peak is measured in the first epoch only: a seed resumed past it (alone or in a
    cell, from either's checkpoint) reads it from the checkpoint."""
    data = synthetic_splits()
    config = make_config({"model": "mlp", "mlp_units": 16, "epochs": 3, "batch_size": 32, "lr": 0.5})
    whole = train_seeds(config, [0, 1], RUN, data=data)
    folders = {seed: str(tmp_path / str(seed)) for seed in (0, 1)}

    class Stop(Exception):
        pass

    def stop_after_two(epoch, records):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_seeds(config, [0, 1], RUN, data=data, after_epoch=stop_after_two, checkpoint_dirs=folders)
    resumed = train_seeds(config, [0, 1], RUN, data=data, checkpoint_dirs=folders)
    alone = train_network(config.model_copy(update={"seed": 1}), RUN.model_copy(update={"checkpoint_dir": folders[1]}), data=data)
    for w, r in zip(whole, resumed, strict=True):
        assert math.isfinite(w.early_loss_peak) and r.early_loss_peak == w.early_loss_peak
    assert alone.early_loss_peak == whole[1].early_loss_peak


# ---- the report codec: a sweep trial's and a vectorized cell's reports carry health into the row ----
@dataclasses.dataclass
class _TuneTrial:
    """What the driver reads of a Tune trial."""

    trial_id: str
    config: dict


@pytest.mark.parametrize("vectorize", ["none", "seeds"])
def test_the_reports_carry_health_into_the_store_row(tmp_path, monkeypatch, vectorize):
    """The trainable's reports (tune.report captured, no Ray started) fed to the driver as
    Tune feeds them: the row holds the health the trial measured."""
    import ray.tune

    from hidden_core.spec import parse_spec
    from hidden_core.tune.driver_state import SweepRuntime
    from hidden_core.tune.planning import plan_todo
    from hidden_core.tune.pruning import CellStudies
    from hidden_core.tune.trainable import sweep_trainable

    base = {"dataset": "mnist1d", "model": "mlp", "mlp_units": 8, "epochs": 2}
    spec = parse_spec({"name": "health", "base": base, "grid": {"seed": [0, 1]}, "report_every_s": 0, "vectorize": vectorize})
    store = ResultStore(tmp_path / "results")
    runtime = SweepRuntime(spec, store, str(tmp_path / "results"), studies=CellStudies(spec, f"sqlite:///{tmp_path / 's.db'}"),
                           run_values=RUN.model_dump(mode="json"), provenance={"hidden_version": "test"})
    runtime.load(plan_todo(spec, store))
    reports: list[dict] = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **_: reports.append(dict(metrics)))
    number = 0
    while (suggestion := runtime.next_suggestion()) is not None:
        reports.clear()
        sweep_trainable(suggestion)
        trial = _TuneTrial(f"ray{number}", suggestion)
        number += 1
        runtime.on_start(trial)
        for report in reports:
            runtime.on_result(trial, report)
        runtime.on_complete(trial)
    rows = store.load_trials("health").set_index("seed")
    assert sorted(rows.index) == [0, 1]
    # the end-of-sweep summary (tune/report.py) has each trial's flags too
    assert {t.trial_id: t.health_flags for t in runtime.summaries} == dict(zip(rows["trial_id"], rows["health_flags"], strict=True))
    for seed in (0, 1):
        alone = train(make_config({**base, "seed": seed}), RUN)
        row = rows.loc[seed]
        assert row["early_loss_peak"] == pytest.approx(alone.early_loss_peak, abs=1e-5)
        assert row["dead_units_max"] == pytest.approx(alone.dead_units_max, abs=1 / 8 + 1e-9)
        assert row["train_acc"] == pytest.approx(alone.train_acc, abs=0.005)
        assert row["health_flags"] == alone.health_flags == health.row_health_flags(row.to_dict() | {"seed": seed})


# ---- hidden train ---------------------------------------------------------------------------------
def test_hidden_train_json_carries_health_as_strict_json(capsys):
    from hidden_core.cli import main

    assert main(["train", "--mlp-units", "8", "--epochs", "1", "--threads", "1", "--json", "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))  # NaN is null
    for key in (*HEALTH_FIELDS, "train_acc"):
        assert key in result
    assert result["disabled_features"] is None  # NaN without BatchNorm
    assert 0.0 <= result["dead_units_max"] <= 1.0 and result["early_loss_peak"] > 0 and isinstance(result["health_flags"], str)


@pytest.mark.parametrize("as_json", [False, True])
def test_hidden_train_warns_in_one_line_when_flagged(monkeypatch, capsys, as_json):
    import hidden_core.trial
    from hidden_core.cli import main

    flagged = train_network(make_config({"model": "mlp", "mlp_units": 8, "epochs": 1}), RUN, data=synthetic_splits())
    flagged = dataclasses.replace(flagged, dead_units_max=0.98, early_loss_peak=21.3, health_flags="dead_units,loss_spike")
    monkeypatch.setattr(hidden_core.trial, "train", lambda *args, **kwargs: flagged)
    assert main(["train", "--mlp-units", "8", "--epochs", "1", "--quiet", *(["--json"] if as_json else [])]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in (captured.err + captured.out).splitlines() if line.startswith("warning: unhealthy training")]
    assert len(warnings) == 1 and "dead_units, loss_spike" in warnings[0] and "98%" in warnings[0]
    if as_json:  # stdout keeps its one JSON line; the warning is on stderr
        assert warnings[0] in captured.err
        assert json.loads(captured.out.strip().splitlines()[-1])["health_flags"] == "dead_units,loss_spike"
    else:
        assert captured.out.strip().splitlines()[-1] == warnings[0]
