"""gem_miner against a small re-implementation of its reference code, on random tensors, and on
data: the subnet file reproduces the stored accuracy with and without fine-tuning, and a short
MNIST-1D run beats its own random-mask control.

Each `ref_*` transcribes the cited lines of ksreenivasan/pruning_is_enough @ 8c4c9e8 (Gem-Miner
is its `algo: hc_iter` with `hc_quantized: True`; docs/methods.md, "gem_miner")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from hidden_core import make_config, train
from hidden_core.config import ConfigError, make_run_options
from hidden_core.distributions import weight_layers
from hidden_core.methods import build_model
from hidden_core.methods.base import original_weight, parametrization_of
from hidden_core.methods.gem_miner import bottom_k_prune, prune_rate, prunes_after
from hidden_core.models import build_architecture
from hidden_core.subnet.controls import run_controls
from hidden_core.subnet.evaluate import Evaluator
from hidden_core.subnet.fileformat import read_subnet_file
from hidden_core.subnet.state import materialize


# ---- utils/conv_type.py GetSubnet (:69-78, :87-90) and SubnetConv.forward (:172-174, :193) ----
class RefGetSubnet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores):
        return torch.gt(scores, torch.ones_like(scores) * 0.5).float()  # quantize_threshold 0.5

    @staticmethod
    def backward(ctx, g):
        return g  # straight through


def ref_subnet_weight(weight, scores, flag):
    subnet = RefGetSubnet.apply(scores)
    subnet = subnet * flag.data.float()
    return weight * subnet


# ---- utils/net_utils.py get_regularization_loss (:704-724) ------------------------------------
def ref_regularization(scores, lmbda, regularizer):
    loss = torch.tensor(0.0)
    for s in scores:
        loss = loss + (torch.norm(s, p=2) ** 2 if regularizer == "L2" else torch.norm(s, p=1))
    return lmbda * loss


# ---- utils/net_utils.py get_prune_rate (:791-802) and prune, prune_type BottomK (:456-503) -----
def ref_prune_rate(target_sparsity, epochs, iter_period):
    num_prune_iterations = np.floor((epochs - 1) / iter_period)
    return 1 - np.exp(np.log(target_sparsity / 100) / num_prune_iterations)


def ref_prune(scores, flags, prune_rate):
    num_active_weights = 0
    active_scores_list = []
    for s, f in zip(scores, flags, strict=True):
        num_active_weights += f.data.sum().item()
        active_scores_list.append(s.data[f.data == 1].clone())
    number_of_weights_to_prune = np.ceil(prune_rate * num_active_weights).astype(int)
    scores_threshold = torch.sort(torch.abs(torch.cat(active_scores_list))).values[number_of_weights_to_prune - 1].item()
    return [(f.data + torch.gt(s.abs(), torch.ones_like(s) * scores_threshold).int() == 2).int() for s, f in zip(scores, flags, strict=True)]


# ---- main.py:203: prune after 0-based epoch e when e % iter_period == 0 and e != 0 --------------
def ref_prunes_after(epoch0, iter_period):
    return epoch0 % iter_period == 0 and epoch0 != 0


def config(**fields):
    return make_config(**{"method": "gem_miner", "model": "mlp", "dataset": "mnist1d", "width": 0.5, "depth": 2, **fields})


def parts(model):
    return [parametrization_of(layer) for layer in weight_layers(model.net)]


def test_scores_start_uniform_in_0_1_and_about_half_the_weights_in_use():
    model = build_model(config(width=2.0))
    scores = torch.cat([p.scores.detach().flatten() for p in parts(model)])
    assert scores.min() >= 0 and scores.max() < 1  # conv_type.py:128-130, nn.init.uniform_(0, 1)
    assert abs(scores.mean().item() - 0.5) < 0.01 and abs(scores.std().item() - 1 / math.sqrt(12)) < 0.01
    assert all(bool(p.flag.all()) for p in parts(model))
    assert abs(model.statistics()["density"] - 0.5) < 0.02


def test_forward_and_gradient_equal_the_reference_with_pruned_weights():
    model = build_model(config())
    layer = weight_layers(model.net)[0]
    p = parametrization_of(layer)
    w = original_weight(layer)
    with torch.no_grad():
        p.scores.uniform_(-0.2, 1.2)  # some outside [0, 1] as between a step and its clamp
        p.scores.view(-1)[:7] = 0.5  # exactly at the threshold: pruned (strict >)
        p.flag.copy_(torch.rand(p.flag.shape) < 0.7)
    ref_scores = p.scores.detach().clone().requires_grad_(True)
    probe = torch.randn_like(w)
    (ref_subnet_weight(w, ref_scores, p.flag.float()) * probe).sum().backward()
    (layer.weight * probe).sum().backward()
    assert torch.equal(layer.weight.detach(), ref_subnet_weight(w, ref_scores.detach(), p.flag.float()))
    assert torch.allclose(p.scores.grad, ref_scores.grad)
    assert torch.all(p.scores.grad[~p.flag] == 0)  # a pruned weight's score gets no loss gradient


@pytest.mark.parametrize("regularizer", ["L2", "L1"])
def test_regularizer_and_its_gradient_equal_the_reference(regularizer):
    model = build_model(config(gem_miner_lambda=3e-4, gem_miner_regularizer=regularizer))
    ours = model.penalty()
    ours.backward()
    ref_scores = [p.scores.detach().clone().requires_grad_(True) for p in parts(model)]
    ref = ref_regularization(ref_scores, 3e-4, regularizer)
    ref.backward()
    assert torch.allclose(ours, ref)
    for p, r in zip(parts(model), ref_scores, strict=True):
        assert torch.allclose(p.scores.grad, r.grad)
    assert build_model(config(gem_miner_lambda=0.0)).penalty() is None


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_global_bottom_k_prune_equals_the_reference_including_ties(rate):
    model = build_model(config(width=1.0))
    ps = parts(model)
    with torch.no_grad():
        for i, p in enumerate(ps):
            p.scores.uniform_(0, 1)
            p.scores[torch.rand(p.scores.shape) < 0.1 * (i + 1)] = 0.0  # clamped to 0 by the regularizer: tied
            p.flag.copy_(torch.rand(p.flag.shape) < 0.8)  # earlier prunes
    expected = ref_prune([p.scores.detach() for p in ps], [p.flag.int() for p in ps], rate)
    before = sum(int(p.flag.sum()) for p in ps)
    bottom_k_prune(ps, rate)
    for p, e in zip(ps, expected, strict=True):
        assert torch.equal(p.flag, e.bool())
    # global, not per layer: the layers end at different densities
    densities = [p.flag.float().mean().item() for p in ps]
    assert max(densities) - min(densities) > 0.05
    assert sum(int(p.flag.sum()) for p in ps) <= before - math.ceil(rate * before)


@pytest.mark.parametrize(("k", "epochs", "period"), [(0.0144, 150, 5), (0.5, 150, 8), (0.2, 12, 2), (0.05, 7, 3)])
def test_prune_rate_and_prune_epochs_are_the_references(k, epochs, period):
    assert prune_rate(k, epochs, period) == pytest.approx(ref_prune_rate(k * 100, epochs, period), rel=1e-12)
    ours = [e for e in range(1, epochs + 1) if prunes_after(e, epochs, period)]
    assert ours == [e0 + 1 for e0 in range(epochs) if ref_prunes_after(e0, period)]
    assert len(ours) == (epochs - 1) // period
    assert (1 - prune_rate(k, epochs, period)) ** len(ours) == pytest.approx(k)


def test_prune_rate_is_zero_without_a_prune_or_at_k_1():
    assert prune_rate(1.0, 150, 5) == 0.0  # the reference's k = 1 would prune everything (index -1)
    assert prune_rate(0.1, 3, 5) == 0.0


def test_search_steps_and_epochs_equal_the_reference_loop():
    """Scores, flags and the network after 6 epochs of SGD with momentum, clamping, the L2
    regularizer and two global prunes: ours through the method's hooks, the reference's loop
    (trainers/default.py:52-93, :113-118; main.py:202-205) on the same tensors."""
    epochs, period, k, lmbda, lr = 6, 2, 0.3, 1e-3, 0.2
    c = config(keep_fraction=k, epochs=epochs, gem_miner_period=period, gem_miner_lambda=lmbda)
    model = build_model(c)
    method = model.method
    torch.manual_seed(1)
    batches = [(torch.randn(32, 1, 40), torch.randint(0, 10, (32,))) for _ in range(3)]

    plain = build_architecture(c)
    names = [n for n, m in plain.named_modules() if isinstance(m, nn.Linear)]
    weights = [original_weight(layer).detach() for layer in weight_layers(model.net)]
    ref_scores = [p.scores.detach().clone().requires_grad_(True) for p in parts(model)]
    flags = [torch.ones_like(w, dtype=torch.int32) for w in weights]
    ref_opt = torch.optim.SGD(ref_scores, lr=lr, momentum=0.9)
    rate = ref_prune_rate(k * 100, epochs, period)
    for epoch0 in range(epochs):
        for x, y in batches:
            with torch.no_grad():
                for s in ref_scores:
                    s.data = torch.clamp(s.data, 0.0, 1.0)
            eff = {f"{n}.weight": ref_subnet_weight(w, s, f) for n, w, s, f in zip(names, weights, ref_scores, flags, strict=True)}
            loss = nn.functional.cross_entropy(functional_call(plain, eff, (x,)), y) + ref_regularization(ref_scores, lmbda, "L2")
            ref_opt.zero_grad()
            loss.backward()
            ref_opt.step()
        with torch.no_grad():
            for s in ref_scores:
                s.data = torch.clamp(s.data, 0.0, 1.0)
        if ref_prunes_after(epoch0, period):
            flags = ref_prune(ref_scores, flags, rate)

    opt = torch.optim.SGD(method.optimized(model.net), lr=lr, momentum=0.9)
    step = 0
    model.train()
    for epoch in range(1, epochs + 1):
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y) + model.penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            model.after_step(step)
        model.after_epoch(epoch)

    for p, s, f in zip(parts(model), ref_scores, flags, strict=True):
        assert torch.allclose(p.scores.detach(), s.detach(), atol=1e-6)
        assert torch.equal(p.flag, f.bool())
    assert 0.1 < model.statistics()["density"] < 0.3 + 0.05  # about (1 - rate)^2 of the weights are left
    x = batches[0][0]
    model.eval()
    eff = {f"{n}.weight": ref_subnet_weight(w, s.detach(), f) for n, w, s, f in zip(names, weights, ref_scores, flags, strict=True)}
    assert torch.allclose(model(x), functional_call(plain, eff, (x,)), atol=1e-5)


def _run_phases(model, epochs, batches, lr=0.5):
    opt = torch.optim.SGD(model.method.optimized(model.net), lr=lr, momentum=0.9)
    step = 0
    model.train()
    for epoch in range(1, epochs + 1):
        for x, y in batches:
            model.train()
            penalty = model.penalty()
            loss = nn.functional.cross_entropy(model(x), y) + (penalty if penalty is not None else 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            model.after_step(step)
        model.after_epoch(epoch)


@pytest.mark.parametrize("unflag", [True, False])
def test_fine_tuning_trains_only_the_kept_weights_from_their_random_values(unflag):
    # k = 0.8: the one prune leaves weights whose score is <= 0.5, which only unflag fine-tunes
    c = config(keep_fraction=0.8, epochs=6, gem_miner_period=2, gem_miner_finetune_epochs=2, gem_miner_unflag=unflag)
    model = build_model(c)
    torch.manual_seed(0)
    batches = [(torch.randn(32, 1, 40), torch.randint(0, 10, (32,))) for _ in range(2)]
    _run_phases(model, 4, batches)  # the search
    ps = parts(model)
    scores = [p.scores.detach().clone() for p in ps]
    expected = [(p.flag if unflag else p.found_mask()).clone() for p in ps]
    assert all(p.tuning for p in ps)
    for p, layer, e in zip(ps, weight_layers(model.net), expected, strict=True):
        assert torch.equal(p.tuned_mask, e) and torch.equal(p.trained.detach(), original_weight(layer))
    _run_phases(model, 2, batches)
    for p, layer, s, e in zip(ps, weight_layers(model.net), scores, expected, strict=True):
        assert torch.equal(p.scores.detach(), s)  # frozen while the weights learn
        assert torch.equal(p.tuned_mask, e)
        moved = p.trained.detach() != original_weight(layer)
        assert moved[e].any()
        # pruned weights move only by weight decay, and never reach the network
        assert torch.equal(layer.weight.detach() != 0, e)
    stats = model.statistics()
    kept = sum(int(e.sum()) for e in expected)
    assert stats["params_active"] == kept
    assert stats["params_learned"] == sum(p.scores.numel() for p in ps) + kept
    found = sum(int(p.found_mask().sum()) for p in ps)
    # unflag: every weight the prunes left, the ones whose score is <= 0.5 included
    assert kept > found if unflag else kept == found


def test_fine_tune_weight_decay_is_sgds_weight_decay():
    """0.5 * wd * ||w||^2 in the loss moves the weights exactly as SGD(weight_decay=wd) (the
    reference's fine_tune_wd, main_utils.py:1014-1040)."""
    c = config(epochs=3, gem_miner_finetune_epochs=1, gem_miner_finetune_weight_decay=1e-2)
    model = build_model(c)
    model.after_epoch(2)  # the switch
    ps = parts(model)
    x, y = torch.randn(16, 1, 40), torch.randint(0, 10, (16,))
    start = [p.trained.detach().clone() for p in ps]
    (nn.functional.cross_entropy(model(x), y) + model.penalty()).backward()
    opt = torch.optim.SGD([p.trained for p in ps], lr=0.3, momentum=0.9)
    opt.step()
    ours = [p.trained.detach().clone() for p in ps]
    with torch.no_grad():
        for p, s in zip(ps, start, strict=True):
            p.trained.copy_(s)
            p.trained.grad = None
    nn.functional.cross_entropy(model(x), y).backward()
    torch.optim.SGD([p.trained for p in ps], lr=0.3, momentum=0.9, weight_decay=1e-2).step()
    for o, p in zip(ours, ps, strict=True):
        assert torch.allclose(o, p.trained.detach(), atol=1e-7)


def test_a_checkpoint_keeps_the_phase():
    c = config(epochs=3, gem_miner_finetune_epochs=1)
    model = build_model(c)
    model.after_epoch(2)
    with torch.no_grad():
        for p in parts(model):
            p.trained.mul_(1.5)
    fresh = build_model(c)
    assert not parts(fresh)[0].tuning
    fresh.load_state_dict(model.state_dict())
    assert all(p.tuning for p in parts(fresh))
    x = torch.randn(8, 1, 40)
    model.train(), fresh.train()
    assert torch.equal(model(x), fresh(x))


def test_finetune_epochs_must_leave_a_search_epoch():
    with pytest.raises(ConfigError, match="gem_miner_finetune_epochs"):
        config(epochs=5, gem_miner_finetune_epochs=5)


# ---- on data: the subnet file, and learning above the random-mask control -----------------------
SMALL = {"model": "mlp", "dataset": "mnist1d", "keep_fraction": 0.3, "gem_miner_period": 2, "gem_miner_lambda": 1e-5,
         "lr": 0.3, "batch_size": 128, "schedule": "constant"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gem_miner")
    out = {}
    for finetune in (0, 3):
        c = make_config(method="gem_miner", epochs=8 + finetune, gem_miner_finetune_epochs=finetune, **SMALL)
        path = folder / f"ft{finetune}.safetensors"
        out[finetune] = (c, train(c, make_run_options(device="cpu", save_subnet=str(path))), path)
    return out


@pytest.mark.parametrize("finetune", [0, 3])
def test_eval_reproduces_the_stored_accuracy_exactly(trained, finetune):
    c, result, path = trained[finetune]
    f = read_subnet_file(path)
    assert f.config == c and f.metrics["test_acc"] == result.test_acc
    assert Evaluator(f, device="cpu").accuracy(materialize(f, "cpu")) == {"val_acc": result.val_acc, "test_acc": result.test_acc}
    kinds = {name.split("/")[0] for name in f.tensors}
    assert kinds == ({"mask", "values"} if finetune else {"mask"})
    if finetune:  # the kept weights' trained values, one float32 each
        for name, mask in f.layers("mask").items():
            assert f.tensors[f"values/{name}"].dtype == np.float32 and f.tensors[f"values/{name}"].size == mask.sum()


def test_the_search_of_a_fine_tuned_trial_is_the_trial_without_and_ends_on_the_found_subnetwork(trained):
    """Same seed, constant lr: the first 8 epochs are the same search; the 8th epoch's row shows
    the found subnetwork (the "rare gem" before weight training), not the fine-tune start."""
    without, with_ft = trained[0][1], trained[3][1]
    assert [e.test_acc for e in with_ft.history[:8]] == [e.test_acc for e in without.history]
    assert len(with_ft.history) == 11


def test_learns_above_its_random_mask_control(trained):
    c, result, path = trained[0]
    f = read_subnet_file(path)
    table = run_controls(f, Evaluator(f, device="cpu"), draws=3).set_index("control")
    assert table.loc["found", "test_acc"] == result.test_acc
    assert table.loc["found", "test_acc"] > table.loc["random", "test_acc"] + 0.05
    assert result.test_acc > 0.2  # 10 classes: chance is 0.1
