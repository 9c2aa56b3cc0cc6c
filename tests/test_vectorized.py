"""Vectorized seeds (hidden_core.vectorized) against unvectorized training, seed by seed.

Tolerance: every epoch's train loss within 1e-5 (absolute, on losses of order 1; measured
differences are <= 5e-7, the rounding of a batched matmul against a plain one) and every
accuracy (train, val, test) within 0.005 (half a percentage point: a near-tied pair of
logits can flip with that rounding; measured at most 2 of 3600 training examples, 0.00056);
the statistics (density, changed_fraction, params) equal.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hidden_core.batched_forward import LayerInterpreter, vmapped
from hidden_core.config import RunOptions, make_config
from hidden_core.data import load_data
from hidden_core.distributions import weight_layers
from hidden_core.methods import build_model
from hidden_core.methods.base import parametrization_of
from hidden_core.methods.edge_popup import batched_top_k_threshold, top_k_threshold
from hidden_core.models import build_architecture
from hidden_core.training import train_network as train
from hidden_core.vectorized import PRUNED, SeedStack, train_seeds

RUN = RunOptions(device="cpu", threads=1)
LOSS_TOLERANCE = 1e-5
ACC_TOLERANCE = 0.005
SEEDS = [0, 3]

CASES = {
    "dense": {},
    "edge_popup": {"keep_fraction": 0.3},
    "sign_flip": {"penalty": 0.1},
    "bn_only": {"train_output_layer": True},
    "free_prune": {"penalty": -1.0},
    "supermask": {},
    "learn_fraction": {"keep_fraction": 0.4},
    "random_features": {},
    "dense_adam_bn": {"method": "dense", "optimizer": "adam", "lr": 0.003, "norm": "batchnorm", "label_smoothing": 0.1, "schedule": "step", "step_milestones": (1,)},
}


def small(method: str, **extra):
    return make_config(**{"method": method, "model": "mlp", "mlp_units": 24, "epochs": 3, "batch_size": 256, **extra})


def assert_same(vectorized, reference) -> None:
    assert vectorized.status == reference.status
    assert vectorized.epochs_run == reference.epochs_run
    for v, r in zip(vectorized.history, reference.history, strict=True):
        assert v.epoch == r.epoch and v.lr == r.lr
        assert abs(v.train_loss - r.train_loss) <= LOSS_TOLERANCE, (v, r)
        for key in ("train_acc", "val_acc", "test_acc"):
            assert abs(getattr(v, key) - getattr(r, key)) <= ACC_TOLERANCE, (key, v, r)
    for key in ("params_total", "params_active", "params_learned", "density", "changed_fraction", "best_epoch"):
        assert getattr(vectorized, key) == getattr(reference, key), key




@pytest.mark.parametrize("case", list(CASES))
def test_equal_to_unvectorized_epoch_by_epoch(case):
    extra = dict(CASES[case])
    method = extra.pop("method", case)
    config = small(method, **extra)
    data = load_data(config, RUN)
    vectorized = train_seeds(config, SEEDS, RUN, data=data)
    for seed, got in zip(SEEDS, vectorized, strict=True):
        assert_same(got, train(config.model_copy(update={"seed": seed}), RUN, data=data))
    # the seeds really differ (each its own init and data order)
    assert vectorized[0].history[0].train_loss != vectorized[1].history[0].train_loss


@pytest.mark.parametrize("method", ["edge_popup", "bn_only"])
def test_conv_net_through_vmap_equal_to_unvectorized(method):
    config = make_config(method=method, model="convnet", dataset="digits", depth=2, width=0.125, epochs=2, batch_size=256, norm="batchnorm", augment=True)
    data = load_data(config, RUN)
    vectorized = train_seeds(config, SEEDS, RUN, data=data)
    for seed, got in zip(SEEDS, vectorized, strict=True):
        assert_same(got, train(config.model_copy(update={"seed": seed}), RUN, data=data))


@pytest.mark.parametrize("method", ["dense", "edge_popup", "sign_flip", "learn_fraction", "bn_only"])
def test_initial_weights_bit_identical(method):
    config = small(method, **({"norm": "batchnorm"} if method == "bn_only" else {}))
    models = [build_model(config.model_copy(update={"seed": s})) for s in SEEDS]
    stack = SeedStack(config, models, torch.device("cpu"), nn.CrossEntropyLoss(), torch.autocast("cpu", enabled=False))
    for i, seed in enumerate(SEEDS):
        alone = build_model(config.model_copy(update={"seed": seed})).net.state_dict()
        got = stack.seed_state(i)
        assert got.keys() == alone.keys()
        assert all(torch.equal(got[k], alone[k]) for k in alone)


def test_pruned_seed_stops_costing_compute_and_others_continue(monkeypatch):
    config = small("edge_popup", optimizer="sgd", momentum=0.9)
    data = load_data(config, RUN)
    seeds = [0, 1, 2]
    batch_seeds = []
    step = SeedStack.step

    def counting_step(self, x, y, generators):
        batch_seeds.append(x.shape[0])
        return step(self, x, y, generators)

    monkeypatch.setattr(SeedStack, "step", counting_step)
    seen = []

    def prune_seed_1_after_epoch_1(seed, record):
        seen.append((seed, record.epoch))
        return seed == 1 and record.epoch == 1

    results = train_seeds(config, seeds, RUN, data=data, on_epoch=prune_seed_1_after_epoch_1)
    assert results[1].status == PRUNED and results[1].epochs_run == 1
    steps_per_epoch = -(-len(data.y_train) // config.batch_size)
    assert batch_seeds == [3] * steps_per_epoch + [2] * steps_per_epoch * (config.epochs - 1)
    assert seen == [(0, 1), (1, 1), (2, 1), (0, 2), (2, 2), (0, 3), (2, 3)]
    # the others (momentum and schedule carried through the removal) as if alone
    for i in (0, 2):
        assert_same(results[i], train(config.model_copy(update={"seed": seeds[i]}), RUN, data=data))
    alone = train(config.model_copy(update={"seed": 1}), RUN, data=data)
    first = results[1].history[0]
    assert abs(first.train_loss - alone.history[0].train_loss) <= LOSS_TOLERANCE and abs(first.val_acc - alone.history[0].val_acc) <= ACC_TOLERANCE


def test_diverged_seed_like_unvectorized():
    config = small("dense", lr=1e4, momentum=0.9, weight_decay=5e-4, weight_dist="unsigned_constant", epochs=3)  # the largest lr allowed
    data = load_data(config, RUN)
    results = train_seeds(config, SEEDS, RUN, data=data)
    for seed, got in zip(SEEDS, results, strict=True):
        reference = train(config.model_copy(update={"seed": seed}), RUN, data=data)
        assert reference.status == "diverged"  # the case this test is about
        assert got.status == "diverged" and got.diverged_epoch == reference.diverged_epoch and got.epochs_run == reference.epochs_run


def test_batched_threshold_is_each_seeds_threshold():
    generator = torch.Generator().manual_seed(0)
    magnitudes = torch.rand(5, 1000, generator=generator)
    for kept in (1, 17, 500, 1000):
        expected = torch.stack([top_k_threshold(m, kept) for m in magnitudes])
        assert torch.equal(batched_top_k_threshold(magnitudes, kept), expected)
        assert torch.equal(magnitudes.kthvalue(1000 - kept + 1, dim=1).values, expected)  # the non-CPU path


@pytest.mark.parametrize("method", ["edge_popup", "sign_flip", "free_prune", "learn_fraction"])
def test_effective_weights_and_gradients_equal_the_methods_own(method):
    """The once-per-step effective weights (and what reaches the learned tensors in the
    backward) equal each seed's parametrize getter on its own network."""
    config = small(method)
    models = [build_model(config.model_copy(update={"seed": s})) for s in SEEDS]
    stack = SeedStack(config, models, torch.device("cpu"), nn.CrossEntropyLoss(), torch.autocast("cpu", enabled=False))
    weights = stack.effective(True, [])
    upstream = {k: torch.randn_like(v) for k, v in weights.items() if v.requires_grad}
    sum((weights[k] * g).sum() for k, g in upstream.items()).backward()
    for i, model in enumerate(models):
        paths = {id(m): n for n, m in model.net.named_modules()}
        total = 0
        for layer in weight_layers(model.net):
            key = f"{paths[id(layer)]}.weight"
            assert torch.equal(weights[key][i], layer.weight), key
            total = total + (layer.weight * upstream[key][i]).sum()
        total.backward()
        for layer in weight_layers(model.net):
            for name, p in parametrization_of(layer).named_parameters():
                key = f"{paths[id(layer)]}.parametrizations.weight.0.{name}"
                assert torch.allclose(stack.state[key].grad[i], p.grad, atol=1e-6), key


