"""A sweep's live progress line, and the per-method tables printed from the store.

On a terminal the line rewrites itself in place; in a log (CI, `ray job submit`) it is
printed when a trial ends, at most every few seconds, so logs stay short. The line never
exceeds LINE_WIDTH columns, however many methods the sweep has: the best validation
accuracies shown are the leaders that fit, then "+N" for the rest.

    [ 1m05s] quickstart 12/84 14% ETA 6m20s | run 2 wait 70 | prun 1 fail 2 | best dense .612 +5

ETA (EtaModel): each trial to run is known by its planned epochs, its parameter count and
the run it trains in (one Tune trial: a trial, or the seeds of a vectorized cell, which end
together in a burst). Runs are timed as they end and a run's seconds per seed-epoch are
fitted as a + slope[method] x parameters (EtaModel.rate: a fixed part shared by the methods,
a part growing with the network per method, least squares on relative errors): the wide
trials a sweep starts with (dearest first) do not make the narrow ones left look as slow,
the runner's first run is the cheapest cell (the probe, planning.longest_first) so the
fixed part is timed early, and a cell of three seeds counts as three trials of work done
in one run's time. The runs left are then scheduled as the runner does (dearest first,
each on the first free slot of the concurrency); a run in flight counts by what it has
left, its predicted seconds less the seconds since `tick` first saw it running (without
that: the one a slot took when the last trial ended counted whole, the others half done,
which misjudged the tail of a sweep: 27 of 30 simulated demos within 1.5x, worst 0.50,
against 29 of 30, worst 0.65); the ETA is when the last one ends.
Checked on a simulated sweep in tests/test_progress.py. Shown once runs of two sizes (2x apart) have ended, or of the only sizes left ('ETA ?'
before). A progress object started without the plan's work falls
back on the mean trial duration times the trials left over the concurrency (eta_seconds).
Pruned, failed and diverged counts appear once they are not zero.
"""

from __future__ import annotations

import heapq
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hidden_core.analysis.metrics import selection_column
from hidden_core.analysis.tables import cell_axes, describe_pooled, one_per_seed
from hidden_core.records import (
    BEST_VAL_ACC,
    COMPLETED,
    DIVERGED,
    EPOCHS_RUN,
    FAILED,
    PRUNED,
    TEST_METRIC,
    TRAIN_SECONDS,
    VAL_ACC,
)
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
        self.run_started: dict[str, float] = {}  # run -> when it was first seen running (monotonic)
        self.model: EtaModel | None = None
        self.started = time.monotonic()
        self._last_print = 0.0
        self._last_line = ""

    # -- events --
    def start(self, total: int, concurrency: int, work: tuple[dict[str, Work], list[Work]] | None = None) -> None:
        """`work`: plan_work(todo), what each trial to run costs (the ETA's model)."""
        self.total = total
        self.concurrency = concurrency
        self.model = EtaModel(*work) if work is not None else None
        self.started = time.monotonic()
        self.message(f"sweep {self.spec.name}: {total} trials to run, {concurrency} at a time")

    def message(self, text: str) -> None:
        self._clear()
        print(text, file=self.out, flush=True)

    def on_epoch(self, ray_id: str, record: Any, result: dict[str, Any]) -> None:
        value = result.get(VAL_ACC)
        method = record.config.get("method", "?")
        if isinstance(value, float) and math.isfinite(value) and value > self.best.get(method, -1.0):
            self.best[method] = value

    def on_trial_end(self, summary: Any) -> None:
        self.counts[summary.status] += 1
        duration = _duration(summary)
        if duration is not None:
            self.durations.append(duration)
        if self.model is not None:
            stopped_early = summary.status != COMPLETED and getattr(summary, EPOCHS_RUN, None) is not None
            self.model.ended(summary.trial_id, getattr(summary, "run", "") or summary.trial_id, duration,
                             summary.epochs_run if stopped_early else None)
        if summary.best_val_acc is not None and math.isfinite(summary.best_val_acc):
            if summary.best_val_acc > self.best.get(summary.method, -1.0):
                self.best[summary.method] = summary.best_val_acc
        self._print(force=not self.tty and time.monotonic() - self._last_print >= self.interval_s)

    def tick(self, trials: list[Any]) -> None:
        running = [t for t in trials if getattr(t, "status", "") == "RUNNING"]
        self.running = len(running)
        now = time.monotonic()
        live = {run_of(getattr(t, "config", None) or {}) for t in running} - {""}
        for run in live:
            self.run_started.setdefault(run, now)
        for run in set(self.run_started) - live:  # ended (or stopped): no longer in flight
            del self.run_started[run]
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
        if self.model is not None:
            now = time.monotonic()
            return self.model.eta(self.running, self.concurrency, {run: now - t0 for run, t0 in self.run_started.items()})
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
    seconds = getattr(summary, TRAIN_SECONDS, None)
    return float(seconds) if seconds is not None and math.isfinite(seconds) and seconds > 0 else None


