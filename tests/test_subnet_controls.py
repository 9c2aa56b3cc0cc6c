"""Controls and mask analysis on constructed cases whose answer is known, and export from a
sweep's store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hidden_core.cli import main
from hidden_core.config import make_config
from hidden_core.methods import build_model
from hidden_core.methods.base import original_weight, parametrization_of
from hidden_core.paths import trial_subnet_path
from hidden_core.subnet.controls import (
    control_states,
    controls_path,
    permute_within_units,
    run_controls,
)
from hidden_core.subnet.evaluate import Evaluator
from hidden_core.subnet.fileformat import read_subnet_file
from hidden_core.subnet.masks import abs_w_auc, analyze_files, chance_jaccard, jaccard
from hidden_core.subnet.state import save_subnet


def hidden(capsys, *args) -> tuple[int, str, str]:
    """`hidden ARGS` in this process (a new process per call costs seconds of imports)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _templates(config) -> torch.Tensor:
    """Class-mean templates of the digits (classes x inputs, centred over classes): the
    direction a good mask or sign pattern of a linear model must follow."""
    from hidden_core.data import DeviceData, load_data

    data = DeviceData(load_data(config), torch.device("cpu"), augment=False)
    x = data._prepare(data.x_train).reshape(data.n_train, -1)
    means = torch.stack([x[data.y_train == c].mean(0) for c in range(10)])
    return means - means.mean(0)


def _constructed(tmp_path, method: str):
    """A linear model (mlp depth 0) on digits whose 'found' state follows the class
    templates T: edge_popup keeps the weights with the largest w * T (all of them agree in
    sign with T), sign_flip takes T's signs. Known ordering: found far above every control;
    for sign_flip the found signs on fresh magnitudes stay good (the signs carry it)."""
    config = make_config(method=method, model="mlp", depth=0, dataset="digits", keep_fraction=0.4, seed=1)
    model = build_model(config)
    layer = model.net.classifier
    templates = _templates(config)
    w = original_weight(layer)
    with torch.no_grad():
        if method == "edge_popup":
            parametrization_of(layer).scores.copy_((w * templates).clamp(min=0))
        else:
            parametrization_of(layer).scores.copy_(torch.sign(templates) * w.abs())
    path = save_subnet(tmp_path / f"{method}.safetensors", model, config)
    return read_subnet_file(path)


def test_mask_controls_order_on_a_constructed_case(tmp_path):
    f = _constructed(tmp_path, "edge_popup")
    table = run_controls(f, Evaluator(f, device="cpu"), draws=3).set_index("control")["test_acc"]
    assert table["found"] > 0.45
    for control in ("random", "shuffled", "fresh"):
        assert table[control] < 0.3 and table["found"] - table[control] > 0.2, (control, table.to_dict())


def test_sign_controls_order_on_a_constructed_case(tmp_path):
    f = _constructed(tmp_path, "sign_flip")
    table = run_controls(f, Evaluator(f, device="cpu"), draws=3).set_index("control")["test_acc"]
    assert table["found"] > 0.45 and table["fresh"] > 0.45  # the signs alone carry the solution
    for control in ("random", "shuffled", "initial"):
        assert table[control] < 0.3 and table["found"] - table[control] > 0.2, (control, table.to_dict())


def test_control_masks_keep_what_they_claim(tmp_path):
    f = _constructed(tmp_path, "edge_popup")
    found = f.layers("mask")["classifier"]
    rng = np.random.default_rng(0)
    random = control_states(f, "random", rng)["mask"]["classifier"]
    shuffled = control_states(f, "shuffled", rng)["mask"]["classifier"]
    assert random.sum() == found.sum() and not np.array_equal(random, found)
    assert np.array_equal(shuffled.sum(axis=1), found.sum(axis=1)) and not np.array_equal(shuffled, found)
    rows = np.arange(12).reshape(3, 4)
    assert sorted(permute_within_units(rows, rng)[1]) == [4, 5, 6, 7]


def test_controls_cli_stores_table_next_to_file_and_refuses_dense(tmp_path, capsys):
    f = _constructed(tmp_path, "sign_flip")
    code, out, err = hidden(capsys, "subnet", "controls", f.path, "--device", "cpu", "--draws", "2", "--json")
    assert code == 0, err
    stored = controls_path(f.path)
    assert stored.exists() and stored.name == "sign_flip.controls.csv"
    rows = json.loads(out)
    assert [r["control"] for r in rows] == ["found", "random", "shuffled", "fresh", "initial"]
    config = make_config(method="dense", model="mlp", depth=0, dataset="digits")
    dense = save_subnet(tmp_path / "dense.safetensors", build_model(config), config)
    code, _, err = hidden(capsys, "subnet", "controls", dense, "--device", "cpu")
    assert code == 2 and "no controls" in err


# ---- mask analysis ---------------------------------------------------------------------------
def test_overlap_statistics():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert chance_jaccard(2, 2, 4) == pytest.approx(1 / 3)
    w = np.array([0.1, -0.2, 0.3, -0.4])
    assert abs_w_auc(np.array([0, 0, 1, 1], bool), w) == 1.0
    assert abs_w_auc(np.array([1, 1, 0, 0], bool), w) == 0.0


