"""A sweep's live progress line, and the per-method tables printed from the store.

On a terminal the line rewrites itself in place; in a log (CI, `ray job submit`) it is
printed when a trial ends, at most every few seconds, so logs stay short. The line never
exceeds LINE_WIDTH columns, however many methods the sweep has: the best validation
accuracies shown are the leaders that fit, then "+N" for the rest.

    [ 1m05s] quickstart 12/84 14% ETA 6m20s | run 2 wait 70 | prun 1 fail 2 | best dense .612 +5

ETA: the mean duration of the trials finished so far times the trials left, divided by the
trials that can run at once (the concurrency, or fewer when fewer are left), less half a
trial for those already in flight. It is shown once a trial has finished ('ETA ?' before).
Pruned, failed and diverged counts appear once they are not zero.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from typing import Any

import pandas as pd

from hidden_core.records import TEST_METRIC
from hidden_core.spec import SweepSpec

LINE_WIDTH = 100


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
        self.durations: list[float] = []  # wall seconds of each finished trial
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
        duration = _duration(summary)
        if duration is not None:
            self.durations.append(duration)
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

    def eta_seconds(self) -> float | None:
        """Seconds until the last trial ends, from the finished trials' mean duration (see
        the module docstring); None before any trial has finished."""
        return eta_seconds(self.durations, self.total - self.done, self.running, self.concurrency)

    def line(self) -> str:
        return status_line(
            name=self.spec.name,
            elapsed_s=time.monotonic() - self.started,
            done=self.done,
            total=self.total,
            eta_s=self.eta_seconds(),
            running=self.running,
            counts=self.counts,
            best=self.best,
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


def _duration(summary: Any) -> float | None:
    started, finished = getattr(summary, "started_at", None), getattr(summary, "finished_at", None)
    if started is not None and finished is not None and finished >= started:
        return float(finished - started)
    seconds = getattr(summary, "train_seconds", None)
    return float(seconds) if seconds is not None and math.isfinite(seconds) and seconds > 0 else None


def eta_seconds(durations: list[float], left: int, running: int, concurrency: int) -> float | None:
    if left <= 0:
        return 0.0
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    slots = max(1, min(concurrency, left))
    in_flight = min(running, slots) / slots  # trials already under way are about half done
    return max(0.0, mean * (left / slots - 0.5 * in_flight))


def status_line(*, name: str, elapsed_s: float, done: int, total: int, eta_s: float | None, running: int | None,
                counts: dict[str, int], best: dict[str, float], width: int = LINE_WIDTH) -> str:
    """One progress line of at most `width` columns. What does not fit is dropped from the
    end: best accuracies first (then "+N more"), then the sweep name is shortened."""
    percent = f"{100 * done / total:.0f}%" if total else "-"
    eta = "?" if eta_s is None else _elapsed(eta_s)
    if running is None:  # from the store: trials in flight are not known
        queue = f"left {max(0, total - done)}"
    else:
        queue = f"run {running} wait {max(0, total - done - running)}"
    ended = " ".join(f"{short} {counts[status]}" for status, short in (("pruned", "prun"), ("failed", "fail"), ("diverged", "div"))
                     if counts.get(status))
    head_tail = f" {done}/{total} {percent} ETA {eta} | {queue}" + (f" | {ended}" if ended else "")
    stamp = f"[{_elapsed(elapsed_s):>6}] "
    room = width - len(stamp) - len(head_tail)
    if len(name) > max(room, 8):
        name = name[: max(room, 8) - 1] + "~"
    text = stamp + name + head_tail
    if not best:
        return text[:width]
    leaders = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = " | best"
    for i, (method, value) in enumerate(leaders):
        more = len(leaders) - i - 1
        item = f" {method} {_acc(value)}"
        suffix = f" +{more}" if more else ""
        if len(text) + len(shown) + len(item) + len(suffix) > width:
            rest = len(leaders) - i
            if i == 0:  # not even one fits: the count only
                tail = f" | best: {rest} methods"
                return text + tail if len(text) + len(tail) <= width else text[:width]
            return text + shown + f" +{rest}"
        shown += item
    return text + shown


def store_line(name: str, frame: pd.DataFrame, planned: int, final: int, left: int, now: float | None = None,
               width: int = LINE_WIDTH) -> str:
    """The progress line of `hidden sweep status --watch`, from the store alone (no Ray):
    `final` of `planned` trials are done, `left` still to run. The trials in flight are not
    in the store, so the concurrency for the ETA is measured there: the most trials whose
    [started_at, finished_at] overlapped, which is how many the sweep ran at once."""
    now = time.time() if now is None else now
    durations: list[float] = []
    concurrency, elapsed = 1, 0.0
    if not frame.empty and {"started_at", "finished_at"} <= set(frame.columns):
        spans = frame[["started_at", "finished_at"]].dropna()
        starts = [t.timestamp() for t in pd.to_datetime(spans["started_at"], utc=True)]
        ends = [t.timestamp() for t in pd.to_datetime(spans["finished_at"], utc=True)]
        durations = [e - s for s, e in zip(starts, ends, strict=True) if e >= s]
        concurrency = max_overlap(list(zip(starts, ends, strict=True)))
        if starts:
            # a sweep with nothing left took from its first start to its last finish; it
            # does not go on ageing while the reader looks at it
            elapsed = max(0.0, (max(ends) if left == 0 else now) - min(starts))
    counts = frame["status"].value_counts().to_dict() if "status" in frame else {}
    best: dict[str, float] = {}
    if not frame.empty and "best_val_acc" in frame:
        scored = frame[frame["status"].isin(("completed", "pruned"))].dropna(subset=["best_val_acc"])
        best = {str(m): float(v) for m, v in scored.groupby("method")["best_val_acc"].max().items()}
    return status_line(name=name, elapsed_s=elapsed, done=final, total=planned,
                       eta_s=eta_seconds(durations, left, 0, concurrency), running=None,
                       counts=counts, best=best, width=width)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals that contain one instant (at least 1)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda ev: (ev[0], ev[1]))
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return max(most, 1)


def _acc(value: float) -> str:
    """0.612 -> '.612' (accuracies are fractions; 1.0 -> '1.00')."""
    text = f"{value:.3f}"
    return text[1:] if text.startswith("0.") else f"{value:.2f}"


# ---- tables from the store -------------------------------------------------------------------
def method_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: trials by status; over the completed trials, the mean best validation
    accuracy and the mean and std of the one test metric (records.TEST_METRIC: test accuracy
    at the best-validation epoch, the number `hidden analyze` reports too); the mean
    training seconds per trial."""
    if frame.empty:
        return pd.DataFrame(columns=["method", "trials", "completed", "pruned", "diverged", "failed", "best_val_acc", TEST_METRIC, f"{TEST_METRIC}_std", "train_s_mean"])
    rows = []
    for method, group in frame.groupby("method", sort=True):
        scored = group[group["status"] == "completed"]
        rows.append({
            "method": method,
            "trials": len(group),
            **{s: int((group["status"] == s).sum()) for s in ("completed", "pruned", "diverged", "failed")},
            "best_val_acc": scored["best_val_acc"].mean(),
            TEST_METRIC: scored[TEST_METRIC].mean(),
            f"{TEST_METRIC}_std": scored[TEST_METRIC].std(),
            "train_s_mean": group["train_seconds"].mean(),
        })
    return pd.DataFrame(rows)


def width_table(frame: pd.DataFrame, value: str = TEST_METRIC) -> pd.DataFrame:
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