@dataclass(frozen=True)
class Work:
    """What one trial to run costs: its planned epochs (a lottery ticket: every row of its
    level plan), its network's parameter count, and the run it trains in (a vectorized
    cell's id for its seeds, else its own trial_id)."""

    epochs: int
    params: int
    run: str = ""
    method: str = ""


def run_of(config: dict[str, Any]) -> str:
    """The run (Work.run) a live Tune trial trains: its cell for a vectorized cell's trial
    (trial_id 'cell-...'), else its trial_id ('' when unknown, e.g. a search sample)."""
    trial_id = str(config.get("trial_id") or "")
    return str(config.get("cell_id") or "") if trial_id.startswith("cell-") else trial_id


def plan_work(todo: Any) -> tuple[dict[str, Work], list[Work]]:
    """The Work of every trial of `todo` (planning.Todo): by trial_id for the grid trials, a
    list for a search's samples (their ids come with the sample). Imports torch (parameter
    counts on the meta device), as the runner's longest-first order does."""
    from hidden_core.footprint import ARCHITECTURE_FIELDS, parameter_count
    from hidden_core.tune.planning import planned_epochs

    sizes: dict[tuple, int] = {}
    cell_of = {t.trial_id: c.cell_id for c in todo.cells for t in c.trials}

    def work(config: Any, run: str) -> Work:
        key = tuple(getattr(config, f) for f in ARCHITECTURE_FIELDS)
        if key not in sizes:
            sizes[key] = parameter_count(config)
        return Work(planned_epochs(config), sizes[key], run, config.method)

    trials = {t.trial_id: work(t.config, cell_of.get(t.trial_id, t.trial_id)) for t in todo.trials}
    return trials, [work(p.template, f"sample-{i}-{j}") for i, (p, n) in enumerate(todo.points) for j in range(n)]