def test_layer_interpreter_equals_vmap_with_batchnorm():
    skeleton = build_architecture(make_config(model="mlp", mlp_units=12, norm="batchnorm"))
    generator = torch.Generator().manual_seed(1)
    state = {k: torch.stack([torch.randn(v.shape, generator=generator) if v.is_floating_point() else v for _ in range(3)]) for k, v in skeleton.state_dict().items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    x = torch.randn(3, 16, 1, 40, generator=generator)
    for training in (True, False):
        a = {k: v.clone() for k, v in state.items()}
        b = {k: v.clone() for k, v in state.items()}
        out_a = LayerInterpreter(skeleton)(a, x, training)
        out_b = vmapped(skeleton)(b, x, training)
        assert torch.allclose(out_a, out_b, atol=1e-5)
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)  # running stats too
        if training:
            assert not torch.equal(a["features.2.running_mean"], state["features.2.running_mean"])


def test_bad_seed_lists():
    config = small("dense")
    with pytest.raises(ValueError, match="seeds"):
        train_seeds(config, [], RUN)
    with pytest.raises(ValueError, match="repeats"):
        train_seeds(config, [1, 1], RUN)


@pytest.mark.parametrize("method,extra", [("sign_flip", {"penalty": 0.1}), ("bn_only", {})])
def test_a_cell_of_one_seed_equals_unvectorized(method, extra):
    """One seed (or the last one left after the others stopped) runs the plain network
    through functional_call, no batching."""
    config = small(method, **extra)
    data = load_data(config, RUN)
    (got,) = train_seeds(config, [7], RUN, data=data)
    assert_same(got, train(config.model_copy(update={"seed": 7}), RUN, data=data))


