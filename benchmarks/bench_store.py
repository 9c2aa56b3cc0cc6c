"""Results-store speed: trials written one by one (as a sweep driver does), and a filter +
group-by over 100,000 stored trials (what `hidden results show --group-by` does).

    python benchmarks/bench_store.py [--quick]

`run(quick)` returns rows {name, value, unit, target, met} for the `make bench` driver.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_store import bulk_trial_frame, grid, make_trial  # noqa: E402

from hidden_core.store import ResultStore  # noqa: E402

WRITE_TARGET_MS_PER_TRIAL = 6.0  # 10,000 trials in under a minute: far faster than trials finish
QUERY_TARGET_S = 0.5
QUERY_ROWS = 100_000


def _trials(n: int) -> list[tuple[dict, list[dict]]]:
    import itertools

    import numpy as np

    cells = grid(methods=("dense", "edge_popup", "sign_flip", "free_prune"), widths=(0.25, 0.5, 1, 2, 4, 8, 16, 32), keep_fractions=(0.3, 0.5, 0.7), seeds=(0,))
    configs = [{**cell, "seed": seed} for seed, cell in itertools.islice(((s, c) for s in itertools.count() for c in cells), n)]
    rng = np.random.default_rng(0)
    return [make_trial(c, noise=0.01, rng=rng, index=i, epochs=5) for i, c in enumerate(configs)]


def bench_write(root: str, n: int) -> tuple[float, float]:
    """Wall and CPU seconds to write n trials (5 epochs each) one write_trial() at a time."""
    trials = _trials(n)
    store = ResultStore(root)
    wall, cpu = time.perf_counter(), time.process_time()
    for row, history in trials:
        store.write_trial("written", row, history)
    return time.perf_counter() - wall, time.process_time() - cpu


def group_by_query(store: ResultStore, sweep: str):
    trials = store.load_trials(sweep, where="status == 'completed' and width >= 1", columns=["method", "width", "keep_fraction", "test_acc"])
    return trials.groupby(["method", "width", "keep_fraction"])["test_acc"].agg(["mean", "std", "count"])


def bench_query(store: ResultStore, sweep: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        group_by_query(store, sweep)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(device: str = "cpu", quick: bool = False, tiny: bool = False) -> list[dict]:
    """`device` is accepted for the bench driver and unused: the store never touches it."""
    n_write = 200 if tiny else 1_000 if quick else 10_000
    with tempfile.TemporaryDirectory() as root:
        write_s, write_cpu_s = bench_write(root, n_write)
        store = ResultStore(root)
        store.write_trials("bulk", bulk_trial_frame(QUERY_ROWS))
        query_s = bench_query(store, "bulk")
        written_query_s = bench_query(store, "written")
    ms_per_trial = 1000 * write_s / n_write
    return [
        {"name": f"store: write {n_write:,} trials one by one (total)", "value": round(write_s, 2), "unit": "s", "target": f"< {WRITE_TARGET_MS_PER_TRIAL * n_write / 1000:g} s", "met": ms_per_trial < WRITE_TARGET_MS_PER_TRIAL},
        {"name": "store: write one trial (mean wall time, incl. merging)", "value": round(ms_per_trial, 2), "unit": "ms", "target": f"< {WRITE_TARGET_MS_PER_TRIAL:g} ms", "met": ms_per_trial < WRITE_TARGET_MS_PER_TRIAL},
        {"name": "store: write one trial (CPU time: unaffected by other load)", "value": round(1000 * write_cpu_s / n_write, 2), "unit": "ms", "target": f"< {WRITE_TARGET_MS_PER_TRIAL:g} ms", "met": 1000 * write_cpu_s / n_write < WRITE_TARGET_MS_PER_TRIAL},
        {"name": f"store: filter + group-by over {QUERY_ROWS:,} trials (median of 5)", "value": round(query_s, 3), "unit": "s", "target": f"< {QUERY_TARGET_S:g} s", "met": query_s < QUERY_TARGET_S},
        {"name": f"store: same query over the {n_write:,} trials written one by one", "value": round(written_query_s, 3), "unit": "s", "target": f"< {QUERY_TARGET_S:g} s", "met": written_query_s < QUERY_TARGET_S},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 writes instead of 10,000")
    rows = run(quick=parser.parse_args().quick)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['value']:>9} {r['unit']:<2}  target {r['target']:<9}  {'met' if r['met'] else 'NOT MET'}")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
