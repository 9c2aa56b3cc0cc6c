"""Each method does exactly what docs/methods.md says: what is learned changes, what is frozen is
bit-identical, and the method's own invariant holds."""

import math

import pytest
import torch
from torch import nn

from hidden_core.config import METHODS, make_config
from hidden_core.distributions import norm_layers, weight_layers
from hidden_core.methods import build_model
from hidden_core.methods.base import original_weight, parametrization_of


def fit(model, steps=5, lr=0.5, seed=0, in_shape=(1, 40)):
    """A few SGD steps (with momentum and weight decay, which must not leak into frozen
    tensors) on random data."""
    torch.manual_seed(seed)
    x, y = torch.randn(64, *in_shape), torch.randint(0, 10, (64,))
    learned = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(learned, lr=lr, momentum=0.9, weight_decay=1e-3)
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        if model.penalty() is not None:
            loss = loss + model.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def snapshot(model):
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def changed(before, model):
    after = model.state_dict()
    return {name for name in before if not torch.equal(before[name], after[name])}


def build(method, **fields):
    fields.setdefault("norm", "batchnorm")  # every method must cope with BatchNorm layers
    return build_model(make_config(method=method, model="mlp", width=0.5, depth=2, **fields))


@pytest.mark.parametrize("method", METHODS)
def test_frozen_tensors_are_bit_identical_after_training(method):
    model = build(method)
    before = snapshot(model)
    fit(model)
    moved = changed(before, model)
    frozen_originals = {n for n in before if n.endswith("original")}
    assert not (moved & frozen_originals), f"{method} changed frozen weights: {moved & frozen_originals}"
    learned = {n for n, p in model.named_parameters() if p.requires_grad}
    running_stats = {n for n in before if "running" in n or "num_batches" in n}
    assert moved - learned - running_stats == set(), f"{method} changed tensors it does not learn"
    assert moved & learned, f"{method} learned nothing"


def test_dense_learns_every_weight_and_bn_parameter():
    model = build("dense")
    learned = {n for n, p in model.named_parameters() if p.requires_grad}
    assert learned == {n for n, _ in model.named_parameters()}


def test_edge_popup_keeps_exactly_the_reference_count_of_top_score_weights_per_layer():
    model = fit(build("edge_popup", keep_fraction=0.3), steps=3)
    for layer in weight_layers(model.net):
        p = parametrization_of(layer)
        n = p.scores.numel()
        kept = n - int((1 - 0.3) * n)  # hidden-networks GetSubnet: zero the int((1-k)n) lowest
        mask = layer.weight != 0
        assert mask.sum().item() == kept
        top = p.scores.detach().abs().flatten().topk(kept).indices
        assert set(mask.flatten().nonzero().flatten().tolist()) == set(top.tolist())
        assert torch.equal(layer.weight[mask], original_weight(layer)[mask])


def test_edge_popup_gradient_reaches_scores_straight_through_the_mask():
    model = build("edge_popup", keep_fraction=0.5)
    out = model(torch.randn(8, 1, 40)).sum()
    out.backward()
    for layer in weight_layers(model.net):
        grad = parametrization_of(layer).scores.grad
        assert grad is not None and grad.abs().sum() > 0
        # pruned weights get gradients too (straight-through), not only kept ones
        pruned = layer.weight.detach() == 0
        assert grad[pruned].abs().sum() > 0


def test_edge_popup_threshold_strategies_agree():
    from hidden_core.methods import edge_popup

    magnitudes = torch.rand(10_000)
    kept = 3_000
    values = {how: None for how in ("kthvalue", "topk", "sort")}
    saved = dict(edge_popup.SELECTION)
    try:
        for how in values:
            edge_popup.SELECTION["cpu"] = how
            values[how] = edge_popup.top_k_threshold(magnitudes, kept)
            assert values[how].dim() == 0  # stays a tensor: no host sync
    finally:
        edge_popup.SELECTION.update(saved)
    assert values["kthvalue"] == values["topk"] == values["sort"]
    assert (magnitudes >= values["sort"]).sum().item() == kept


def test_bn_only_changes_only_batchnorm_affine_parameters():
    model = build("bn_only")
    for bn in norm_layers(model.net):
        assert 0 <= bn.weight.min() and bn.weight.max() <= 1 and bn.weight.std() > 0  # gamma ~ U[0, 1]
        assert torch.all(bn.bias == 0)
    before = snapshot(model)
    fit(model)
    moved = changed(before, model) - {n for n in before if "running" in n or "num_batches" in n}
    assert moved and all(("weight" in n or "bias" in n) and _is_bn(model, n) for n in moved), moved


def _is_bn(model, name):
    module = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)


def test_bn_only_can_also_learn_the_output_layer():
    model = build("bn_only", train_output_layer=True)
    before = snapshot(model)
    fit(model)
    assert "net.classifier.weight" in changed(before, model)
    assert not any("features" in n and not _is_bn(model, n) for n in changed(before, model) if "running" not in n and "num_batches" not in n)


def test_learn_fraction_changes_only_its_subset():
    model = build("learn_fraction", keep_fraction=0.2)
    fit(model)
    for layer in weight_layers(model.net):
        p = parametrization_of(layer)
        subset = p.subset
        assert subset.sum().item() == round(0.2 * subset.numel())
        effective = layer.weight.detach()
        start = original_weight(layer)
        assert torch.equal(effective[~subset], start[~subset])
        assert not torch.equal(effective[subset], start[subset])
    assert model.statistics()["params_learned"] == sum(round(0.2 * original_weight(layer).numel()) for layer in weight_layers(model.net))