def test_last_seed_left_continues_alone():
    config = small("edge_popup")
    data = load_data(config, RUN)
    results = train_seeds(config, [0, 1], RUN, data=data, on_epoch=lambda seed, record: seed == 0)
    assert results[0].status == PRUNED and results[0].epochs_run == 1
    assert_same(results[1], train(config.model_copy(update={"seed": 1}), RUN, data=data))


def test_batched_threshold_in_place_equals_the_copy():
    magnitudes = torch.rand(3, 777, generator=torch.Generator().manual_seed(2))
    expected = batched_top_k_threshold(magnitudes, 300)
    reordered = magnitudes.clone()
    assert torch.equal(batched_top_k_threshold(reordered, 300, in_place=True), expected)
    assert torch.equal(reordered.sort(1).values, magnitudes.sort(1).values)  # the same values, reordered


# ---- per-seed checkpoints: the format `train` writes, resumable by either ----------------
class Killed(Exception):
    pass


def _kill_after(epoch_to_die: int):
    def after_epoch(epoch, records):
        if epoch == epoch_to_die:
            raise Killed
        return ()

    return after_epoch


def test_seed_checkpoints_resume_alone_or_vectorized(tmp_path):
    config = small("edge_popup", optimizer="adam", lr=0.003)
    data = load_data(config, RUN)
    folders = {s: str(tmp_path / f"seed{s}") for s in SEEDS}
    with pytest.raises(Killed):
        train_seeds(config, SEEDS, RUN, data=data, checkpoint_dirs=folders, after_epoch=_kill_after(1))
    copies = {s: str(tmp_path / f"copy{s}") for s in SEEDS}
    import shutil

    for s in SEEDS:
        shutil.copytree(folders[s], copies[s])
    references = {s: train(config.model_copy(update={"seed": s}), RUN, data=data) for s in SEEDS}
    # each seed's checkpoint resumed by `train` alone...
    for s in SEEDS:
        alone = train(config.model_copy(update={"seed": s}), RUN.model_copy(update={"checkpoint_dir": copies[s]}), data=data)
        assert_same(alone, references[s])
    # ...and the cell resumed vectorized: only the epochs left are trained
    seen = []
    results = train_seeds(config, SEEDS, RUN, data=data, checkpoint_dirs=folders, on_epoch=lambda seed, r: seen.append((seed, r.epoch)))
    assert sorted(seen) == [(s, e) for s in SEEDS for e in (2, 3)]
    for s, got in zip(SEEDS, results, strict=True):
        assert [r.epoch for r in got.history] == [1, 2, 3]
        assert_same(got, references[s])


