"""Our methods against small re-implementations of the reference codes, on random tensors.

Each `ref_*` function below transcribes the reference line it cites (docs/methods.md lists
them); the tests feed the same tensors through the reference and through our API."""

import math

import pytest
import torch

from hidden_core.config import ConfigError, make_config
from hidden_core.distributions import norm_layers, weight_layers
from hidden_core.methods import DISABLED_GAMMA, build_model
from hidden_core.methods.base import original_weight, parametrization_of
from hidden_core.methods.edge_popup import kept_count


# ---- hidden-networks utils/conv_type.py GetSubnet.forward ------------------------------------
def ref_get_subnet(scores: torch.Tensor, k: float) -> torch.Tensor:
    out = scores.clone()
    _, idx = scores.flatten().sort()
    j = int((1 - k) * scores.numel())
    flat_out = out.flatten()
    flat_out[idx[:j]] = 0
    flat_out[idx[j:]] = 1
    return flat_out.view_as(scores)


@pytest.mark.parametrize("k", [0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_edge_popup_mask_equals_the_reference_get_subnet(k):
    model = build_model(make_config(method="edge_popup", keep_fraction=k, model="convnet", depth=2, width=0.25))
    for layer in weight_layers(model.net):
        scores = parametrization_of(layer).scores.detach()
        expected = original_weight(layer) * ref_get_subnet(scores.abs(), k)
        assert torch.equal(layer.weight.detach(), expected)


def test_edge_popup_kept_count_is_the_reference_formula_where_rounding_differs():
    differ = 0
    for n in range(1, 400):
        for k in (0.1, 0.3, 0.5, 0.7, 0.9):
            ref = int(ref_get_subnet(torch.rand(n), k).sum())
            assert kept_count(n, k) == ref
            differ += ref != max(1, round(k * n))
    assert differ > 0  # the old round(k*n) was a different network in these cases


# ---- training-neural-connectivities Layers.py:11-12, :65 and Functions.py mask/flip ----------
def ref_mask(score):  # Functions.py `mask`: sign(relu(x)) forward, identity backward
    return torch.sign(torch.relu(score)).detach() + score - score.detach()


def ref_flip(score):  # Functions.py `flip`: sign(x) forward, identity backward
    return torch.sign(score).detach() + score - score.detach()


@pytest.mark.parametrize("method", ["free_prune", "sign_flip"])
def test_score_init_is_the_references_uniform_001_01(method):
    model = build_model(make_config(method=method, model="mlp", width=2.0))
    scores = torch.cat([parametrization_of(x).scores.detach().abs().flatten() for x in weight_layers(model.net)])
    assert scores.min() >= 0.01 and scores.max() <= 0.1
    assert abs(scores.mean().item() - 0.055) < 0.002  # U(0.01, 0.1) has mean 0.055
    assert abs(scores.std().item() - 0.09 / math.sqrt(12)) < 0.002
    if method == "sign_flip":  # ours is sign(w) * s_ref: the same network as w * sign(s_ref)
        for x in weight_layers(model.net):
            assert torch.equal(torch.sign(parametrization_of(x).scores.detach()), torch.sign(original_weight(x)))


def _linear_loss_grad(model, layer, probe):
    (layer.weight * probe).sum().backward()
    return parametrization_of(layer).scores.grad


def test_free_prune_forward_and_gradient_equal_the_reference():
    model = build_model(make_config(method="free_prune", model="mlp"))
    layer = weight_layers(model.net)[0]
    p = parametrization_of(layer)
    with torch.no_grad():
        p.scores.copy_(torch.randn_like(p.scores) * 0.05)  # some connections pruned
    w = original_weight(layer)
    ref_scores = p.scores.detach().clone().requires_grad_(True)
    probe = torch.randn_like(w)
    (w * ref_mask(ref_scores) * probe).sum().backward()
    ours = _linear_loss_grad(model, layer, probe)
    assert torch.equal(layer.weight.detach(), w * torch.sign(torch.relu(ref_scores.detach())))
    assert torch.allclose(ours, ref_scores.grad)


def test_sign_flip_forward_and_gradient_equal_the_reference():
    model = build_model(make_config(method="sign_flip", model="mlp"))
    layer = weight_layers(model.net)[0]
    p = parametrization_of(layer)
    w = original_weight(layer)
    with torch.no_grad():
        p.scores.copy_(torch.randn_like(p.scores) * 0.05)  # some signs flipped
    # the reference's score for the same network: s_ref = sign(w) * s
    ref_scores = (torch.sign(w) * p.scores.detach()).requires_grad_(True)
    probe = torch.randn_like(w)
    (w * ref_flip(ref_scores) * probe).sum().backward()
    ours = _linear_loss_grad(model, layer, probe)
    assert torch.allclose(layer.weight.detach(), w * torch.sign(ref_scores.detach()))
    # d/ds_ref = d/ds * sign(w): the same step in the reference's coordinates
    assert torch.allclose(ours * torch.sign(w), ref_scores.grad)


# ---- deconstructing-lottery-tickets masked_networks.py get_effective_mask (170-190) -----------
def ref_supermask_train(kernel, mask_logits, bernoulli_sample):
    p = torch.sigmoid(mask_logits)
    return kernel * (bernoulli_sample + p - p.detach())


def ref_supermask_round(kernel, mask_logits):  # --round_mask at test time; TF round: half to even
    return kernel * torch.round(torch.sigmoid(mask_logits))


def test_supermask_training_gradient_equals_the_reference():
    model = build_model(make_config(method="supermask", model="mlp"))
    layer = weight_layers(model.net)[0]
    p = parametrization_of(layer)
    with torch.no_grad():
        p.logits.normal_()
    w = original_weight(layer)
    probe = torch.randn_like(w)
    model.train()
    (layer.weight * probe).sum().backward()
    ref_logits = p.logits.detach().clone().requires_grad_(True)
    (ref_supermask_train(w, ref_logits, torch.zeros_like(w)) * probe).sum().backward()
    assert torch.allclose(p.logits.grad, ref_logits.grad)


def test_supermask_deterministic_evaluation_equals_the_reference_round_including_ties():
    model = build_model(make_config(method="supermask", model="mlp", supermask_eval="deterministic"))
    layer = weight_layers(model.net)[0]
    p = parametrization_of(layer)
    with torch.no_grad():
        p.logits.normal_()
        p.logits.view(-1)[:50] = 0.0  # sigmoid = 0.5 exactly: TF rounds it to 0
    model.eval()
    assert torch.equal(layer.weight.detach(), ref_supermask_round(original_weight(layer), p.logits.detach()))


def test_supermask_sampled_evaluation_is_a_bernoulli_sample_of_the_probabilities():
    model = build_model(make_config(method="supermask", model="mlp", width=3.0))
    probs = []
    for layer in weight_layers(model.net):
        with torch.no_grad():
            parametrization_of(layer).logits.uniform_(-3, 3)
        probs.append(torch.sigmoid(parametrization_of(layer).logits.detach()).flatten())
    model.eval()
    kept = torch.cat([(x.weight.detach() != 0).flatten() for x in weight_layers(model.net)]).double()
    p = torch.cat(probs).double()
    # sum of independent Bernoulli(p): mean sum(p), variance sum(p(1-p)); 5 sigma
    assert abs(kept.sum() - p.sum()) < 5 * torch.sqrt((p * (1 - p)).sum())
    # calibration: among weights with p in a bin, the kept fraction is the bin's mean p
    for lo in (0.1, 0.4, 0.7):
        sel = (p >= lo) & (p < lo + 0.2)
        assert abs(kept[sel].mean() - p[sel].mean()) < 0.03
    # a different trial seed draws a different evaluation sample
    other = build_model(make_config(method="supermask", model="mlp", width=3.0, seed=1))
    seeds = {parametrization_of(x).eval_seed for x in weight_layers(model.net)}
    assert seeds.isdisjoint({parametrization_of(x).eval_seed for x in weight_layers(other.net)})


# ---- open_lth models/cifar_resnet.py:65, models/bn_initializers.py `uniform` ------------------
@pytest.mark.parametrize("method", ["dense", "random_features", "bn_only", "edge_popup"])
def test_resnet_has_a_classifier_bias_and_open_lth_bn_init_for_the_bn_only_papers_methods(method):
    model = build_model(make_config(method=method, model="resnet", depth=8, width=0.5))
    fc = model.net.classifier
    assert fc.bias is not None
    bound = 1 / math.sqrt(fc.in_features)  # torch's Linear default, which open_lth keeps
    assert fc.bias.abs().max() <= bound and fc.bias.std() > 0
    gammas = torch.cat([bn.weight.detach() for bn in norm_layers(model.net)])
    if method == "edge_popup":  # hidden-networks' NonAffineBatchNorm: gamma 1, frozen
        assert torch.all(gammas == 1)
    else:
        assert gammas.min() >= 0 and gammas.max() < 1 and gammas.std() > 0.2  # U[0, 1): std 0.29
    assert all(torch.all(bn.bias == 0) for bn in norm_layers(model.net))
    learned = {n for n, q in model.named_parameters() if q.requires_grad}
    assert ("net.classifier.bias" in learned) == (method in ("dense", "random_features"))
    trained_head = build_model(make_config(method="bn_only", model="resnet", depth=8, train_output_layer=True))
    assert {"net.classifier.weight", "net.classifier.bias"} <= {n for n, q in trained_head.named_parameters() if q.requires_grad}


def test_resnet_params_total_counts_the_classifier_bias():
    model = build_model(make_config(method="dense", model="resnet", depth=8))
    assert model.statistics()["params_total"] == sum(q.numel() for q in model.net.parameters())


# ---- LeNet 300-100: the MLP of Zhou et al. and of Ivan & Florian -------------------------------
def test_mlp_layer_units_build_lenet_300_100():
    config = make_config(model="mlp", mlp_layer_units=[300, 100], dataset="mnist1d")
    assert config.depth == 2
    net = build_model(config).net
    shapes = [tuple(x.weight.shape) for x in weight_layers(net)]
    assert shapes == [(300, 40), (100, 300), (10, 100)]
    half = build_model(make_config(model="mlp", mlp_layer_units=[300, 100], width=0.5)).net
    assert [tuple(x.weight.shape) for x in weight_layers(half)] == [(150, 40), (50, 150), (10, 50)]


def test_mlp_layer_units_that_disagree_with_depth_or_mlp_units_are_errors():
    with pytest.raises(ConfigError, match="depth"):
        make_config(model="mlp", mlp_layer_units=[300, 100], depth=3)
    with pytest.raises(ConfigError, match="mlp_units"):
        make_config(model="mlp", mlp_layer_units=[300, 100], mlp_units=50)
    with pytest.raises(ConfigError, match="mlp_layer_units"):
        make_config(model="mlp", mlp_layer_units=[300, 0])


# ---- BN-only "disabled features" (Frankle, Schwab & Morcos 2021, Section 5) ---------------------
def test_disabled_features_counts_batchnorm_gammas_below_001_on_a_constructed_network():
    model = build_model(make_config(method="bn_only", model="mlp", depth=2, mlp_units=30))
    bns = norm_layers(model.net)
    with torch.no_grad():
        bns[0].weight.fill_(0.5)
        bns[0].weight[:10] = torch.tensor([0.0, 0.005, -0.009, 0.0099, -0.0001, 0.01, -0.01, 0.02, -0.5, 1.0])
        bns[1].weight.fill_(-0.003)  # negative gamma near zero disables too: |gamma|
        bns[1].weight[:15] = 0.3
    # layer 0: 5 of 30 below 0.01 in magnitude (0.01 itself is not); layer 1: 15 of 30
    assert DISABLED_GAMMA == 0.01
    assert model.statistics()["disabled_features"] == pytest.approx(20 / 60)


def test_disabled_features_is_nan_without_batchnorm():
    assert math.isnan(build_model(make_config(method="dense", model="mlp")).statistics()["disabled_features"])
