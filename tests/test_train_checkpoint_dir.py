"""`hidden train --checkpoint-dir D`: one folder per trial_id under D, so a changed config
never resumes another config's checkpoint; a checkpoint of another trial is exit 2 naming both."""

from __future__ import annotations

import json
import shutil

from hidden_core.cli import main

BASE = ["train", "--dataset", "mnist1d", "--model", "mlp", "--width", "0.5", "--json", "--quiet"]


def _run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main([*BASE, *args])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else None), captured.err


def test_changed_config_on_the_same_checkpoint_dir_never_resumes_the_other(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    code, first, err = _run(capsys, "--method", "sign_flip", "--lr", "0.05", "--epochs", "2", "--checkpoint-dir", str(ckpt))
    assert code == 0 and "resuming" not in err
    assert (ckpt / first["trial_id"] / "checkpoint.pt").exists()

    # another lr and more epochs: its own folder, trained from scratch (same result as without any folder)
    code, changed, err = _run(capsys, "--method", "sign_flip", "--lr", "0.5", "--epochs", "3", "--checkpoint-dir", str(ckpt))
    assert code == 0 and "resuming" not in err and changed["trial_id"] != first["trial_id"]
    code, fresh, _ = _run(capsys, "--method", "sign_flip", "--lr", "0.5", "--epochs", "3")
    assert changed["test_acc"] == fresh["test_acc"] and changed["best_val_acc"] == fresh["best_val_acc"]
    assert sorted(p.name for p in ckpt.iterdir()) == sorted([first["trial_id"], changed["trial_id"]])

    # another method on the same folder: no state_dict traceback, its own folder
    code, dense, _ = _run(capsys, "--method", "dense", "--epochs", "2", "--checkpoint-dir", str(ckpt))
    assert code == 0 and (ckpt / dense["trial_id"] / "checkpoint.pt").exists()

    # the first config again resumes its own checkpoint (nothing left to train) to the same result
    code, again, err = _run(capsys, "--method", "sign_flip", "--lr", "0.05", "--epochs", "2", "--checkpoint-dir", str(ckpt))
    assert code == 0 and f"resuming trial {first['trial_id']}" in err and again["test_acc"] == first["test_acc"]


def test_a_checkpoint_of_another_trial_is_exit_2_naming_both(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    code, first, _ = _run(capsys, "--method", "sign_flip", "--epochs", "1", "--checkpoint-dir", str(ckpt))
    assert code == 0
    code, other, _ = _run(capsys, "--method", "sign_flip", "--epochs", "1", "--seed", "7")
    assert code == 0
    # a user copies one trial's folder over another's
    (ckpt / other["trial_id"]).mkdir()
    shutil.copy(ckpt / first["trial_id"] / "checkpoint.pt", ckpt / other["trial_id"] / "checkpoint.pt")
    code, _, err = _run(capsys, "--method", "sign_flip", "--epochs", "1", "--seed", "7", "--checkpoint-dir", str(ckpt))
    assert code == 2
    assert first["trial_id"] in err and other["trial_id"] in err and "Traceback" not in err
