"""iterand (Chijiwa et al. 2021) against a re-implementation of its reference code
(dchiji-ntt/iterand) on random tensors; its subnet file; a small run that learns.

Each `ref_*` function transcribes the reference lines it cites (docs/methods.md, "iterand")."""

import math

import numpy as np
import pytest
import torch

from hidden_core import make_config, train
from hidden_core.config import ConfigError, make_run_options
from hidden_core.distributions import draw, fans, weight_layers
from hidden_core.methods import build_model
from hidden_core.methods.base import original_weight, parametrization_of
from hidden_core.methods.iterand import redraw_seed, reference_kept_count
from hidden_core.paths import CHECKPOINT_FILE
from hidden_core.subnet.controls import score_controls
from hidden_core.subnet.evaluate import Evaluator
from hidden_core.subnet.fileformat import read_subnet_file
from hidden_core.subnet.state import materialize


# ---- models/networks/sparse_modules.py:8-21 GetSubnet, percentile --------------------------
def ref_percentile(t, q):
    k = 1 + round(.01 * float(q) * (t.numel() - 1))
    return t.view(-1).kthvalue(k).values.item()


class RefGetSubnet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, sparsity, zeros, ones):
        k_val = ref_percentile(scores, sparsity * 100)
        return torch.where(scores < k_val, zeros, ones)

    @staticmethod
    def backward(ctx, g):
        return g, None, None, None


def ref_subnet(scores, sparsity):
    return RefGetSubnet.apply(scores, sparsity, torch.zeros_like(scores), torch.ones_like(scores))


# ---- sparse_modules.py:46-65 rerandomize_ (mode 'bernoulli'), :149-155 rerandomize ----------
def ref_rerandomize(param, weight_score, sparsity, rerand_rate, la, rnd, b):
    """The reference's step with its two random draws given: `rnd` (the twin re-initialized
    with init_mode/init_scale) and `b` (torch.bernoulli(ones * la))."""
    mask = ref_subnet(weight_score, sparsity * rerand_rate)
    t1 = param * mask
    t2 = param * (1 - mask) * (1 - b)
    t3 = rnd * (1 - mask) * b
    return t1 + t2 + t3


# ---- commands/train.py:116-121 with models/supervised_learning.py:63-90 (the loop) -----------
def ref_rerandomized_before(total_iters, rerand_freq):
    """The `it` values (optimizer steps done) before whose iteration the reference re-draws."""
    return [it for it in range(total_iters) if (it + 1) % int(rerand_freq) == 0]


def small(**fields):
    return make_config(**{"method": "iterand", "model": "mlp", "depth": 2, "width": 0.5, **fields})


