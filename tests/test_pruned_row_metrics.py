"""A pruned trial's row is built from its epoch rows (driver_state._metrics_from_epochs); a
lottery trial's row must summarise its latest ticket level, never a control branch, as a
finished lottery trial's row does (hidden_core/lottery.py)."""

from hidden_core.tune.driver_state import _metrics_from_epochs


def row(epoch, val, test, level=None, branch=None, seconds=1.0):
    return {"epoch": epoch, "val_acc": val, "test_acc": test, "train_loss": 1.0, "train_acc": 0.5,
            "seconds": seconds, "level": level, "branch": branch}


def test_plain_trial_uses_every_row():
    rows = [row(1, 0.3, 0.31), row(2, 0.5, 0.52), row(3, 0.4, 0.45)]
    m = _metrics_from_epochs(rows)
    assert (m["epochs_run"], m["best_epoch"], m["best_val_acc"], m["test_acc_at_best_val"]) == (3, 2, 0.5, 0.52)
    assert m["val_acc"] == 0.4 and m["train_seconds"] == 3.0


def test_lottery_trial_summarises_its_latest_ticket_level_only():
    rows = [
        row(1, 0.50, 0.51, level=0, branch="ticket"), row(2, 0.60, 0.61, level=0, branch="ticket"),
        row(3, 0.20, 0.21, level=1, branch="supermask"),
        row(4, 0.40, 0.41, level=1, branch="ticket"), row(5, 0.45, 0.44, level=1, branch="ticket"),
        row(6, 0.90, 0.91, level=1, branch="reinit"),  # a control branch better than the ticket
    ]
    m = _metrics_from_epochs(rows)
    assert m["epochs_run"] == 6 and m["train_seconds"] == 6.0
    assert (m["best_epoch"], m["best_val_acc"], m["test_acc_at_best_val"]) == (5, 0.45, 0.44)
    assert (m["val_acc"], m["test_acc"]) == (0.45, 0.44)


def test_no_ticket_rows_yet_gives_no_accuracy():
    m = _metrics_from_epochs([row(1, 0.2, 0.2, level=0, branch="supermask")])
    assert m["epochs_run"] == 1 and "best_val_acc" not in m