class EtaModel:
    """The ETA from the work left and the runs timed so far (see the module docstring)."""

    def __init__(self, trials: dict[str, Work], samples: list[Work]):
        self.pending = dict(trials)
        # a search sample's id is not known in advance: an ended unknown trial takes the
        # dearest sample left (samples start dearest first, as the grid does)
        self.samples = sorted(samples, key=lambda w: w.epochs * w.params, reverse=True)
        self.runs: dict[str, list[float]] = {}  # run -> [seconds, seed-epochs, parameter-epochs]
        self.run_method: dict[str, str] = {}

    def ended(self, trial_id: str, run: str, duration: float | None, epochs_run: int | None = None) -> None:
        """`epochs_run`: what a trial that stopped early (pruned, failed, diverged) trained,
        counted instead of its planned epochs (a trial pruned at 3 of 30 epochs is not 10x
        faster)."""
        work = self.pending.pop(trial_id, None)
        if work is None and self.samples:
            work = self.samples.pop(0)
        if work is None:
            return
        epochs = work.epochs if epochs_run is None else max(0, min(work.epochs, int(epochs_run)))
        record = self.runs.setdefault(run, [0.0, 0.0, 0.0])
        self.run_method[run] = work.method
        if duration is not None:  # the seeds of one run end together: the run took the longest
            record[0] = max(record[0], duration)
        record[1] += epochs
        record[2] += epochs * work.params

    def rate(self) -> dict[str, tuple[float, float]] | None:
        """Per method (a, b): seconds per seed-epoch = a + b x parameters, fitted over the
        method's timed runs by least squares on relative errors (weights seed-epochs / y^2: a
        run of 0.6 s counts as much as one of 19 s), a, b >= 0; None before any run is timed.
        Each method has a line of its own, timed at both ends of its sizes from early on: the
        runner starts each method's cheapest cell first (planning.longest_first). A method
        timed at sizes less than 2x apart, or not within 4x of the largest network it has
        left, keeps the mean line's shape, scaled through its widest runs; one not timed yet takes
        the mean line. None while no method (nor all pooled) is so timed. Measured on `make demo`'s timings: one line for all
        methods times one factor per method (a mask's sort, a frozen body's short backward
        pass), fitted by absolute errors, gave ETA/time left 0.40-0.58 after a quarter (the
        fixed part was lost in the wide runs' noise); with one probe and a line per method
        see tests/test_progress.py."""
        timed: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for r, (d, e, pe) in self.runs.items():
            if d > 0 and e > 0:
                y = d / e
                timed[self.run_method.get(r, "")].append((y, pe / e, e / (y * y)))
        if not timed:
            return None
        reach: dict[str, int] = defaultdict(int)  # the largest network each method has left
        least: dict[str, float] = defaultdict(lambda: math.inf)  # and the smallest
        for w in [*self.pending.values(), *self.samples]:
            reach[w.method] = max(reach[w.method], w.params)
            least[w.method] = min(least[w.method], w.params)

        def fits(points: list[tuple[float, float, float]], smallest: float, largest: int) -> bool:
            """Sizes 2x apart, the largest within 4x of the largest left (a slope fitted on
            narrow runs alone is noise when extrapolated 40x: a simulated demo took 2x the
            time); or every size left within the sizes timed, give or take 25% (a sweep of
            one architecture: its flat rate, nothing to extrapolate)."""
            xs = [x for _, x, _ in points]
            if _spread(points) and 4 * max(xs) >= largest:
                return True
            return largest > 0 and min(xs) <= 1.25 * smallest and largest <= 1.25 * max(xs)

        lines = {m: _line_fit(points) for m, points in timed.items() if fits(points, least[m], reach[m])}
        pooled = [p for points in timed.values() for p in points]
        if lines:
            mean = (sum(a for a, _ in lines.values()) / len(lines), sum(b for _, b in lines.values()) / len(lines))
        elif fits(pooled, min(least.values(), default=math.inf), max(reach.values(), default=0)):  # one line through them all
            mean = _line_fit(pooled)
        else:  # how the cost grows is not known yet ('ETA ?'; a slope fitted over 1,875 and
            return None  # 1,975 parameters once said 49 minutes for 2)
        for m, points in timed.items():
            if m not in lines:
                # through its widest runs: the closest to what it has left (its narrow ones are
                # mostly the fixed part: on `make demo` they put edge_popup at 1.5x dense where its
                # widest cells cost 1.9x; ETA/time left 0.66 -> 0.73 at the low end)
                top = max(x for _, x, _ in points)
                scale = _mean_ratio([p for p in points if p[1] * 1.25 >= top], mean)
                lines[m] = (mean[0] * scale, mean[1] * scale)
        return defaultdict(lambda: mean, lines)

    def eta(self, running: int, concurrency: int, elapsed: dict[str, float] | None = None) -> float | None:
        """The end of the runs left, scheduled as the runner does: dearest first, each on the
        first free slot. The runs in flight: those in `elapsed` (run -> seconds since it
        started) have their predicted seconds less what they ran (at least 0); without it,
        the `running` dearest runs are taken as under way (see the module docstring)."""
        if not self.pending and not self.samples:
            return 0.0
        rate = self.rate()
        if rate is None:
            return None
        runs: dict[str, float] = defaultdict(float)
        for w in [*self.pending.values(), *self.samples]:
            a, b = rate[w.method]
            runs[w.run] += w.epochs * (a + b * w.params)
        slots = max(1, concurrency)
        flying_known = {r: max(0.0, runs[r] - seconds) for r, seconds in (elapsed or {}).items() if r in runs}
        if flying_known:
            free = sorted(sorted(flying_known.values(), reverse=True)[:slots] + [0.0] * max(0, slots - len(flying_known)))
            for seconds in sorted((d for r, d in runs.items() if r not in flying_known), reverse=True):
                heapq.heapreplace(free, free[0] + seconds)
            return max(free)
        queue = sorted(runs.values(), reverse=True)
        flying = min(running, slots, len(queue))
        # in flight: the run a slot took when the last trial ended has barely started (the
        # cheapest of them, dearest first), the others are about half done
        flight = [0.5 * d for d in queue[:flying - 1]] + queue[flying - 1:flying] if flying else []
        free = sorted(flight + [0.0] * (slots - flying))
        for seconds in queue[flying:]:
            heapq.heapreplace(free, free[0] + seconds)
        return max(free)