def scramble_scores(model, seed=0):
    """Scores as after some training (any signs and sizes), so the masks are not the init's."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in weight_layers(model.net):
            p = parametrization_of(layer)
            p.scores.copy_(torch.randn(p.scores.shape, generator=g))


@pytest.mark.parametrize("k", [0.05, 0.3, 0.5, 0.6, 0.9, 1.0])
def test_mask_and_forward_equal_the_reference_get_subnet_on_signed_scores(k):
    model = build_model(small(keep_fraction=k, model="convnet", dataset="digits", width=0.25))
    scramble_scores(model)
    for layer in weight_layers(model.net):
        scores = parametrization_of(layer).scores.detach()
        expected = original_weight(layer) * ref_subnet(scores, 1 - k)
        assert torch.equal(layer.weight.detach(), expected)


def test_kept_count_is_the_reference_percentile_where_hidden_networks_differs():
    differ = 0
    for n in range(1, 300):
        for k in (0.1, 0.3, 0.5, 0.7, 0.9):
            ref = int(ref_subnet(torch.randn(n), 1 - k).sum())
            assert reference_kept_count(n, k) == ref
            differ += ref != n - int((1 - k) * n)
    assert differ > 0  # the reference's count is not edge_popup's


def test_score_gradient_is_the_references_straight_through():
    model = build_model(small(keep_fraction=0.5))
    scramble_scores(model)
    layer = weight_layers(model.net)[1]
    p, w = parametrization_of(layer), original_weight(layer)
    probe = torch.randn_like(w)
    (layer.weight * probe).sum().backward()
    ref_scores = p.scores.detach().clone().requires_grad_(True)
    (w * ref_subnet(ref_scores, 0.5) * probe).sum().backward()
    assert torch.equal(p.scores.grad, ref_scores.grad)  # dL/ds = dL/dw_eff * w, no sign(s)


def test_score_init_is_the_references_kaiming_uniform_relu():
    model = build_model(small(width=3.0))
    for layer in weight_layers(model.net):
        s = parametrization_of(layer).scores.detach()
        bound = math.sqrt(6.0 / fans(s)[0])
        assert s.abs().max() <= bound and s.abs().max() > 0.98 * bound
        assert abs(s.std().item() - bound / math.sqrt(3)) < 0.05 * bound  # U(-b, b): std b/sqrt(3)


@pytest.mark.parametrize("rate", [0.1, 1.0])
@pytest.mark.parametrize("dist", ["signed_constant", "kaiming_uniform"])
def test_redraw_equals_the_references_bernoulli_rerandomize(rate, dist):
    config = small(keep_fraction=0.4, iterand_rate=rate, iterand_period=7, weight_dist=dist)
    model = build_model(config)
    scramble_scores(model)
    before = [original_weight(x).clone() for x in weight_layers(model.net)]
    step = 13  # (13 + 1) % 7 == 0: a re-draw follows this step
    model.after_step(step)
    for index, (layer, w) in enumerate(zip(weight_layers(model.net), before, strict=True)):
        # our draws, taken from the generator the method seeds with (seed, layer, step)
        g = torch.Generator().manual_seed(redraw_seed(config.seed, index, step))
        fan_in, fan_out = fans(w)
        rnd = draw(w.shape, fan_in, fan_out, config, g)
        b = (torch.rand(w.shape, generator=g) < rate).float()
        p = parametrization_of(layer)
        expected = ref_rerandomize(w, p.scores.detach(), 1 - 0.4, 1.0, rate, rnd, b)
        assert torch.equal(original_weight(layer), expected)
        pruned = ~p.mask()
        assert torch.equal(p.changed, pruned & (b > 0))  # re-drawn at least once
        assert torch.equal(original_weight(layer)[~pruned], w[~pruned])  # kept weights never move
        assert abs(p.changed[pruned].double().mean().item() - rate) < 0.05


def test_redraws_follow_the_references_schedule_and_are_a_function_of_seed_layer_step(monkeypatch):
    import hidden_core.methods.iterand as iterand

    seen = []
    monkeypatch.setattr(iterand, "redraw_pruned", lambda model, config, fan_scale, step: seen.append(step))
    model = build_model(small(iterand_period=300))
    for step in range(1, 1000):
        model.after_step(step)
    assert seen == [it for it in ref_rerandomized_before(1000, 300) if it >= 1]  # [299, 599, 899]
    monkeypatch.undo()
    # the same (seed, layer, step) draws the same weights in another network object
    a, b = build_model(small()), build_model(small())
    for m in (a, b):
        scramble_scores(m)
        m.after_step(299)
    assert all(torch.equal(original_weight(x), original_weight(y)) for x, y in zip(weight_layers(a.net), weight_layers(b.net), strict=True))
    assert redraw_seed(0, 0, 299) != redraw_seed(0, 0, 599) != redraw_seed(0, 1, 299) != redraw_seed(1, 0, 299)


def test_rate_zero_with_abs_scores_is_edge_popup_bit_for_bit():
    ours = build_model(small(iterand_scores="abs", iterand_rate=0.0, keep_fraction=0.3))
    popup = build_model(make_config(method="edge_popup", model="mlp", depth=2, width=0.5, keep_fraction=0.3))
    for x, y in zip(weight_layers(ours.net), weight_layers(popup.net), strict=True):
        assert torch.equal(parametrization_of(x).scores, parametrization_of(y).scores)
    ours.after_step(299)
    assert all(torch.equal(x.weight, y.weight) for x, y in zip(weight_layers(ours.net), weight_layers(popup.net), strict=True))


def test_options_are_validated_config_fields():
    with pytest.raises(ConfigError, match="iterand_rate"):
        small(iterand_rate=1.5)
    with pytest.raises(ConfigError, match="iterand_period"):
        small(iterand_period=0)
    with pytest.raises(ConfigError, match="iterand_scores"):
        small(iterand_scores="magnitude")
    assert small(iterand_rate=0.5).trial_id != small().trial_id


# ---- the subnet file ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short digits run with a re-draw every 3 steps, saved through train()'s own hook."""
    path = tmp_path_factory.mktemp("iterand") / "iterand.safetensors"
    config = small(dataset="digits", epochs=2, batch_size=128, iterand_period=3, iterand_rate=0.5, optimizer="adam", lr=0.01)
    result = train(config, make_run_options(device="cpu", save_subnet=str(path)))
    return config, result, path


