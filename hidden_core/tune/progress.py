"""A sweep's live progress line, and the per-method tables printed from the store.

On a terminal the line rewrites itself in place; in a log (CI, `ray job submit`) it is
printed when a trial ends, at most every few seconds, so logs stay short.

    [  1m05s] quickstart: done 12/84 (pruned 1, failed 0) | running 2 | pending 70 | best val: dense 0.612, edge_popup 0.431
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from typing import Any

import pandas as pd

from hidden_core.spec import SweepSpec


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts trials as Tune runs them; one status line."""

    def __init__(self, spec: SweepSpec, out: Any = None, interval_s: float = 5.0):
        self.spec = spec
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.interval_s = interval_s if not self.tty else 0.5
        self.total = 0
        self.concurrency = 1
        self.counts: dict[str, int] = defaultdict(int)
        self.best: dict[str, float] = {}
        self.running = 0
        self.started = time.monotonic()
        self._last_print = 0.0
        self._last_line = ""

    # -- events --
    def start(self, total: int, concurrency: int) -> None:
        self.total = total
        self.concurrency = concurrency
        self.started = time.monotonic()
        self.message(f"sweep {self.spec.name}: {total} trials to run, {concurrency} at a time")

    def message(self, text: str) -> None:
        self._clear()
        print(text, file=self.out, flush=True)

    def on_epoch(self, ray_id: str, record: Any, result: dict[str, Any]) -> None:
        value = result.get("val_acc")
        method = record.config.get("method", "?")
        if isinstance(value, float) and math.isfinite(value) and value > self.best.get(method, -1.0):
            self.best[method] = value

    def on_trial_end(self, summary: Any) -> None:
        self.counts[summary.status] += 1
        if summary.best_val_acc is not None and math.isfinite(summary.best_val_acc):
            if summary.best_val_acc > self.best.get(summary.method, -1.0):
                self.best[summary.method] = summary.best_val_acc
        self._print(force=not self.tty and time.monotonic() - self._last_print >= self.interval_s)

    def tick(self, trials: list[Any]) -> None:
        self.running = sum(1 for t in trials if getattr(t, "status", "") == "RUNNING")
        self._print()

    def finish(self) -> None:
        self._print(force=True)
        if self.tty:
            print(file=self.out, flush=True)
        self._last_line = ""

    # -- output --
    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        pending = max(0, self.total - self.done - self.running)
        best = ", ".join(f"{m} {v:.3f}" for m, v in sorted(self.best.items(), key=lambda kv: -kv[1]))
        return (
            f"[{_elapsed(time.monotonic() - self.started):>6}] {self.spec.name}: done {self.done}/{self.total} "
            f"(pruned {self.counts['pruned']}, failed {self.counts['failed']}, diverged {self.counts['diverged']}) | "
            f"running {self.running} | pending {pending}" + (f" | best val: {best}" if best else "")
        )

    def _print(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < self.interval_s:
            return
        text = self.line()
        if self.tty:
            self.out.write("\r" + text.ljust(len(self._last_line)))
            self.out.flush()
        else:
            print(text, file=self.out, flush=True)
        self._last_line = text
        self._last_print = now

    def _clear(self) -> None:
        if self.tty and self._last_line:
            self.out.write("\r" + " " * len(self._last_line) + "\r")
            self.out.flush()


# ---- tables from the store -------------------------------------------------------------------
def method_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: trials by status, and mean/std of best val acc and test acc at best val
    over the trials that ended with a result (completed or pruned)."""
    if frame.empty:
        return pd.DataFrame(columns=["method", "trials", "completed", "pruned", "diverged", "failed", "best_val_acc", "test_acc", "test_std", "train_s"])
    rows = []
    for method, group in frame.groupby("method", sort=True):
        scored = group[group["status"] == "completed"]
        rows.append({
            "method": method,
            "trials": len(group),
            **{s: int((group["status"] == s).sum()) for s in ("completed", "pruned", "diverged", "failed")},
            "best_val_acc": scored["best_val_acc"].mean(),
            "test_acc": scored["test_acc_at_best_val"].mean(),
            "test_std": scored["test_acc_at_best_val"].std(),
            "train_s": group["train_seconds"].sum(),
        })
    return pd.DataFrame(rows)


def width_table(frame: pd.DataFrame, value: str = "test_acc_at_best_val") -> pd.DataFrame:
    """Mean `value` of completed trials by method (rows) and width (columns), with the seed
    count: 'mean±std (n)'."""
    done = frame[frame["status"] == "completed"]
    if done.empty:
        return pd.DataFrame()
    cells: dict[tuple[str, float], str] = {}
    for (method, width), group in done.groupby(["method", "width"]):
        values = group[value].astype(float)
        spread = f"±{values.std():.3f}" if len(values) > 1 else ""
        cells[(method, width)] = f"{values.mean():.3f}{spread} ({len(values)})"
    methods = sorted({m for m, _ in cells})
    widths = sorted({w for _, w in cells})
    table = pd.DataFrame([[cells.get((m, w), "") for w in widths] for m in methods], index=methods, columns=[f"w={w:g}" for w in widths])
    table.index.name = "method"
    return table


def format_frame(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    if frame.empty:
        return "(no trials)"
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else floats.format(v))
    return shown.to_string(index=not isinstance(shown.index, pd.RangeIndex))
