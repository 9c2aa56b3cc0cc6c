"""`hidden sweep status` on a finished sweep (hidden_core/tune/progress.store_line)."""

from datetime import datetime, timedelta, timezone

import pandas as pd

from hidden_core.tune.progress import store_line


def test_a_finished_sweep_shows_its_duration_not_the_time_since_it_started():
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    frame = pd.DataFrame({
        "trial_id": ["a", "b"], "method": ["dense", "dense"], "status": ["completed", "completed"], "best_val_acc": [0.5, 0.6],
        "started_at": [start, start + timedelta(seconds=10)], "finished_at": [start + timedelta(seconds=40), start + timedelta(seconds=72)],
    })
    for minutes_later in (0, 4, 60):  # read just after the end, minutes later, an hour later
        now = (start + timedelta(seconds=72, minutes=minutes_later)).timestamp()
        assert store_line("s", frame, 2, 2, 0, now=now).startswith("[ 1m12s] s 2/2 100%")
    # while trials are left the clock runs on
    assert store_line("s", frame, 3, 2, 1, now=(start + timedelta(minutes=5)).timestamp()).startswith("[ 5m00s]")