def test_subnet_eval_reproduces_the_stored_accuracy_exactly(trained):
    config, result, path = trained
    f = read_subnet_file(path)
    assert f.metrics["test_acc"] == result.test_acc
    changed = f.layers("changed")
    assert sum(int(c.sum()) for c in changed.values()) > 0  # re-draws happened and are stored
    acc = Evaluator(f, device="cpu").accuracy(materialize(f, "cpu"))
    assert acc == {"val_acc": result.val_acc, "test_acc": result.test_acc}


def test_file_rebuilds_the_redrawn_weights_and_fresh_weights_drop_them(trained):
    config, _, path = trained
    f = read_subnet_file(path)
    seeds = build_model(config)
    plain = materialize(f, "cpu")
    fresh = materialize(f, "cpu", weights_seed=config.seed + 10_000)
    fresh_seeds = build_model(config.model_copy(update={"seed": config.seed + 10_000}))
    for name, layer in ((n, m) for n, m in seeds.net.named_modules() if m in weight_layers(seeds.net)):
        mask = torch.from_numpy(f.layers("mask")[name])
        changed = torch.from_numpy(f.layers("changed")[name])
        weight = dict(plain.named_modules())[name].weight
        assert torch.equal(weight[mask & ~changed], original_weight(layer)[mask & ~changed])  # the seed's
        assert torch.equal(weight[mask & changed], torch.from_numpy(f.tensors[f"values/{name}"])[mask[changed]])
        fresh_weight = dict(fresh.named_modules())[name].weight
        fresh_original = original_weight(dict(fresh_seeds.net.named_modules())[name])
        assert torch.equal(fresh_weight, fresh_original * mask)  # the found mask alone on fresh weights


def test_resume_gives_the_uninterrupted_redraws(tmp_path):
    config = small(dataset="digits", epochs=3, batch_size=256, iterand_period=2, iterand_rate=0.5)

    class Interrupted(Exception):
        pass

    def stop(record):
        if record.epoch == 1:
            raise Interrupted

    whole = train(config, make_run_options(checkpoint_dir=str(tmp_path / "whole")))
    with pytest.raises(Interrupted):
        train(config, make_run_options(checkpoint_dir=str(tmp_path / "split"), checkpoint_every_s=0), on_epoch=stop)
    resumed = train(config, make_run_options(checkpoint_dir=str(tmp_path / "split")))
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in whole.history]
    a = torch.load(tmp_path / "whole" / CHECKPOINT_FILE, weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith(".changed") and a[k].any() for k in a)


def test_learns_mnist1d_above_its_own_random_mask_control(tmp_path):
    path = tmp_path / "iterand.safetensors"
    config = make_config(method="iterand", dataset="mnist1d", model="mlp", depth=2, width=2, weight_dist="signed_constant", keep_fraction=0.5,
                         epochs=6, batch_size=128, optimizer="adam", lr=0.01, weight_decay=5e-4, iterand_period=10, iterand_rate=0.1)
    result = train(config, make_run_options(device="cpu", save_subnet=str(path)))
    f = read_subnet_file(path)
    rows = score_controls(f, Evaluator(f, device="cpu"), [("random", d) for d in range(3)])
    control = float(np.mean([r["test_acc"] for r in rows]))
    assert result.status == "completed" and result.density == pytest.approx(0.5, abs=1e-3)
    assert result.test_acc > 0.3 and result.test_acc > control + 0.15, (result.test_acc, control)
