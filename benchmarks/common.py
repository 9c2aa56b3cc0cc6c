"""Timing helpers shared by the bench modules.

These machines are noisy (other jobs share the cores), so no absolute time is a figure:
every figure is a ratio of candidates measured side by side in one run. `interleaved` warms
every candidate up, then runs them round-robin (one measurement each per round, the order
rotated every round), so slow spells hit every candidate alike; `paired_ratio` takes the
median of the per-round ratios, which cancels the drift between rounds.

A report row is a dict {name, value, unit, target, met}; `met` is None for figures that
are printed for information and carry no target.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# One intra-op thread by default: on a shared machine a second thread mostly waits for a
# core another job holds, which turns small ops into scheduler quanta (a 0.7 ms MLP step
# measured 8.7 ms with 2 threads under load); a sweep also runs one trial per core.
DEFAULT_THREADS = 1


def set_threads(threads: int | None) -> int:
    """Every bench uses the same intra-op thread count (the `--threads` of run_all)."""
    n = threads or DEFAULT_THREADS
    torch.set_num_threads(n)
    return n


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def interleaved(
    candidates: dict[str, Callable[[], object]],
    *,
    warmup: int = 1,
    rounds: int = 5,
    inner: int = 1,
    min_rounds: int = 2,
    budget_s: float | None = None,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one entry per round.

    Each round times `inner` back-to-back calls of every candidate, the candidates' order
    rotated by one each round. Stops after `rounds` rounds, or earlier once `budget_s`
    (wall) seconds are spent (but never before `min_rounds`). `clock` defaults to wall
    time; see `step_clock` for the CPU-time clock."""
    sync = sync or (lambda: None)
    clock = clock or time.perf_counter
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = candidates[name]
            sync()
            t0 = clock()
            for _ in range(inner):
                fn()
            sync()
            times[name].append((clock() - t0) / inner)
        if budget_s is not None and r + 1 >= min_rounds and time.perf_counter() - started > budget_s:
            break
    return times


def step_clock(device: torch.device | str) -> Callable[[], float]:
    """The clock for compute-bound candidates running in this process: on the CPU with one
    intra-op thread, the process's CPU time, which does not count the time other jobs on
    the machine hold the core (the wall clock does); on a GPU, the wall clock (with
    synchronization)."""
    if torch.device(device).type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of time(numerator) / time(denominator) in the same round."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator], strict=True))


def row(name: str, value: float, unit: str, target: str = "", met: bool | None = None) -> dict:
    return {"name": name, "value": value, "unit": unit, "target": target, "met": met}


def info(name: str, value, unit: str = "") -> dict:
    """A row printed for information (no target)."""
    return row(name, value, unit, "", None)


def format_rows(rows: list[dict]) -> str:
    if not rows:
        return ""
    width = max(len(r["name"]) for r in rows)
    lines = []
    for r in rows:
        status = "" if r["met"] is None else ("met" if r["met"] else "NOT MET")
        target = f"target {r['target']}" if r["target"] else ""
        lines.append(f"{r['name']:<{width}}  {_fmt(r['value']):>10} {r['unit']:<8} {target:<18} {status}".rstrip())
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()})"


def at_most(value: float, limit: float) -> bool:
    """met for an "at most" target; a value that is not a number (nan) never meets it."""
    return bool(value <= limit)


def at_least(value: float, limit: float) -> bool:
    """met for an "at least" target; nan never meets it."""
    return bool(value >= limit)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as one string (what shares the cores)."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