def test_mask_analysis_untrained_seeds_overlap_at_chance_and_magnitude_mask_is_biased(tmp_path):
    paths = []
    for seed in range(3):
        config = make_config(method="edge_popup", keep_fraction=0.3, seed=seed, width=0.5)
        paths.append(save_subnet(tmp_path / f"s{seed}.safetensors", build_model(config), config))
    # a magnitude-pruned mask: keeps the largest |w|, so its AUC is 1
    config = make_config(method="edge_popup", keep_fraction=0.3, seed=7, width=0.5, depth=1)
    model = build_model(config)
    with torch.no_grad():
        for layer in (model.net.features[1], model.net.classifier):
            parametrization_of(layer).scores.copy_(original_weight(layer).abs())
    paths.append(save_subnet(tmp_path / "magnitude.safetensors", model, config))
    trials, table = analyze_files(paths)
    random_cell = table[table["seeds"] == 3]
    assert len(random_cell) == 3  # three layers of the depth-2 MLP
    assert np.allclose(random_cell["fraction_mean"], 0.3, atol=0.01)
    assert np.allclose(random_cell["jaccard"], random_cell["jaccard_chance"], rtol=0.1)
    assert np.allclose(random_cell["abs_w_auc_mean"], 0.5, atol=0.05)
    magnitude = trials[trials["seed"] == 7]
    assert np.allclose(magnitude["abs_w_auc"], 1.0)


def test_masks_cli_on_a_sweep_folder(tmp_path, capsys):
    from hidden_core.store import ResultStore

    store = ResultStore(tmp_path / "results", compact_every=None)
    for seed in range(2):
        config = make_config(method="sign_flip", seed=seed, width=0.3)
        store.write_trial("s", {"trial_id": config.trial_id, "status": "completed", **config.model_dump()})
        save_subnet(trial_subnet_path(store.root, "s", config.trial_id), build_model(config), config)
    code, out, err = hidden(capsys, "subnet", "masks", "s", "--results", tmp_path / "results", "--plot", tmp_path / "m.png", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["seeds"] for r in rows} == {2} and all(r["fraction_mean"] == 0 for r in rows)  # untrained: nothing flipped
    assert (tmp_path / "m.png").stat().st_size > 1000


# ---- export ----------------------------------------------------------------------------------
def test_export_by_id_and_best(tmp_path, capsys):
    from hidden_core.store import ResultStore

    root = tmp_path / "results"
    store = ResultStore(root, compact_every=None)
    ids = []
    for seed, val in ((0, 0.5), (1, 0.7), (2, 0.9)):
        config = make_config(method="edge_popup", seed=seed, width=0.3)
        status = "failed" if seed == 2 else "completed"  # never chosen by --best, has no file
        store.write_trial("s", {"trial_id": config.trial_id, "cell_id": "c", "status": status, "val_acc": val, "best_val_acc": val, "test_acc": val - 0.1, **config.model_dump()})
        if status == "completed":
            save_subnet(trial_subnet_path(store.root, "s", config.trial_id), build_model(config), config)
        ids.append(config.trial_id)
    out_file = tmp_path / "best.safetensors"
    code, _, err = hidden(capsys, "subnet", "export", "s", "--best", "-o", out_file, "--results", root)
    assert code == 0, err
    exported = read_subnet_file(out_file)
    assert exported.config.trial_id == ids[1] and exported.metadata["sweep"] == "s" and exported.metrics["val_acc"] == 0.7
    assert exported.tensors.keys() == read_subnet_file(trial_subnet_path(store.root, "s", ids[1])).tensors.keys()
    code, _, _ = hidden(capsys, "subnet", "export", "s", ids[0], "-o", tmp_path / "a.safetensors", "--results", root)
    assert code == 0 and read_subnet_file(tmp_path / "a.safetensors").config.seed == 0
    code, _, err = hidden(capsys, "subnet", "export", "s", ids[2], "-o", tmp_path / "c.safetensors", "--results", root)
    assert code == 2 and "has no subnetwork file" in err
    code, _, err = hidden(capsys, "subnet", "export", "s", "nope", "-o", tmp_path / "d.safetensors", "--results", root)
    assert code == 2 and "no trial 'nope'" in err and not (tmp_path / "d.safetensors").exists()
    code, _, err = hidden(capsys, "subnet", "export", "other", "--best", "-o", tmp_path / "e.safetensors", "--results", root)
    assert code == 2 and "no sweep named 'other'" in err
    code, _, err = hidden(capsys, "subnet", "masks", "other", "--results", root)
    assert code == 2 and "no sweep named 'other'" in err


def test_supermask_controls_permute_the_evaluated_mask(tmp_path):
    config = make_config(method="supermask", model="mlp", depth=0, dataset="digits", seed=2)
    model = build_model(config)
    with torch.no_grad():
        model.net.classifier.parametrizations.weight[0].logits.normal_(generator=torch.Generator().manual_seed(0))
    f = read_subnet_file(save_subnet(tmp_path / "sm.safetensors", model, config))
    found = f.layers("mask")["classifier"]
    shuffled = control_states(f, "shuffled", np.random.default_rng(0))["mask"]["classifier"]
    assert np.array_equal(np.sort(shuffled, axis=1), np.sort(found, axis=1)) and not np.array_equal(shuffled, found)
    table = run_controls(f, Evaluator(f, device="cpu"), draws=2)
    assert list(table["control"]) == ["found", "random", "shuffled", "fresh"] and table["test_acc"].between(0, 1).all()


def test_saving_imports_no_ray(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from hidden_core import make_config; from hidden_core.methods import build_model;"
            "from hidden_core.subnet.state import save_subnet; c = make_config(method='sign_flip');"
            f"save_subnet({str(tmp_path / 'x.safetensors')!r}, build_model(c), c); assert 'ray' not in sys.modules, 'ray imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
