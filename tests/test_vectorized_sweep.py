"""A sweep whose grid cells train their seeds as one vectorized Tune trial (the spec's
`vectorize`, hidden_core/tune/cells.py) against the same sweep one trial per seed: the same
trial_ids, statuses and epoch rows (within tests/test_vectorized.py's tolerance), a subnet
file per seed that `hidden subnet eval` reproduces, a re-run that does nothing, a cell
with some seeds final that trains only the rest, and a seed resumed from the checkpoint an
earlier (unvectorized) attempt left."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_vectorized import ACC_TOLERANCE, LOSS_TOLERANCE

from hidden_core.config import RunOptions
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore
from hidden_core.tune.planning import describe_todo, plan_todo
from hidden_core.tune.runner import run_sweep

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PERCENTILE = 25.0


def _spec(vectorize: str, seeds: list[int], **extra) -> dict:
    return {
        "name": "vec",
        "base": {"dataset": "mnist1d", "model": "mlp", "mlp_units": 32, "epochs": 2, "batch_size": 256},
        "grid": {"method": ["dense", {"method": "edge_popup", "keep_fraction": 0.3}], "seed": seeds},
        "report_every_s": 0,
        "vectorize": vectorize,
        # keeps the top 25% of each cell at epoch 1; nothing is pruned before 3 seeds of the
        # cell completed, so only the grown grid below prunes
        "pruner": {"type": "percentile", "percentile": PERCENTILE, "n_startup_trials": 3, "n_warmup_steps": 0},
        **extra,
    }


@pytest.fixture(scope="module")
def local_ray():
    from hidden_core.tune.ray_setup import start_ray, stop_ray

    started = start_ray(None, 2)
    yield
    stop_ray(started)


class Interrupted(Exception):
    pass


def _leave_checkpoint_at_epoch_1(results: Path, spec, trial) -> None:
    """What an earlier attempt of this trial alone leaves when killed after its epoch 1."""
    from hidden_core import paths
    from hidden_core.trial import train

    def die(record):
        raise Interrupted

    folder = paths.trial_checkpoint_dir(results, spec.name, trial.trial_id)
    with pytest.raises(Interrupted):
        train(trial.config, RunOptions(device="cpu", threads=1, checkpoint_dir=folder, checkpoint_every_s=0), on_epoch=die)  # every epoch: the default 30 s would save none


def test_vectorized_sweep_equals_one_trial_per_seed(tmp_path: Path, local_ray):
    plain_root, vec_root = tmp_path / "plain", tmp_path / "vec"
    plain = run_sweep(parse_spec(_spec("none", [0, 1, 2])), plain_root, progress=False)
    assert plain.counts["completed"] == 6

    spec = parse_spec(_spec("seeds", [0, 1, 2]))
    todo = plan_todo(spec, ResultStore(vec_root))
    assert todo.count == 6 and todo.tune_count == 2 and [c.seeds for c in todo.cells] == [[0, 1, 2], [0, 1, 2]]
    lines = describe_todo(spec, todo)
    assert "  would run: 6 as 2 Tune trials" in lines
    assert sum(line.startswith("    cell ") and "seeds 0, 1, 2" in line for line in lines) == 2
    resumed = next(t for t in spec.plan().trials if t.config.method == "edge_popup" and t.config.seed == 1)
    _leave_checkpoint_at_epoch_1(vec_root, spec, resumed)

    vec = run_sweep(spec, vec_root, progress=False)
    assert vec.counts["completed"] == 6 and vec.to_run == 6
    assert vec.resumed == 1 and next(s for s in vec.trials if s.trial_id == resumed.trial_id).resumed_from_epoch == 1

    a, b = ResultStore(plain_root), ResultStore(vec_root)
    rows_a = a.load_trials("vec").set_index("trial_id").sort_index()
    rows_b = b.load_trials("vec").set_index("trial_id").sort_index()
    assert list(rows_a.index) == list(rows_b.index)  # the same trial_ids: stores interchangeable
    assert list(rows_a.status) == list(rows_b.status) == ["completed"] * 6
    assert (rows_a.cell_id == rows_b.cell_id).all() and (rows_a.seed == rows_b.seed).all()
    for key in ("params_total", "params_active", "density", "epochs_run", "best_epoch"):
        assert (rows_a[key] == rows_b[key]).all(), key
    epochs_a = a.load_epochs("vec").sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    epochs_b = b.load_epochs("vec").sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    assert list(zip(epochs_a.trial_id, epochs_a.epoch, strict=True)) == list(zip(epochs_b.trial_id, epochs_b.epoch, strict=True))
    assert ((epochs_a.train_loss - epochs_b.train_loss).abs() <= LOSS_TOLERANCE).all()
    for key in ("train_acc", "val_acc", "test_acc"):
        assert ((epochs_a[key] - epochs_b[key]).abs() <= ACC_TOLERANCE).all(), key
    # the seeds of a cell trained together: each epoch's wall time is shared out equally
    # (the resumed seed trained its epoch 2 in the cell, its epoch 1 alone)
    cells = epochs_b.merge(rows_b[["cell_id"]], left_on="trial_id", right_index=True)
    shared = cells[(cells.trial_id != resumed.trial_id) & (cells.epoch == 1)].groupby("cell_id").seconds.nunique()
    assert (shared == 1).all()

    # every seed its own subnet file; `hidden subnet eval` reproduces the stored accuracy
    folder = vec_root / "vec" / "subnets"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.safetensors" for t in rows_b.index)
    assert not (vec_root / "vec" / "checkpoints").exists()
    for trial_id in rows_b.drop_duplicates("method").index:
        out = subprocess.run([sys.executable, "-m", "hidden_core.cli", "subnet", "eval", str(folder / f"{trial_id}.safetensors"),
                              "--device", "cpu", "--json"], capture_output=True, text=True, check=True, cwd=ROOT)
        evaluated = json.loads(out.stdout)
        assert evaluated["matches_stored"] is True and evaluated["test_acc"] == rows_b.loc[trial_id, "test_acc"]

    # a re-run does nothing
    again = run_sweep(spec, vec_root, progress=False)
    assert again.to_run == 0 and again.trials == []

    # two more seeds: each cell has 3 final seeds and trains only the 2 left, together, and
    # each new seed is pruned on its own: after epoch 1 exactly when its val_acc is under
    # the cell's completed seeds' (75th) percentile at epoch 1 (Optuna's PercentilePruner)
    grown = parse_spec(_spec("seeds", [0, 1, 2, 3, 4]))
    todo = plan_todo(grown, b)
    assert todo.count == 4 and todo.tune_count == 2 and [c.seeds for c in todo.cells] == [[3, 4], [3, 4]]
    more = run_sweep(grown, vec_root, progress=False)
    assert more.skipped == 6 and more.counts["completed"] + more.counts["pruned"] == 4
    assert sorted(s.trial_id for s in more.trials) == sorted(t.trial_id for t in grown.plan().trials if t.config.seed >= 3)
    rows = b.load_trials("vec").set_index("trial_id")
    first = b.load_epochs("vec").query("epoch == 1").set_index("trial_id").val_acc
    expected = {}
    for trial_id, row in rows[rows.seed >= 3].iterrows():
        completed = rows[(rows.cell_id == row.cell_id) & (rows.seed < 3)].index
        threshold = np.nanpercentile(first[completed].to_numpy(), 100 - PERCENTILE)
        expected[trial_id] = "pruned" if first[trial_id] < threshold else "completed"
    assert dict(rows[rows.seed >= 3].status) == expected
    assert "pruned" in expected.values()  # (this data prunes some seeds: the case under test)
    for trial_id, status in expected.items():
        assert rows.loc[trial_id, "epochs_run"] == (1 if status == "pruned" else 2)  # a pruned seed stopped training
        assert (folder / f"{trial_id}.safetensors").exists()  # a pruned seed's made from its checkpoint
    assert not (vec_root / "vec" / "checkpoints").exists()


def test_vectorize_option_is_strict_and_not_identity():
    from hidden_core.config import ConfigError

    with pytest.raises(ConfigError, match=r"vectorize: 'yes' is not allowed; input should be 'auto', 'seeds' or 'none'"):
        parse_spec(_spec("yes", [0, 1]))
    ids = {v: [t.trial_id for t in parse_spec(_spec(v, [0, 1])).plan().trials] for v in ("auto", "seeds", "none")}
    assert ids["auto"] == ids["seeds"] == ids["none"]


def test_auto_leaves_cells_unvectorized_under_a_pruner():
    """Trained together, a cell's seeds finish together and a median/percentile pruner never
    stops one: auto keeps the store equal to an unvectorized run's; seeds vectorizes anyway."""
    from hidden_core.tune.planning import group_cells

    pruned = parse_spec(_spec("auto", [0, 1, 2]))
    cells, refused = group_cells(pruned, pruned.plan().trials)
    assert cells == [] and len(refused) == 2 and all("under a pruner" in why for why in refused.values())
    plain = parse_spec({k: v for k, v in _spec("auto", [0, 1, 2]).items() if k != "pruner"})
    assert [c.seeds for c in group_cells(plain, plain.plan().trials)[0]] == [[0, 1, 2], [0, 1, 2]]
    forced = parse_spec(_spec("seeds", [0, 1, 2]))
    assert len(group_cells(forced, forced.plan().trials)[0]) == 2
