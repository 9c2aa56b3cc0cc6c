"""The training loop: learning, determinism, checkpoint/resume, divergence."""

import pytest
import torch

from hidden_core import make_config, train
from hidden_core.config import make_run_options
from hidden_core.paths import CHECKPOINT_FILE
from hidden_core.training import checkpoint_history


def test_dense_and_edge_popup_learn_mnist1d_well_above_chance():
    dense = train(make_config(method="dense", epochs=8, optimizer="adam", lr=0.01, width=2))
    popup = train(make_config(method="edge_popup", epochs=8, optimizer="adam", lr=0.01, width=4, keep_fraction=0.5))
    assert dense.status == popup.status == "completed"
    assert dense.test_acc > 0.45, dense  # chance is 0.10
    assert popup.test_acc > 0.30, popup
    assert popup.params_active < popup.params_total and popup.density == pytest.approx(0.5, abs=1e-3)


def test_result_and_history():
    seen = []
    result = train(make_config(epochs=3), on_epoch=seen.append)
    assert [r.epoch for r in seen] == [1, 2, 3] and result.history == seen
    assert result.epochs_run == 3 and result.best_val_acc == max(r.val_acc for r in seen)
    assert result.samples_per_second > 0 and result.train_seconds > 0
    assert {"status", "test_acc", "val_acc", "best_val_acc", "train_loss", "epochs_run", "params_total", "params_active",
            "params_learned", "changed_fraction", "train_seconds", "samples_per_second"} <= set(result.to_dict())


def test_cpu_runs_are_repeatable():
    config = make_config(method="supermask", epochs=2, lr=0.5)
    a, b = train(config), train(config)
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("method", ["dense", "edge_popup", "supermask"])
def test_resume_from_checkpoint_gives_the_uninterrupted_result(tmp_path, method):
    config = make_config(method=method, epochs=4, model="convnet", depth=2, width=0.25, lr=0.05, schedule="cosine")
    whole = train(config, make_run_options(checkpoint_dir=str(tmp_path / "whole")))

    def stop_after_two(record):
        if record.epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, make_run_options(checkpoint_dir=str(tmp_path / "split"), checkpoint_every_s=0), on_epoch=stop_after_two)
    assert len(checkpoint_history(tmp_path / "split")) == 2
    resumed = train(config, make_run_options(checkpoint_dir=str(tmp_path / "split")))
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in whole.history]
    a = torch.load(tmp_path / "whole" / CHECKPOINT_FILE, weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_cadence_saves_after_the_last_epoch_and_every_checkpoint_every_s(tmp_path):
    config = make_config(epochs=3)
    seen = []

    def look(record):  # the checkpoint on disk when the caller hears of an epoch
        seen.append(len(checkpoint_history(tmp_path) or []))

    train(config, make_run_options(checkpoint_dir=str(tmp_path), checkpoint_every_s=3600), on_epoch=look)
    assert seen == [0, 0, 3]  # none before an hour has passed, always the last epoch
    for path in tmp_path.iterdir():
        path.unlink()
    seen.clear()
    train(config, make_run_options(checkpoint_dir=str(tmp_path), checkpoint_every_s=0), on_epoch=look)
    assert seen == [1, 2, 3]


def test_non_finite_loss_ends_the_trial_as_diverged():
    result = train(make_config(epochs=5, lr=1e4, weight_decay=5e-4, weight_dist="unsigned_constant"))  # the largest lr allowed
    assert result.status == "diverged"
    assert result.diverged_epoch == result.epochs_run <= 5


@pytest.mark.parametrize("method", ["edge_popup", "sign_flip", "learn_fraction"])
def test_a_full_training_run_leaves_frozen_weights_bit_identical(tmp_path, method):
    from hidden_core.methods import build_model

    config = make_config(method=method, epochs=2, weight_decay=1e-2, keep_fraction=0.3)
    train(config, make_run_options(checkpoint_dir=str(tmp_path)))
    trained = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)["model"]
    fresh = build_model(config).state_dict()
    originals = [k for k in fresh if k.endswith("original")]
    assert originals and all(torch.equal(trained[k], fresh[k]) for k in originals)
    learned = [k for k in fresh if k.endswith(("scores", "values"))]
    assert any(not torch.equal(trained[k], fresh[k]) for k in learned)


def test_after_step_counts_this_trainings_steps_and_continues_across_a_resume(tmp_path, monkeypatch):
    """The method hooks (methods.base.Method.after_step / after_epoch): step counts optimizer
    steps from 1, a resumed trial continues the count (so a method whose hook draws from
    (seed, step) replays the uninterrupted trial)."""
    import math

    from hidden_core.data import load_data
    from hidden_core.methods.edge_popup import EdgePopup

    steps, epochs = [], []
    monkeypatch.setattr(EdgePopup, "after_step", lambda self, model, step: steps.append(step), raising=False)
    monkeypatch.setattr(EdgePopup, "after_epoch", lambda self, model, epoch: epochs.append(epoch), raising=False)
    config = make_config(method="edge_popup", epochs=3, batch_size=256)
    per_epoch = math.ceil(load_data(config).x_train.shape[0] / config.batch_size)

    def stop_after_two(record):
        if record.epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, make_run_options(checkpoint_dir=str(tmp_path), checkpoint_every_s=0), on_epoch=stop_after_two)
    assert steps == list(range(1, 2 * per_epoch + 1)) and epochs == [1, 2]
    train(config, make_run_options(checkpoint_dir=str(tmp_path)))
    assert steps == list(range(1, 3 * per_epoch + 1)) and epochs == [1, 2, 3]