def _line_fit(points: list[tuple[float, float, float]]) -> tuple[float, float]:
    """(a, b) >= 0 of y = a + b x by weighted least squares over (y, x, weight): a flat rate
    where y does not grow with x (or x does not vary), a proportional one where the line
    would cross below 0."""
    w = sum(n for _, _, n in points)
    mx = sum(x * n for _, x, n in points) / w
    my = sum(y * n for y, _, n in points) / w
    sxx = sum(n * (x - mx) ** 2 for _, x, n in points)
    if sxx <= 1e-12 * max(1.0, mx * mx) * w:
        return my, 0.0
    b = sum(n * (x - mx) * (y - my) for y, x, n in points) / sxx
    if b < 0:
        return my, 0.0
    if my - b * mx < 0:
        return 0.0, sum(y * x * n for y, x, n in points) / sum(x * x * n for _, x, n in points)
    return my - b * mx, b


def _spread(points: list[tuple[float, float, float]]) -> bool:
    """Whether the sizes (x) of `points` span at least a factor 2: enough to fit a line's slope."""
    xs = [x for _, x, _ in points]
    return min(xs) > 0 and max(xs) >= 2 * min(xs)


def _mean_ratio(points: list[tuple[float, float, float]], line: tuple[float, float]) -> float:
    """The weighted mean of y / (a + b x) over (y, x, weight): how much dearer these runs are than `line`."""
    ratios = [(y / (line[0] + line[1] * x), n) for y, x, n in points if line[0] + line[1] * x > 0]
    return sum(r * n for r, n in ratios) / sum(n for _, n in ratios) if ratios else 1.0


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
    ended = " ".join(f"{short} {counts[status]}" for status, short in ((PRUNED, "prun"), (FAILED, "fail"), (DIVERGED, "div"))
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
    if not frame.empty and BEST_VAL_ACC in frame:
        scored = frame[frame["status"].isin((COMPLETED, PRUNED))].dropna(subset=[BEST_VAL_ACC])
        best = {str(m): float(v) for m, v in scored.groupby("method")[BEST_VAL_ACC].max().items()}
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
# Both tables take one value per cell and seed (analysis.tables.one_per_seed: with a search,
# the sample validation chooses), so their counts are seeds and agree with `hidden results
# best` and `hidden analyze`, which select the same way.
def method_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: trials by status; over the completed trials (one per cell and seed), the
    mean best validation accuracy and the mean and std of the one test metric
    (records.TEST_METRIC: test accuracy at the best-validation epoch, the number `hidden
    analyze` reports too); the mean training seconds per trial. It pools every other axis:
    summary_title says which."""
    if frame.empty:
        return pd.DataFrame(columns=["method", "trials", COMPLETED, PRUNED, DIVERGED, FAILED, BEST_VAL_ACC, TEST_METRIC, f"{TEST_METRIC}_std", "train_s_mean"])
    scored_all = one_per_seed(frame[frame["status"] == COMPLETED], selection_column(TEST_METRIC))
    rows = []
    for method, group in frame.groupby("method", sort=True):
        scored = scored_all[scored_all["method"] == method]
        rows.append({
            "method": method,
            "trials": len(group),
            **{s: int((group["status"] == s).sum()) for s in (COMPLETED, PRUNED, DIVERGED, FAILED)},
            BEST_VAL_ACC: scored[BEST_VAL_ACC].mean(),
            TEST_METRIC: scored[TEST_METRIC].mean(),
            f"{TEST_METRIC}_std": scored[TEST_METRIC].std(),
            "train_s_mean": group[TRAIN_SECONDS].mean(),
        })
    return pd.DataFrame(rows)


def summary_title(frame: pd.DataFrame) -> str:
    """The header of method_summary: what it averages and which axes it pools."""
    done = frame[frame["status"] == COMPLETED] if not frame.empty else frame
    pooled = describe_pooled(done, ["method"]) if not done.empty else "no completed trials"
    return f"per method (completed trials, one per cell and seed: mean best_val_acc, mean and std of {TEST_METRIC}; {pooled}):"


def width_axes(frame: pd.DataFrame) -> list[str]:
    """The row axes of width_table: method and every other grid axis that varies among the
    completed trials (width is the columns, seed the count, searched axes are selected)."""
    done = frame[frame["status"] == COMPLETED] if not frame.empty else frame
    grid, _ = cell_axes(done) if not done.empty else ([], [])
    return ["method", *[c for c in grid if c not in ("method", "width")]]


def width_table(frame: pd.DataFrame, value: str = TEST_METRIC) -> pd.DataFrame:
    """Mean `value` of completed trials per row (method and every other grid axis that
    varies: width_axes) and width (columns): 'mean±std (n)' over n seeds, one value per seed
    (with a search, the sample validation chooses)."""
    done = frame[frame["status"] == COMPLETED]
    if done.empty:
        return pd.DataFrame()
    rows = one_per_seed(done, selection_column(value)).dropna(subset=[value])
    axes = width_axes(frame)
    cells: dict[tuple[tuple, float], str] = {}
    for key, group in rows.groupby([*axes, "width"], dropna=False, sort=True):
        values = group[value].astype(float)
        spread = f"±{values.std():.3f}" if len(values) > 1 else ""
        cells[(tuple(key[:-1]), float(key[-1]))] = f"{values.mean():.3f}{spread} ({group['seed'].nunique()})"
    labels = sorted({k for k, _ in cells}, key=lambda k: tuple(str(v) for v in k))
    widths = sorted({w for _, w in cells})
    index = pd.MultiIndex.from_tuples(labels, names=axes) if len(axes) > 1 else pd.Index([k[0] for k in labels], name=axes[0])
    return pd.DataFrame([[cells.get((k, w), "") for w in widths] for k in labels], index=index, columns=[f"w={w:g}" for w in widths])


def width_title(frame: pd.DataFrame, value: str = TEST_METRIC) -> str:
    axes = [*width_axes(frame), "width"]
    return f"mean {value} by {', '.join(axes[:-1])} and {axes[-1]} (±std over seeds, (n) seeds; one trial per cell and seed):"


def format_frame(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    if frame.empty:
        return "(no trials)"
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else floats.format(v))
    return shown.to_string(index=not isinstance(shown.index, pd.RangeIndex))


# ---- training health (analysis/health.py) ----------------------------------------------------
def health_lines(frame: pd.DataFrame, limit: int = 5) -> list[str]:
    """A few lines for the end-of-sweep summary and `hidden sweep status`: trials flagged
    (and per flag), then the flagged cells (at most `limit`). Cells are described by the
    config fields that tell the sweep's grid cells apart, most flagged first. Trials without a
    health record are counted as unknown, never as healthy. Imports no scipy: `sweep status
    --watch` redraws this."""
    from collections import Counter

    from hidden_core.analysis.health import (
        describe_cells,
        flagged_only,
        judged,
        trial_flags,
        unhealthy_cells,
    )
    rows = judged(frame)
    if rows.empty:
        return []
    flags = trial_flags(rows)
    known = flags.notna()
    if not known.any():
        return [f"health: unknown for all {len(rows)} trials (no health record: written before hidden recorded training health)"]
    counts = Counter(name for f in flags[known] for name in f)
    flagged = int(flags[known].map(bool).sum())
    line = f"health: {flagged} of {int(known.sum())} trials flagged" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})" if counts else "")
    if not known.all():
        line += f"; {int((~known).sum())} without a health record (unknown)"
    if not flagged:
        return [line]
    hit = flags.map(bool) & known
    if "cell_id" in rows.columns and rows["cell_id"].notna().all():  # only the cells with a flagged trial
        rows = rows[rows["cell_id"].isin(rows.loc[hit, "cell_id"])]
    cell_columns = _cell_fields(rows)
    cells = flagged_only(unhealthy_cells(rows, cell_columns)).sort_values("n_flagged", ascending=False, kind="stable")
    return [line, *(f"  {text}" for text in describe_cells(cells, cell_columns, limit))]


def _cell_fields(rows: pd.DataFrame) -> list[str]:
    """The config fields that tell grid cells apart: they vary across the rows and are constant
    within each cell (cell_id), as the analysis's automatic split (analysis/scaling.py)."""
    from hidden_core.config import TrialConfig

    fields = [c for c in TrialConfig.model_fields if c != "seed" and c in rows.columns and rows[c].astype(str).nunique() > 1]
    if fields and "cell_id" in rows.columns and rows["cell_id"].notna().all():
        per_cell = rows[["cell_id", *fields]].astype(str).groupby("cell_id").nunique()
        fields = [c for c in fields if (per_cell[c] <= 1).all()]
    return fields or ["method"]
