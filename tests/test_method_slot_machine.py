"""slot_machine (Aladago & Torresani 2021) against its reference code,
maxwell-aladago/slot-machines (snapshot a490464): `selection_engine.py` (GreedySelection,
ProbabilisticSelection), `linear.py` / `conv2d.py` (forward, xavier_uniform_). The `Ref*`
functions below transcribe those lines; the tests feed the same tensors through them and
through our layers. Then: the subnet file (K-value indices in ceil(log2 K) bits, exact
re-evaluation) and a short MNIST-1D training against its own control."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import autograd
from torch.nn import functional as F  # noqa: N812 (the reference's own alias)

from hidden_core import make_config, train
from hidden_core.config import ConfigError, make_run_options
from hidden_core.distributions import fans, weight_layers
from hidden_core.methods import build_model
from hidden_core.methods.base import original_weight, parametrization_of
from hidden_core.methods.slot_machine import glorot_bound, index_bits
from hidden_core.subnet.evaluate import Evaluator
from hidden_core.subnet.fileformat import SubnetFormatError, packed_size, read_subnet_file
from hidden_core.subnet.state import learned_tensors, materialize, save_subnet, weight_layer_names


# ---- maxwell-aladago/slot-machines selection_engine.py ---------------------------------------
class RefGreedySelection(autograd.Function):
    @staticmethod
    def forward(ctx, scores):
        idx = torch.argmax(scores, dim=-1)
        scores_net = torch.eye(scores.size(-1), device=scores.device)
        return scores_net[idx]

    @staticmethod
    def backward(ctx, g):
        return g  # "pass the upstream gradient as is"


class RefProbabilisticSelection(autograd.Function):
    @staticmethod
    def forward(ctx, scores):
        size = scores.size()
        prob = F.softmax(scores, dim=-1)
        idx = torch.multinomial(prob.view(-1, size[-1]), num_samples=1, replacement=False).view(size[:-1])
        scores_net = torch.eye(scores.size(-1), device=scores.device)
        return scores_net[idx]

    @staticmethod
    def backward(ctx, g):
        return g


# ---- linear.py / conv2d.py forward: net = sum(self.weight * selected_net, dim=-1) -------------
def ref_effective_weight(weight, scores, engine):
    return torch.sum(weight * engine.apply(scores), dim=-1)


def slot_model(k=8, selection="greedy", **fields):
    fields = {"model": "mlp", "width": 0.5, "depth": 2, **fields}
    return build_model(make_config(method="slot_machine", slot_machine_k=k, slot_machine_selection=selection, **fields))


def randomize_scores(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for layer in weight_layers(model.net):
        p = parametrization_of(layer)
        with torch.no_grad():
            p.scores.copy_(torch.randn(p.scores.shape, generator=g))


@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_values_and_scores_start_as_the_reference_draws_them(model):
    m = slot_model(k=16, model=model, weight_dist="xavier_normal", dataset="mnist1d")
    for layer in weight_layers(m.net):
        p = parametrization_of(layer)
        w = original_weight(layer)
        assert p.values.shape == (*w.shape, 16) and p.scores.shape == p.values.shape
        assert torch.equal(p.values[..., 0], w)  # slot 0 is the seed's weight
        fan_in, fan_out = fans(w)
        # the other 15 are further draws of weight_dist (xavier_normal: std sqrt(2/(fi+fo)),
        # the variance of the reference's Glorot uniform) with the layer's fans, K not counted
        extra = p.values[..., 1:]
        assert abs(extra.std().item() / math.sqrt(2 / (fan_in + fan_out)) - 1) < 0.1
        assert not torch.equal(extra[..., 0], w)
        # scores ~ U(0, a), a = sqrt(6 / (fan_in + fan_out)) (conv2d.py:66-68, linear.py:33-35)
        a = glorot_bound(w)
        assert a == math.sqrt(6.0 / (fan_in + fan_out))
        assert p.scores.min() >= 0 and p.scores.max() < a
        assert abs(p.scores.mean().item() / (a / 2) - 1) < 0.1
    # regenerated from config + seed, bit for bit; another seed draws other values
    again = slot_model(k=16, model=model, weight_dist="xavier_normal", dataset="mnist1d")
    other = slot_model(k=16, model=model, weight_dist="xavier_normal", dataset="mnist1d", seed=1)
    for a_, b_, c_ in zip(weight_layers(m.net), weight_layers(again.net), weight_layers(other.net), strict=True):
        assert torch.equal(parametrization_of(a_).values, parametrization_of(b_).values)
        assert torch.equal(parametrization_of(a_).scores, parametrization_of(b_).scores)
        assert not torch.equal(parametrization_of(a_).values, parametrization_of(c_).values)


@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_greedy_forward_and_gradient_equal_the_reference(model):
    m = slot_model(k=8, model=model, dataset="mnist1d")
    randomize_scores(m)
    m.train()
    for i, layer in enumerate(weight_layers(m.net)):
        p = parametrization_of(layer)
        ref_scores = p.scores.detach().clone().requires_grad_(True)
        ref_w = ref_effective_weight(p.values, ref_scores, RefGreedySelection)
        assert torch.equal(layer.weight.detach(), ref_w.detach())
        probe = torch.randn(ref_w.shape, generator=torch.Generator().manual_seed(i))
        (ref_w * probe).sum().backward()
        (layer.weight * probe).sum().backward()
        assert torch.equal(p.scores.grad, ref_scores.grad)  # dL/ds_k = dL/dw * W_k, every k
        nonzero = p.scores.grad != 0
        assert nonzero.float().mean() > 0.99  # every value's score learns, not only the chosen one's


def test_probabilistic_gradient_equals_the_reference_whatever_was_drawn():
    m = slot_model(k=4, selection="probabilistic")
    randomize_scores(m)
    m.train()
    layer = weight_layers(m.net)[1]
    p = parametrization_of(layer)
    ref_scores = p.scores.detach().clone().requires_grad_(True)
    ref_w = ref_effective_weight(p.values, ref_scores, RefProbabilisticSelection)
    probe = torch.randn(ref_w.shape)
    (ref_w * probe).sum().backward()
    ours = layer.weight
    (ours * probe).sum().backward()
    assert not torch.equal(ours.detach(), ref_w.detach())  # two independent draws differ ...
    assert torch.equal(p.scores.grad, ref_scores.grad)  # ... the straight-through gradient does not


def _chosen(weight, values):
    """Which slot each entry of a forward's weight is (values are distinct draws)."""
    hits = weight.unsqueeze(-1) == values
    assert torch.all(hits.sum(-1) >= 1)
    return hits.float().argmax(-1)