def test_seeds_at_different_epochs_resume_in_groups(tmp_path):
    """A driver killed between two seeds' checkpoint writes leaves them an epoch apart: the
    cell resumes them in groups of equal epoch, the least advanced first, each as alone."""
    config = small("sign_flip", penalty=0.1)
    data = load_data(config, RUN)
    seeds = [0, 1, 2]
    folders = {s: str(tmp_path / f"seed{s}") for s in seeds}
    with pytest.raises(Killed):
        train_seeds(config, [0], RUN, data=data, checkpoint_dirs=folders, after_epoch=_kill_after(2))
    with pytest.raises(Killed):
        train_seeds(config, [1, 2], RUN, data=data, checkpoint_dirs=folders, after_epoch=_kill_after(1))
    order = []
    results = train_seeds(config, seeds, RUN, data=data, checkpoint_dirs=folders, on_epoch=lambda seed, r: order.append((seed, r.epoch)))
    assert order == [(1, 2), (2, 2), (1, 3), (2, 3), (0, 3)]
    for s, got in zip(seeds, results, strict=True):
        assert_same(got, train(config.model_copy(update={"seed": s}), RUN, data=data))


def test_subnet_files_for_seeds_that_end_not_for_pruned_ones(tmp_path):
    from hidden_core.subnet.fileformat import read_subnet_file

    config = small("edge_popup", epochs=2)
    data = load_data(config, RUN)
    paths = {s: str(tmp_path / f"{s}.safetensors") for s in SEEDS}
    results = train_seeds(config, SEEDS, RUN, data=data, subnet_paths=paths, after_epoch=lambda epoch, records: {SEEDS[0]})
    assert results[0].status == PRUNED and results[1].status == "completed"
    assert not (tmp_path / f"{SEEDS[0]}.safetensors").exists()
    alone = str(tmp_path / "alone.safetensors")
    train(config.model_copy(update={"seed": SEEDS[1]}), RUN.model_copy(update={"save_subnet": alone}), data=data)
    got, want = read_subnet_file(paths[SEEDS[1]]), read_subnet_file(alone)
    assert got.config == want.config and got.status == want.status == "completed"
    assert got.tensors.keys() == want.tensors.keys()
    masks_equal = [bool((got.tensors[k] == want.tensors[k]).mean() > 0.99) for k in got.tensors]
    assert all(masks_equal)  # the same masks but for near-ties of the scores (float rounding)
