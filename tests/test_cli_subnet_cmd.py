"""hidden_core/cli/subnet_cmd.py, the `hidden subnet` actions, in this process on untrained
digits networks (no training needed: the commands read, score and compare files):
export copies a stored file with the sweep's row (status, metrics, cell) in its header and
--best chooses by validation, never by test; eval says whether the stored accuracies are
reproduced; controls writes its table next to the file; masks compares files; every bad
use exits 2 with the field named, before any output file is written. (Exports by id, a
missing file and an unknown sweep: tests/test_subnet_controls.py.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hidden_core.cli import main
from hidden_core.config import make_config
from hidden_core.methods import build_model
from hidden_core.paths import trial_subnet_path
from hidden_core.store import ResultStore
from hidden_core.subnet.evaluate import Evaluator
from hidden_core.subnet.fileformat import read_subnet_file, update_metadata
from hidden_core.subnet.state import materialize, save_subnet


def _hidden(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _config(method="edge_popup", seed=0, **extra):
    return make_config(method=method, dataset="digits", model="mlp", width=0.3, seed=seed, **extra)


def _file(tmp_path, name, config):
    return save_subnet(tmp_path / f"{name}.safetensors", build_model(config), config)


@pytest.fixture
def sweep(tmp_path):
    """Sweep 's': three completed edge_popup trials whose best validation and test
    accuracies rank them differently (seed 1 best on val, seed 2 best on test), and a
    pruned seed 3 that is best on everything, each with its file."""
    store = ResultStore(tmp_path / "results", compact_every=None)
    ids = {}
    for seed, status, val, test in ((0, "completed", 0.5, 0.5), (1, "completed", 0.8, 0.6), (2, "completed", 0.7, 0.9), (3, "pruned", 0.95, 0.95)):
        config = _config(seed=seed)
        store.write_trial("s", {"trial_id": config.trial_id, "cell_id": "cell-a", "status": status, "val_acc": val, "best_val_acc": val,
                                "test_acc": test, "test_acc_at_best_val": test, "epochs_run": 3, **config.model_dump()})
        save_subnet(trial_subnet_path(store.root, "s", config.trial_id), build_model(config), config)
        ids[seed] = config.trial_id
    return tmp_path / "results", ids


def test_export_best_chooses_by_validation_among_completed_and_writes_the_rows_facts(sweep, tmp_path, capsys):
    root, ids = sweep
    target = tmp_path / "best.safetensors"
    code, out, err = _hidden(capsys, "subnet", "export", "s", "--best", "-o", target, "--results", root)
    assert code == 0, err
    f = read_subnet_file(target)
    assert f.config.trial_id == ids[1]  # highest best_val_acc of the completed trials; not seed 2 (test), not seed 3 (pruned)
    assert f.metadata["sweep"] == "s" and f.status == "completed" and f.metadata["cell_id"] == "cell-a"
    assert (f.metrics["val_acc"], f.metrics["test_acc"], f.metrics["best_val_acc"], f.metrics["epochs_run"]) == (0.8, 0.6, 0.8, 3)
    assert f"exported trial {ids[1]} of s (status completed, val 0.8, test 0.6)" in out
    code, _, err = _hidden(capsys, "subnet", "export", "s", "--best", "--where", "seed != 1", "-o", tmp_path / "w.safetensors", "--results", root)
    assert code == 0, err
    assert read_subnet_file(tmp_path / "w.safetensors").config.trial_id == ids[2]
    code, _, err = _hidden(capsys, "subnet", "export", "s", "--best", "--metric", "nope", "-o", tmp_path / "m.safetensors", "--results", root)
    assert code == 2 and "metric: 'nope' is not a trials column" in err and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("how", [[], ["ID", "--best"]], ids=["neither", "both"])
def test_export_wants_one_trial_id_or_best(sweep, tmp_path, capsys, how):
    root, ids = sweep
    args = [ids[0] if a == "ID" else a for a in how]
    code, _, err = _hidden(capsys, "subnet", "export", "s", *args, "-o", tmp_path / "x.safetensors", "--results", root)
    assert code == 2 and "trial_id: give one TRIAL_ID or --best, not both and not neither" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_eval_tells_a_reproduced_file_from_a_different_one(tmp_path, capsys):
    config = _config(method="sign_flip")
    plain = _file(tmp_path, "plain", config)
    f = read_subnet_file(plain)
    truth = Evaluator(f, device="cpu").accuracy(materialize(f, "cpu"))
    same = update_metadata(plain, tmp_path / "same.safetensors", metrics=truth, run={"device": "cpu"})
    other = update_metadata(plain, tmp_path / "other.safetensors", metrics={**truth, "test_acc": truth["test_acc"] + 0.01}, run={"device": "cpu"})

    code, out, err = _hidden(capsys, "subnet", "eval", same, "--device", "cpu")
    assert code == 0, err
    assert out.splitlines()[0] == f"sign_flip trial {config.trial_id} on cpu: val {truth['val_acc']:.4f}  test {truth['test_acc']:.4f}"
    assert out.splitlines()[1].endswith(": reproduced exactly")
    code, out, _ = _hidden(capsys, "subnet", "eval", other, "--device", "cpu")
    assert code == 0 and out.splitlines()[1].endswith(": DIFFERENT")
    code, out, _ = _hidden(capsys, "subnet", "eval", other, "--device", "cpu", "--json")
    report = json.loads(out)
    assert report["matches_stored"] is False and report["test_acc"] == truth["test_acc"] and report["stored_test_acc"] == truth["test_acc"] + 0.01
    code, out, _ = _hidden(capsys, "subnet", "eval", plain, "--device", "cpu", "--json")
    assert json.loads(out)["matches_stored"] is None  # nothing stored to compare with
    code, out, _ = _hidden(capsys, "subnet", "eval", plain, "--device", "cpu")
    assert len(out.splitlines()) == 1


def test_controls_writes_its_table_next_to_the_file(tmp_path, capsys):
    path = _file(tmp_path, "ep", _config())
    code, out, err = _hidden(capsys, "subnet", "controls", path, "--draws", "2", "--device", "cpu", "--json")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "ep.controls.csv")
    assert list(table["control"]) == ["found", "random", "shuffled", "fresh"] and table["test_acc"].between(0, 1).all()
    assert [r["control"] for r in json.loads(out)] == list(table["control"])
    assert "over 2 draws per control" in err
    code, _, err = _hidden(capsys, "subnet", "controls", path, "--draws", "2", "--device", "cpu", "--output", tmp_path / "mine.csv")
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "mine.csv")["control"]) == list(table["control"])


@pytest.mark.parametrize(("method", "draws", "message"), [
    ("edge_popup", 1, "draws: 1 must be >= 2"),
    ("dense", 2, "method: dense learns no mask or signs, so it has no controls"),
])
def test_controls_refuses_before_writing(tmp_path, capsys, method, draws, message):
    path = _file(tmp_path, "f", _config(method=method))
    code, _, err = _hidden(capsys, "subnet", "controls", path, "--draws", draws, "--device", "cpu")
    assert code == 2 and f"error: {message}" in err
    assert not (tmp_path / "f.controls.csv").exists()


def test_masks_of_files_compares_seeds_and_writes_table_and_plot(tmp_path, capsys):
    files = [_file(tmp_path, f"s{seed}", _config(seed=seed, keep_fraction=0.3)) for seed in (0, 1)]
    code, out, err = _hidden(capsys, "subnet", "masks", "--files", *files, "--format", "json", "--plot", tmp_path / "m.png", "--output", tmp_path / "m.csv")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["seeds"] for r in rows} == {2} and all(r["fraction_mean"] == pytest.approx(0.3, abs=0.01) for r in rows)
    assert "cell" not in rows[0] and "cell" in pd.read_csv(tmp_path / "m.csv").columns  # the whole config goes to the file only
    assert (tmp_path / "m.png").stat().st_size > 1000


@pytest.mark.parametrize(("args", "message"), [
    ([], "sweep: give a SWEEP or --files FILE..., not both and not neither"),
    (["s", "--files", "FILE"], "sweep: give a SWEEP or --files FILE..., not both and not neither"),
    (["--files", "FILE"], "sweep: the files given has no subnetwork files of a method that selects weights"),
])
def test_masks_refuses_what_it_cannot_compare(tmp_path, capsys, args, message):
    dense = _file(tmp_path, "d", _config(method="dense"))
    code, _, err = _hidden(capsys, "subnet", "masks", *[dense if a == "FILE" else a for a in args], "--plot", tmp_path / "m.png")
    assert code == 2 and f"error: {message}" in err
    assert not (tmp_path / "m.png").exists()
