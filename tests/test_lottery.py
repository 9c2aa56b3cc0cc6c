"""lottery_ticket: counts against open_lth's sparse_global, exact final k, nested masks,
pruned weights pinned at zero, bit-exact rewinding, controls, resume inside a level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic_splits import synthetic_splits

import hidden_core.lottery as lottery
from hidden_core.config import ConfigError, RunOptions, make_config
from hidden_core.methods import build_model
from hidden_core.methods.base import parametrization_of, weight_layers
from hidden_core.methods.lottery_ticket import (
    level_count,
    level_keep_counts,
    magnitude_masks,
    shuffled_masks,
)
from hidden_core.training import train_network
from hidden_core.trial import train

RUN = RunOptions(device="cpu", threads=1)


def open_lth_sparse_global(weights: dict[str, np.ndarray], current_mask: dict[str, np.ndarray] | None, fraction: float):
    """open_lth pruning/sparse_global.py Strategy.prune, verbatim on numpy arrays."""
    current_mask = {k: np.ones_like(v) for k, v in weights.items()} if current_mask is None else current_mask
    number_of_remaining_weights = np.sum([np.sum(v) for v in current_mask.values()])
    number_of_weights_to_prune = np.ceil(fraction * number_of_remaining_weights).astype(int)
    weight_vector = np.concatenate([v[current_mask[k] == 1] for k, v in weights.items()])
    threshold = np.sort(np.abs(weight_vector))[number_of_weights_to_prune]
    return {k: np.where(np.abs(v) > threshold, current_mask[k], np.zeros_like(v)) for k, v in weights.items()}


def frankle_carbin_prune_by_percent(percent: float, mask: np.ndarray, final_weight: np.ndarray) -> np.ndarray:
    """google-research/lottery-ticket-hypothesis foundations/pruning.py, verbatim (one layer)."""
    sorted_weights = np.sort(np.abs(final_weight[mask == 1]))
    cutoff_index = np.round(percent * sorted_weights.size).astype(int)
    cutoff = sorted_weights[cutoff_index]
    return np.where(np.abs(final_weight) <= cutoff, np.zeros(mask.shape), mask)


SHAPES = [(37, 40), (29, 37), (10, 29)]


def _random_weights(rng):
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_levels_match_open_lth_count_and_selection(scope):
    rng = np.random.default_rng(0)
    rate, k = 0.2, 0.05
    sizes = [math.prod(s) for s in SHAPES]
    counts = level_keep_counts(sizes, k, rate, scope)
    levels = len(counts) - 1
    assert levels == math.ceil(math.log(k) / math.log(1 - rate)) == 14
    ours = [torch.ones(s, dtype=torch.bool) for s in SHAPES]
    ref = [np.ones(s, dtype=np.float32) for s in SHAPES]
    for level in range(1, levels):  # every level but the last: the reference's rule
        trained = _random_weights(rng)  # a level's trained weights (distinct magnitudes)
        if scope == "global":
            out = open_lth_sparse_global({str(i): w for i, w in enumerate(trained)}, {str(i): m for i, m in enumerate(ref)}, rate)
            ref = [out[str(i)] for i in range(len(SHAPES))]
        else:
            ref = [frankle_carbin_prune_by_percent(rate, m, w) for w, m in zip(trained, ref, strict=True)]
        previous = ours
        ours = magnitude_masks([torch.from_numpy(w) for w in trained], ours, counts[level], scope)
        targets = [round(k * n) for n in sizes] if scope == "layer" else [round(k * sum(sizes))]
        uncapped = [c > t for c, t in zip(counts[level] if scope == "layer" else [counts[level]], targets, strict=True)]
        for i, (o, r) in enumerate(zip(ours, ref, strict=True)):
            assert torch.all(o <= previous[i])  # nested
            if all(uncapped) if scope == "global" else uncapped[i]:
                assert torch.equal(o, torch.from_numpy(r.astype(bool))), (level, i)
            ref[i] = o.numpy().astype(np.float32)  # go on from our mask (equal unless capped at k)
        kept = [int(m.sum()) for m in ours]
        assert (sum(kept) if scope == "global" else kept) == counts[level]
        if all(uncapped):
            # the density is (1 - rate)^level, less the references' extra weight per level (and rounding)
            assert 0 <= (1 - rate) ** level - sum(kept) / sum(sizes) < 2 * level * len(SHAPES) / sum(sizes)
    final = magnitude_masks([torch.from_numpy(w) for w in _random_weights(rng)], ours, counts[-1], scope)
    if scope == "global":
        assert sum(int(m.sum()) for m in final) == round(k * sum(sizes))
    else:
        assert [int(m.sum()) for m in final] == [round(k * n) for n in sizes]


@pytest.mark.parametrize("k,rate,levels", [(1.0, 0.2, 0), (0.8, 0.2, 1), (0.64, 0.2, 2), (0.5, 0.2, 4), (0.1, 0.2, 11), (0.01, 0.5, 7)])
def test_level_count(k, rate, levels):
    assert level_count(k, rate) == levels




def _config(**fields):
    base = dict(method="lottery_ticket", model="mlp", depth=2, mlp_units=24, epochs=3, batch_size=32, lr=0.05, keep_fraction=0.4, prune_rate=0.4)
    return make_config({**base, **fields})


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 0.01)])
def test_pruned_weights_stay_exactly_zero_through_training(optimizer, lr):
    config = _config(optimizer=optimizer, lr=lr, momentum=0.9, weight_decay=0.01, epochs=4)
    model = build_model(config)
    g = torch.Generator().manual_seed(1)
    masks = [torch.rand(parametrization_of(layer).mask.shape, generator=g) < 0.3 for layer in weight_layers(model.net)]
    lottery.set_masks(model, masks)
    before = [parametrization_of(layer).trained.detach().clone() for layer in weight_layers(model.net)]
    train_network(config, RUN, data=synthetic_splits(), model=model)
    for layer, mask, start in zip(weight_layers(model.net), masks, before, strict=True):
        trained = parametrization_of(layer).trained.detach()
        assert torch.all(trained[~mask] == 0) and torch.all(layer.weight[~mask] == 0)
        assert not torch.equal(trained[mask], start[mask])  # the survivors did train
    assert model.statistics()["density"] == pytest.approx(sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks))


def _capture(monkeypatch):
    """Record, per train() call of the level loop, the model it got and its starting tensors."""
    calls = []
    real = lottery.train_network

    def spy(config, run, *, data, on_epoch, model, start_epoch):
        calls.append({"model": model, "start": {k: v.detach().clone() for k, v in model.state_dict().items()}, "start_epoch": start_epoch})
        return real(config, run, data=data, on_epoch=on_epoch, model=model, start_epoch=start_epoch)

    monkeypatch.setattr(lottery, "train_network", spy)
    return calls


def _masks(model):
    return [parametrization_of(layer).mask.detach().clone() for layer in weight_layers(model.net)]


def _trained_key(name):
    return name.endswith("parametrizations.weight.0.trained")


@pytest.mark.parametrize("rewind_epoch", [0, 2])
def test_levels_nest_rewind_bit_for_bit_and_reach_k(monkeypatch, rewind_epoch):
    config = _config(rewind_epoch=rewind_epoch, keep_fraction=0.3)
    calls = _capture(monkeypatch)
    snapshots = {}
    # level 0's weights after epoch `rewind_epoch`, captured outside the loop
    def on_epoch(record):
        if record.level == 0 and record.level_epoch == rewind_epoch:
            snapshots["rewind"] = {k: v.detach().clone() for k, v in calls[0]["model"].state_dict().items()}

    result = train(config, RUN, data=synthetic_splits(), on_epoch=on_epoch)
    levels = level_count(0.3, 0.4)
    assert len(calls) == levels + 1
    reference = snapshots["rewind"] if rewind_epoch else calls[0]["start"]
    previous = None
    for call in calls[1:]:
        assert call["start_epoch"] == rewind_epoch
        masks = _masks(call["model"])
        if previous is not None:
            assert all(torch.all(m <= p) for m, p in zip(masks, previous, strict=True))
        previous = masks
        layer_masks = iter(masks)
        for name, value in call["start"].items():
            if _trained_key(name):
                assert torch.equal(value, reference[name] * next(layer_masks))  # bit for bit
            elif not name.endswith(".mask"):
                assert torch.equal(value, reference[name]), name
    sizes = [m.numel() for m in previous]
    assert [int(m.sum()) for m in previous] == [round(0.3 * n) for n in sizes]
    assert result.density == pytest.approx(sum(round(0.3 * n) for n in sizes) / sum(sizes))
    rows = result.history
    assert [r.epoch for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == result.epochs_run == lottery.planned_epochs(config) == 3 + levels * (3 - rewind_epoch + 1)
    # every level continues level 0's schedule from the rewind epoch
    lr0 = {r.level_epoch: r.lr for r in rows if r.level == 0}
    assert all(r.lr == lr0[r.level_epoch] for r in rows if r.level > 0 and r.branch != "supermask")
    ticket_levels = sorted({r.level for r in rows if r.branch == "ticket"})
    assert ticket_levels == list(range(levels + 1))
    last = [r for r in rows if r.branch == "ticket" and r.level == levels]
    assert result.val_acc == last[-1].val_acc
    assert rows[result.best_epoch - 1].val_acc == result.best_val_acc == max(r.val_acc for r in last)


def test_controls_use_the_level_mask(monkeypatch):
    config = _config(lottery_controls=True, keep_fraction=0.6)
    calls = _capture(monkeypatch)
    result = train(config, RUN, data=synthetic_splits())
    # level 0, then level 1: ticket, reinit, random_prune (the supermask is not trained)
    assert [r.branch for r in result.history if r.level == 1 and r.level_epoch in (0, 1)] == ["ticket", "supermask", "reinit", "random_prune"]
    ticket, reinit, random_prune = calls[1:]
    ticket_masks, reinit_masks, random_masks = _masks(ticket["model"]), _masks(reinit["model"]), _masks(random_prune["model"])
    assert all(torch.equal(a, b) for a, b in zip(ticket_masks, reinit_masks, strict=True))
    assert all(int(a.sum()) == int(b.sum()) for a, b in zip(ticket_masks, random_masks, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(ticket_masks, random_masks, strict=True))
    init = calls[0]["start"]
    for name, value in reinit["start"].items():
        if _trained_key(name):
            assert not torch.equal(value, init[name] * (value != 0))  # re-drawn weights
    supermask = [r for r in result.history if r.branch == "supermask"][0]
    model = build_model(config)
    lottery.set_masks(model, ticket_masks, [layer.parametrizations.weight.original for layer in weight_layers(model.net)])
    from hidden_core.data import DeviceData
    from hidden_core.training import evaluate

    assert [supermask.val_acc, supermask.test_acc] == evaluate(model, DeviceData(synthetic_splits(), torch.device("cpu"), augment=False), ("val", "test"), 2048)
    assert supermask.density == pytest.approx(0.6, abs=0.01)


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", [5, 9])  # inside level 1's ticket; inside a control
def test_resume_inside_a_level_gives_the_uninterrupted_result(tmp_path, kill_at):
    config = _config(lottery_controls=True, keep_fraction=0.6, rewind_epoch=1)
    data = synthetic_splits()
    whole = train(config, RUN, data=data)

    def killer(record):
        if record.epoch == kill_at:
            raise Killed

    run = RunOptions(device="cpu", threads=1, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every_s=0)  # a checkpoint every epoch
    with pytest.raises(Killed):
        train(config, run, data=data, on_epoch=killer)
    assert lottery.resumed_epochs(tmp_path / "ckpt", config.trial_id) == kill_at  # the trial's resumed_from
    seen = []
    resumed = train(config, run, data=data, on_epoch=seen.append)
    assert seen[0].epoch == kill_at + 1  # the epoch that was checkpointed is not rerun
    strip = lambda rows: [{k: repr(v) for k, v in r.to_dict().items() if k != "seconds"} for r in rows]  # noqa: E731 (repr: nan == nan)
    assert strip(resumed.history) == strip(whole.history)
    a, b = whole.to_dict(), resumed.to_dict()
    for key in ("train_seconds", "samples_per_second"):
        a.pop(key), b.pop(key)
    assert {k: repr(v) for k, v in a.items()} == {k: repr(v) for k, v in b.items()}  # repr: nan == nan


def test_random_prune_keeps_per_layer_counts():
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(s) < 0.3 for s in SHAPES]
    shuffled = shuffled_masks(masks, g)
    assert [int(m.sum()) for m in shuffled] == [int(m.sum()) for m in masks]


@pytest.mark.parametrize(
    "fields,field",
    [({"prune_rate": 1.0}, "prune_rate"), ({"prune_rate": 0}, "prune_rate"), ({"rewind_epoch": 3}, "rewind_epoch"), ({"rewind_epoch": -1}, "rewind_epoch"), ({"prune_scope": "row"}, "prune_scope")],
)
def test_bad_lottery_fields_are_named(fields, field):
    with pytest.raises(ConfigError) as err:
        _config(**fields)
    assert any(line.startswith(f"{field}:") for line in err.value.problems), err.value.problems


def test_lottery_fields_are_not_part_of_other_methods_identity():
    assert make_config(method="dense", prune_rate=0.5).trial_id == make_config(method="dense").trial_id
    assert _config(prune_rate=0.5).trial_id != _config(prune_rate=0.3).trial_id


def test_global_scope_reaches_k_in_total_with_uneven_layers(monkeypatch):
    calls = _capture(monkeypatch)
    result = train(_config(prune_scope="global", keep_fraction=0.3), RUN, data=synthetic_splits())
    masks = _masks(calls[-1]["model"])
    total = sum(m.numel() for m in masks)
    assert sum(int(m.sum()) for m in masks) == round(0.3 * total)
    assert len({round(int(m.sum()) / m.numel(), 3) for m in masks}) > 1  # pooled: layers differ
    assert result.density == pytest.approx(round(0.3 * total) / total)


def test_k_one_is_the_dense_level_alone():
    result = train(_config(keep_fraction=1.0), RUN, data=synthetic_splits())
    assert [(r.level, r.branch) for r in result.history] == [(0, "ticket")] * 3
    assert result.density == 1.0 and result.epochs_run == 3


def test_levels_reach_the_store_beside_plain_epochs(tmp_path):
    from hidden_core.store import ResultStore

    store = ResultStore(tmp_path)
    for config in (_config(keep_fraction=0.6), make_config(method="dense", epochs=2)):
        result = train(config, RUN, data=synthetic_splits())
        row = {"trial_id": config.trial_id, "status": result.status, **config.model_dump(), **result.to_dict()}
        row["step_milestones"] = list(config.step_milestones)
        store.write_trial("lt", row, [r.to_dict() for r in result.history])
    epochs = store.load_epochs("lt").set_index("trial_id")
    ticket = epochs.loc[_config(keep_fraction=0.6).trial_id]
    assert list(ticket["branch"]) == ["ticket"] * 3 + ["ticket"] * 3 + ["supermask"]
    assert list(ticket["level"]) == [0, 0, 0, 1, 1, 1, 1] and list(ticket["level_epoch"]) == [1, 2, 3, 1, 2, 3, 0]
    assert ticket["density"].iloc[-1] == pytest.approx(0.6, abs=0.01)
    dense = epochs.loc[make_config(method="dense", epochs=2).trial_id]
    assert dense["level"].isna().all() and dense["branch"].isna().all()
