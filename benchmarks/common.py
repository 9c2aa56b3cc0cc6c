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

import platform
import statistics
import time
from collections.abc import Callable

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