def test_probabilistic_training_forward_draws_each_weight_from_the_softmax_of_its_scores():
    torch.manual_seed(0)
    m = slot_model(k=4, selection="probabilistic", width=1.0)
    layer = weight_layers(m.net)[1]  # 100 x 100 connections
    p = parametrization_of(layer)
    with torch.no_grad():
        p.scores.copy_(torch.randn(p.scores.shape) * 1.5)
    probs = torch.softmax(p.scores.detach(), -1)
    m.train()
    draws = 60
    ours = torch.stack([F.one_hot(_chosen(layer.weight.detach(), p.values), 4) for _ in range(draws)]).double().mean(0)
    ref = torch.stack([RefProbabilisticSelection.apply(p.scores.detach()) for _ in range(draws)]).double().mean(0)
    # calibration, ours and the reference alike: among (weight, value) pairs whose softmax
    # probability lies in a bin, the drawn frequency is the bin's mean probability
    for lo in (0.05, 0.2, 0.4, 0.6, 0.8):
        sel = (probs >= lo) & (probs < lo + 0.15)
        assert sel.sum() > 500
        for freq in (ours, ref):
            assert abs(freq[sel].mean().item() - probs[sel].double().mean().item()) < 0.01
    # a fresh draw every training forward; evaluation is the argmax, every time
    assert not torch.equal(layer.weight.detach(), layer.weight.detach())
    m.eval()
    assert torch.equal(_chosen(layer.weight.detach(), p.values), p.scores.detach().argmax(-1))
    assert torch.equal(layer.weight.detach(), ref_effective_weight(p.values, p.scores.detach(), RefGreedySelection))


def test_greedy_changed_fraction_counts_the_connections_whose_choice_moved():
    m = slot_model(k=8)
    start = m.weight_states()
    stats = m.statistics(start)
    assert stats["density"] == 1.0 and stats["changed_fraction"] == 0
    assert stats["params_learned"] == 8 * stats["params_total"]  # one score per value
    randomize_scores(m)
    moved = m.statistics(start)["changed_fraction"]
    assert 0.8 < moved < 0.95  # a random argmax among 8 keeps 1/8 of the choices


@pytest.mark.parametrize("k", [2, 3, 8, 16])
def test_indices_round_trip_through_the_file_in_ceil_log2_k_bits(k, tmp_path):
    model = slot_model(k=k, model="convnet", dataset="mnist1d", width=0.25)
    randomize_scores(model, seed=k)
    model.eval()
    config = make_config(method="slot_machine", slot_machine_k=k, model="convnet", dataset="mnist1d", width=0.25, depth=2)
    tensors, shapes, packed = learned_tensors(model)
    layers = dict(model.net.named_modules())
    bits = math.ceil(math.log2(k))
    assert index_bits(k) == bits
    assert set(tensors) == {f"index/{name}" for name in weight_layer_names(model.net)}
    for name in weight_layer_names(model.net):
        assert packed[f"index/{name}"] == bits
        assert tensors[f"index/{name}"].nbytes == packed_size(tuple(shapes[name]), bits) == math.ceil(math.prod(shapes[name]) * bits / 8)
    path = save_subnet(tmp_path / f"k{k}.safetensors", model, config)
    f = read_subnet_file(path)
    assert json.loads(f.metadata["packed"]) == {n: bits for n in tensors}
    for name in weight_layer_names(model.net):
        p = parametrization_of(layers[name])
        assert np.array_equal(f.unpacked(f"index/{name}").astype(np.int64), p.index().numpy())
    plain = materialize(f)
    for name in weight_layer_names(model.net):
        assert torch.equal(dict(plain.named_modules())[name].weight, layers[name].weight.detach())


