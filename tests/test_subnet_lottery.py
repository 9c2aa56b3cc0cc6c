"""lottery_ticket trials keep a subnet file like every other method: the final ticket (mask
bits, the kept weights' trained values, biases and BatchNorm state). Re-evaluating it gives
the trials row's val/test accuracy exactly; a resumed trial and a pruned one (from its
checkpoint) keep the right ticket."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.utils import parametrize

from hidden_core import load_subnetwork, make_config, train
from hidden_core.cli import main as cli_main
from hidden_core.config import make_run_options
from hidden_core.lottery import plan
from hidden_core.methods import build_model
from hidden_core.methods.base import original_weight, weight_layers
from hidden_core.subnet.evaluate import Evaluator
from hidden_core.subnet.fileformat import read_subnet_file
from hidden_core.subnet.state import materialize
from hidden_core.tune import checkpoints, report_codec


def tiny(**extra):
    """2 levels (0.8^2 = 0.64), 2 epochs each, BatchNorm so running statistics matter."""
    fields = {"method": "lottery_ticket", "dataset": "digits", "model": "mlp", "width": 0.3, "epochs": 2, "batch_size": 128,
              "keep_fraction": 0.64, "prune_rate": 0.2, "norm": "batchnorm", "lottery_controls": True, **extra}
    return make_config(**fields)


def _score(path) -> dict[str, float]:
    f = read_subnet_file(path)
    return Evaluator(f, device="cpu").accuracy(materialize(f, "cpu"))


@pytest.fixture(scope="module")
def ticket(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lottery")
    config = tiny()
    path = folder / "ticket.safetensors"
    result = train(config, make_run_options(device="cpu", threads=1, save_subnet=str(path)))
    return config, result, path


def test_export_eval_reproduces_the_rows_accuracy_exactly(ticket, capsys):
    config, result, path = ticket
    assert len({r.level for r in result.history}) == 3  # the dense level 0 and two pruned levels
    f = read_subnet_file(path)
    assert f.config == config and f.status == result.status == "completed"
    assert f.metrics["val_acc"] == result.val_acc and f.metrics["test_acc"] == result.test_acc
    last = [r for r in result.history if r.level == 2 and r.branch == "ticket"][-1]
    assert (result.val_acc, result.test_acc) == (last.val_acc, last.test_acc)  # the row is the last ticket level's
    assert _score(path) == {"val_acc": result.val_acc, "test_acc": result.test_acc}
    assert cli_main(["subnet", "eval", str(path), "--device", "cpu"]) == 0
    assert "reproduced exactly" in capsys.readouterr().out


def test_the_file_holds_the_final_mask_and_the_kept_values_only(ticket):
    config, result, path = ticket
    f = read_subnet_file(path)
    kinds = {name.split("/")[0] for name in f.tensors}
    assert kinds == {"mask", "values", "param", "buffer"}
    masks = f.layers("mask")
    n = sum(m.size for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == sum(round(0.64 * m.size) for m in masks.values())  # the last level keeps exactly k per layer
    assert kept / n == pytest.approx(result.density)
    for layer, mask in masks.items():
        assert f.tensors[f"values/{layer}"].shape == (int(mask.sum()),)
    assert not any(name.startswith("param/") and name.endswith(".weight") and f.tensors[name].ndim == 2 for name in f.tensors)
    size = path.stat().st_size
    learned = n / 8 + 4 * kept
    print(f"lottery_ticket file: {size} B for {n} weights ({kept} kept): {8 * size / n:.2f} bits/weight")
    assert size < learned + 8 * 1024 + sum(v.nbytes for k, v in f.tensors.items() if k.startswith(("param/", "buffer/")))


def test_load_subnetwork_is_plain_and_zero_off_the_mask(ticket):
    config, _, path = ticket
    net = load_subnetwork(path)
    assert not any(parametrize.is_parametrized(m) for m in net.modules())
    f = read_subnet_file(path)
    modules = dict(net.named_modules())
    for layer, mask in f.layers("mask").items():
        weight = modules[layer].weight.numpy()
        assert np.all(weight[~mask] == 0)
        assert np.array_equal(weight[mask], f.tensors[f"values/{layer}"])
    assert net(torch.randn(4, *config.dataset_info.input_shape)).shape == (4, 10)


def test_the_ticket_survives_a_kill_during_the_last_levels_controls(ticket, tmp_path):
    config, result, path = ticket
    segments = plan(config, 2)
    after_ticket = next(s for s in segments if s.level == 2 and s.branch == "reinit")
    kill_at = after_ticket.offset + 1

    class Killed(Exception):
        pass

    def killer(record):
        if record.epoch == kill_at:
            raise Killed

    run = make_run_options(device="cpu", threads=1, checkpoint_dir=str(tmp_path / "ckpt"), save_subnet=str(tmp_path / "resumed.safetensors"))
    with pytest.raises(Killed):
        train(config, run, on_epoch=killer)
    resumed = train(config, run)
    assert (resumed.val_acc, resumed.test_acc) == (result.val_acc, result.test_acc)
    a, b = read_subnet_file(path), read_subnet_file(tmp_path / "resumed.safetensors")
    assert a.tensors.keys() == b.tensors.keys()
    assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


@pytest.mark.parametrize("where", ["ticket", "control"])
def test_a_pruned_lottery_trial_keeps_its_newest_ticket(tmp_path, where):
    """Stopped inside level 2's ticket: that level's network at its last checkpointed epoch;
    stopped in level 1's controls: level 1's finished ticket with its summary."""
    config = tiny()
    segments = plan(config, 2)
    target = next(s for s in segments if (s.level, s.branch) == ((2, "ticket") if where == "ticket" else (1, "reinit")))
    kill_at = target.offset + 1  # after the first epoch of that segment was checkpointed
    folder = tmp_path / "s" / "checkpoints" / config.trial_id
    seen = []

    class Stopped(Exception):
        pass

    def stop(record):
        seen.append(record)
        if record.epoch == kill_at:
            raise Stopped

    with pytest.raises(Stopped):
        train(config, make_run_options(device="cpu", threads=1, checkpoint_dir=str(folder), checkpoint_every_s=0), on_epoch=stop)
    checkpoints.trial_final(str(tmp_path), "s", config.trial_id, config.model_dump(mode="json"), "pruned")
    assert not folder.exists()
    f = read_subnet_file(tmp_path / "s" / "subnets" / f"{config.trial_id}.safetensors")
    assert f.status == "pruned"
    level = 2 if where == "ticket" else 1
    ticket_rows = [r for r in seen if r.level == level and r.branch == "ticket"]
    assert (f.metrics["val_acc"], f.metrics["test_acc"]) == (ticket_rows[-1].val_acc, ticket_rows[-1].test_acc)
    assert _score(f.path) == {"val_acc": f.metrics["val_acc"], "test_acc": f.metrics["test_acc"]}
    density = ticket_rows[-1].density
    masks = f.layers("mask")
    assert sum(int(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values()) == pytest.approx(density)


def test_lottery_controls_are_refused_with_the_reason(ticket, capsys):
    _, _, path = ticket
    assert cli_main(["subnet", "controls", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "lottery_ticket" in err and "lottery_controls" in err and "supermask" in err


def test_mask_analysis_reads_lottery_files(ticket):
    from hidden_core.subnet.masks import analyze_files

    _, _, path = ticket
    _, table = analyze_files([str(path)])
    assert not table.empty and set(table["fraction_mean"].round(2)) == {0.64}


def test_the_initial_weights_come_back_from_the_seed_not_the_file(ticket):
    """The values are the trained ones; the file has no initial weights, and the kept
    positions' values differ from the regenerated initialization (they were trained)."""
    config, _, path = ticket
    f = read_subnet_file(path)
    initial = {name: original_weight(layer).numpy() for name, layer in zip(f.shapes, weight_layers(build_model(config).net), strict=True)}
    for layer, mask in f.layers("mask").items():
        assert not np.array_equal(f.tensors[f"values/{layer}"], initial[layer][mask])