def test_sign_flip_keeps_every_magnitude_and_starts_from_the_initial_signs():
    model = build("sign_flip")
    start = [layer.weight.detach().clone() for layer in weight_layers(model.net)]
    for layer, w0 in zip(weight_layers(model.net), start, strict=True):
        assert torch.equal(layer.weight.detach(), w0)  # scores start with the weight's sign
    fit(model, steps=20, lr=5.0)
    flipped = 0
    for layer, w0 in zip(weight_layers(model.net), start, strict=True):
        w = layer.weight.detach()
        assert torch.equal(w.abs(), w0.abs())
        flipped += (torch.sign(w) != torch.sign(w0)).sum().item()
    assert flipped > 0
    assert model.statistics()["density"] == 1.0


def test_free_prune_density_moves_without_a_k():
    model = build("free_prune")
    assert model.statistics()["density"] == 1.0  # scores start positive: all kept
    fit(model, steps=20, lr=5.0)
    assert model.statistics()["density"] < 1.0


def test_free_prune_penalty_pushes_density():
    densities = {}
    for alpha in (-1.0, 5.0):
        model = build("free_prune", penalty=alpha)
        fit(model, steps=20, lr=2.0)
        densities[alpha] = model.statistics()["density"]
    assert densities[5.0] < densities[-1.0]  # MinPruning (alpha=-1) keeps more connections


def test_supermask_masks_are_random_in_training_and_one_fixed_binary_sample_in_evaluation():
    model = build("supermask")
    layer = weight_layers(model.net)[0]
    model.train()
    a, b = layer.weight.detach().clone(), layer.weight.detach().clone()
    assert not torch.equal(a, b)  # a fresh Bernoulli sample each forward
    w0 = original_weight(layer)
    assert torch.all((a == 0) | (a == w0))
    model.eval()
    e1, e2 = layer.weight.detach().clone(), layer.weight.detach().clone()
    assert torch.equal(e1, e2)  # the same network every evaluation
    assert torch.all((e1 == 0) | (e1 == w0))  # a subnetwork, not a re-weighting
    kept = (e1 != 0).float().mean().item()
    assert 0.45 < kept < 0.55  # a Bernoulli(0.5) sample
    # the statistics count exactly the evaluated network
    stats = model.statistics(model.weight_states())
    weights = sum(original_weight(x).numel() for x in weight_layers(model.net))
    in_use = sum((x.weight.detach() != 0).sum().item() for x in weight_layers(model.net))
    assert stats["density"] == in_use / weights


def test_supermask_deterministic_evaluation_is_the_rounded_probability():
    model = build("supermask", supermask_eval="deterministic")
    for layer in weight_layers(model.net):
        with torch.no_grad():
            parametrization_of(layer).logits.normal_()
    model.eval()
    for layer in weight_layers(model.net):
        logits = parametrization_of(layer).logits.detach()
        expected = original_weight(layer) * (torch.sigmoid(logits) > 0.5)
        assert torch.equal(layer.weight.detach(), expected)
    stats = model.statistics()
    logits = torch.cat([parametrization_of(x).logits.detach().flatten() for x in weight_layers(model.net)])
    assert stats["density"] == (logits > 0).double().mean().item()


def test_supermask_changed_fraction_counts_mask_entries_that_differ_from_the_first_evaluation():
    model = build("supermask")
    start = model.weight_states()
    layers = weight_layers(model.net)
    model.eval()
    before = [x.weight.detach().clone() != 0 for x in layers]
    with torch.no_grad():
        for x in layers:
            parametrization_of(x).logits.add_(torch.randn_like(parametrization_of(x).logits))
    after = [x.weight.detach().clone() != 0 for x in layers]
    differ = sum((a != b).sum().item() for a, b in zip(before, after, strict=True))
    assert model.statistics(start)["changed_fraction"] == differ / sum(a.numel() for a in after) > 0


def test_random_features_learns_only_the_output_layer():
    model = build("random_features")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"net.classifier.weight"}


@pytest.mark.parametrize("method", METHODS)
def test_statistics(method):
    model = build(method, keep_fraction=0.25)
    start = model.weight_states()
    stats = model.statistics(start)
    weights = sum(original_weight(layer).numel() for layer in weight_layers(model.net))
    bn = sum(p.numel() for b in norm_layers(model.net) for p in (b.weight, b.bias))
    assert stats["params_total"] == weights + bn
    assert stats["changed_fraction"] == 0
    if method == "edge_popup":
        assert stats["params_active"] == bn + sum(
            original_weight(layer).numel() - int(0.75 * original_weight(layer).numel()) for layer in weight_layers(model.net)
        )
        assert stats["params_learned"] == weights
    fit(model, steps=10, lr=2.0)
    after = model.statistics(start)
    assert 0 <= after["changed_fraction"] <= 1
    if method == "bn_only":
        assert after["changed_fraction"] == 0
    if method in ("dense", "edge_popup", "sign_flip", "free_prune", "learn_fraction"):
        assert after["changed_fraction"] > 0
    assert not math.isnan(after["density"])


def test_adding_a_method_does_not_touch_models():
    """Models build plain torch layers; no model module mentions a method."""
    import inspect

    import hidden_core.models.convnet as convnet
    import hidden_core.models.mlp as mlp
    import hidden_core.models.resnet as resnet

    for module in (mlp, convnet, resnet):
        source = inspect.getsource(module)
        assert not any(name in source for name in METHODS if name != "dense")