def test_an_index_beyond_k_is_refused(tmp_path):
    model = slot_model(k=3, model="mlp")
    config = make_config(method="slot_machine", slot_machine_k=3, model="mlp", width=0.5, depth=2)
    f = read_subnet_file(save_subnet(tmp_path / "k3.safetensors", model, config))
    first = weight_layer_names(model.net)[0]
    bad = np.full(f.shapes[first], 3)  # fits in 2 bits, but there are only 3 values
    with pytest.raises(SubnetFormatError, match=r"outside \[0, 3\)"):
        materialize(f, replace={"index": {first: bad}})


def test_bad_options_are_errors_naming_the_field_and_the_allowed_values():
    with pytest.raises(ConfigError, match=r"slot_machine_k: 1 is not in \[2, 256\]"):
        make_config(method="slot_machine", slot_machine_k=1)
    with pytest.raises(ConfigError, match=r"slot_machine_selection: 'argmax' is not allowed.*'greedy' or 'probabilistic'"):
        make_config(method="slot_machine", slot_machine_selection="argmax")
    # another method does not read the options: one trial
    assert make_config(method="dense", slot_machine_k=4).trial_id == make_config(method="dense").trial_id
    assert make_config(method="slot_machine", slot_machine_k=4).trial_id != make_config(method="slot_machine").trial_id


# ---- training: exact re-evaluation, and learning above its own control ------------------------
RECIPE = {"greedy": {"lr": 0.1}, "probabilistic": {"lr": 10.0}}  # MNIST-1D MLP; see docs/methods.md


def _train(tmp_path, selection, epochs):
    config = make_config(method="slot_machine", slot_machine_selection=selection, dataset="mnist1d", model="mlp",
                         epochs=epochs, schedule="constant", momentum=0.9, **RECIPE[selection])
    path = tmp_path / f"{selection}.safetensors"
    result = train(config, make_run_options(device="cpu", threads=1, save_subnet=str(path)))
    return config, result, path


@pytest.mark.parametrize("selection", ["greedy", "probabilistic"])
def test_hidden_subnet_eval_reproduces_the_stored_test_accuracy_exactly(selection, tmp_path, capsys):
    from hidden_core.cli import main

    _, result, path = _train(tmp_path, selection, epochs=2)
    assert main(["subnet", "eval", str(path), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["matches_stored"] is True
    assert report["test_acc"] == result.test_acc and report["val_acc"] == result.val_acc


# measured (seed 0, 5 epochs, CPU): greedy 37.6% test, probabilistic 23.0%; their random-index
# controls 8.6-9.3% (chance is 10%). Probabilistic selection learns more slowly, as the paper
# and the reference (40 more epochs for "prob", training_schedule.py:31) say.
MARGIN = {"greedy": 0.15, "probabilistic": 0.05}


@pytest.mark.parametrize("selection", ["greedy", "probabilistic"])
def test_mnist1d_training_learns_above_its_random_index_control(selection, tmp_path):
    """The control: the same K values per weight, each weight's index drawn uniformly at
    random (the reference's `save_slot(model, random=True)`, save_slot_checkpoint.py:21)."""
    _, result, path = _train(tmp_path, selection, epochs=5)
    f = read_subnet_file(path)
    evaluator = Evaluator(f, device="cpu")
    assert evaluator.accuracy(materialize(f))["test_acc"] == result.test_acc
    g = np.random.default_rng(0)
    controls = []
    for _ in range(3):
        random_index = {layer: g.integers(0, f.config.slot_machine_k, size=shape) for layer, shape in f.shapes.items()}
        controls.append(evaluator.accuracy(materialize(f, replace={"index": random_index}))["test_acc"])
    assert result.test_acc > max(controls) + MARGIN[selection], (result.test_acc, controls)


def test_its_seeds_train_one_by_one_never_as_a_vectorized_cell():
    """Its registry line says vectorizes=False: under probabilistic selection a vectorized
    cell would draw from torch's global RNG instead of each seed's stream, so a seed would
    not repeat its own trial; the planner trains its seeds one by one and train_seeds
    refuses it."""
    import pytest

    from hidden_core.catalog import method_info
    from hidden_core.vectorized import check_cell

    assert method_info("slot_machine").vectorizes is False
    with pytest.raises(ValueError, match="does not vectorize"):
        check_cell(make_config(method="slot_machine"), [0, 1])