def test_the_sweeps_trials_row_names_the_file_and_eval_reproduces_the_row(tmp_path, capsys):
    """The driver writes `subnet_file` (relative to the results root) for a final trial with a
    file, null for a failed one; the file re-evaluates to the row's val/test accuracy."""

    from hidden_core import paths
    from hidden_core.spec import parse_spec
    from hidden_core.store import ResultStore
    from hidden_core.tune.driver_state import SweepRuntime
    from hidden_core.tune.planning import plan_todo
    from hidden_core.tune.pruning import CellStudies

    fields = tiny().model_dump(mode="json")
    spec = parse_spec({"name": "lt", "base": {k: fields[k] for k in ("method", "dataset", "model", "width", "epochs", "batch_size",
                                                                     "keep_fraction", "prune_rate", "norm", "lottery_controls")},
                       "grid": {"seed": [0, 1]}, "report_every_s": 0})
    root = str(tmp_path / "results")
    store = ResultStore(root)
    runtime = SweepRuntime(spec, store, root, studies=CellStudies(spec, f"sqlite:///{tmp_path / 's.db'}"), run_values={},
                           provenance={"hidden_version": "test"})
    runtime.load(plan_todo(spec, store))
    done, failed = spec.plan().trials

    class FakeTrial:
        def __init__(self, ray_id, planned):
            self.trial_id = ray_id
            self.config = {"trial": planned.config.model_dump(mode="json"), "trial_id": planned.trial_id, "cell_id": planned.cell_id}

    result = train(done.config, make_run_options(device="cpu", threads=1, save_subnet=paths.trial_subnet_path(root, "lt", done.trial_id)))
    trial = FakeTrial("ray_0", done)
    runtime.on_start(trial)
    runtime.on_result(trial, report_codec.final_report(result.to_dict(), [r.to_dict() for r in result.history], {}))
    runtime.on_complete(trial)
    trial = FakeTrial("ray_1", failed)
    runtime.on_start(trial)
    runtime.on_result(trial, report_codec.failed_report("boom", [], {}))
    runtime.on_complete(trial)

    rows = store.load_trials("lt").set_index("trial_id")
    assert rows.loc[done.trial_id, "subnet_file"] == f"lt/subnets/{done.trial_id}.safetensors"
    assert rows.loc[failed.trial_id, "status"] == "failed" and pd.isna(rows.loc[failed.trial_id, "subnet_file"])
    path = f"{root}/{rows.loc[done.trial_id, 'subnet_file']}"
    assert _score(path) == {"val_acc": rows.loc[done.trial_id, "val_acc"], "test_acc": rows.loc[done.trial_id, "test_acc"]}
    capsys.readouterr()
    assert cli_main(["results", "show", "lt", "--results", root, "--format", "csv"]) == 0
    assert f"lt/subnets/{done.trial_id}.safetensors" in capsys.readouterr().out