# ---- one `hidden sweep run` call, timed from outside -----------------------------------
# The child is the CLI (hidden_core.cli.main, what the `hidden` script runs) with one
# addition: hidden_core.tune.ray_setup.start_ray is wrapped to record when Ray's start began
# and ended (wall clock, time.time(), the clock the trials' started_at use) and when the CLI
# was imported, written as one JSON object to $BENCH_TIMES when the CLI returns. Nothing
# else changes: same arguments, same code (ray_setup, which imports neither Ray nor torch at
# module level, is imported a moment earlier than the CLI would).
CLI_CHILD = """
import json, os, sys, time
_times = {"child_started": time.time()}
import hidden_core.tune.ray_setup as _ray_setup
_start_ray = _ray_setup.start_ray
def _timed_start_ray(*args, **kwargs):
    began = time.time()
    try:
        return _start_ray(*args, **kwargs)
    finally:
        _times.update(ray_start_began=began, ray_start_ended=time.time())
_ray_setup.start_ray = _timed_start_ray
from hidden_core.cli import main
_times["cli_imported"] = time.time()
try:
    code = main(sys.argv[1:])
finally:
    with open(os.environ["BENCH_TIMES"], "w") as f:
        json.dump(_times, f)
sys.exit(code)
"""


@dataclasses.dataclass
class SweepCall:
    """One `hidden sweep run SPEC --json` process, as benchmarks/bench_sweep.py and
    bench_demo.py time it. Times are wall clock (time.time())."""

    called_at: float  # just before the process was started
    process_seconds: float  # until it exited: Python's start, imports, spec, Ray, Tune, store writes, the tables it prints
    report: dict  # the CLI's --json report (SweepReport.to_dict())
    times: dict  # child_started, cli_imported, ray_start_began, ray_start_ended (the last two absent when Ray was not started)
    trials: list[dict]  # the store's trial rows: trial_id, status, started_at, finished_at (epoch s), train_seconds, epochs_run
    load_at_call: str  # load_average() just before the call

    @property
    def first_trial_seconds(self) -> float:
        """From the call to the first trial's start on a worker (its started_at: the trial
        function began, after the worker's imports), nan when no trial started."""
        return first_start_after(self.called_at, [t["started_at"] for t in self.trials])

    @property
    def ray_start_seconds(self) -> float:
        t = self.times
        return t["ray_start_ended"] - t["ray_start_began"] if "ray_start_ended" in t else float("nan")


def first_start_after(called_at: float, started: list[float | None]) -> float:
    """Seconds from `called_at` to the earliest of `started` (None and nan ignored); nan if none."""
    known = [s for s in started if s is not None and s == s]
    return min(known) - called_at if known else float("nan")


def run_sweep_cli(spec: dict, folder: Path, *, cores: int, timeout_s: float = 3600, root: Path | None = None) -> SweepCall:
    """Write `spec` into `folder`, run `hidden sweep run` on it in a fresh process (an
    embedded Ray of `cores` CPUs, a new store in `folder`), read back its trial rows."""
    import yaml

    from hidden_core.records import EPOCHS_RUN, TRAIN_SECONDS
    from hidden_core.store import ResultStore

    root = root or Path(__file__).resolve().parents[1]
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, results, times_path = folder / f"{spec['name']}.yaml", folder / "results", folder / "times.json"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(root), BENCH_TIMES=str(times_path))  # this tree's hidden_core
    argv = ["sweep", "run", str(spec_path), "--results", str(results), "--quiet", "--json", "--num-cpus", str(cores)]
    load = load_average()
    called = time.time()
    proc = subprocess.Popen([sys.executable, "-c", CLI_CHILD, *argv], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: its Ray goes with it
        out, _ = proc.communicate()
        raise RuntimeError(f"hidden sweep run {spec['name']} ran past {timeout_s:.0f} s:\n{out[-3000:]}") from None
    seconds = time.time() - called
    reports = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not reports:
        raise RuntimeError(f"hidden sweep run {spec['name']} exited {proc.returncode}:\n{out[-3000:]}")
    columns = ["trial_id", "status", "started_at", "finished_at", TRAIN_SECONDS, EPOCHS_RUN]
    frame = ResultStore(str(results)).load_trials(spec["name"], columns=columns)
    trials = []
    for rec in frame.to_dict(orient="records"):
        for key in ("started_at", "finished_at"):
            rec[key] = rec[key].timestamp() if rec[key] is not None and rec[key] == rec[key] else None
        trials.append(rec)
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    return SweepCall(called, seconds, json.loads(reports[-1]), times, trials, load)
