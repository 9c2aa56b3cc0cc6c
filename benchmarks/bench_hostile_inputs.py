"""Hostile input: time and memory of `hidden sweep run` refusing each malformed spec of the
corpus (tests/hostile_specs.py), in one process, each input on its own:

- wall time of the CLI's main() on the input (parsing, validation, the message);
- peak Python allocation during it (tracemalloc, reset per input);
- the process's peak resident memory over the whole corpus (getrusage), imports included.

Targets (the issue's): every input refused in under 5 s and 500 MB. Before the limits the
worst input (a 770-byte alias bomb) grew past 3 GB in 41 s.
"""

from __future__ import annotations

import contextlib
import io
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

TARGET_S = 5.0
TARGET_MB = 500.0


def measure(case, folder: Path) -> tuple[float, float, int]:
    from hidden_core.cli import main

    path = folder / f"{case.id}.yaml"
    path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
    tracemalloc.reset_peak()
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["sweep", "run", str(path), "--results", str(folder / "results"), "--quiet"])
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    return seconds, peak / 2**20, code


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    """`device` is accepted for the bench driver and unused: no input reaches a device."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests"))
    from hostile_specs import corpus

    cases = corpus()
    if quick:
        cases = [c for c in cases if c.kind.startswith(("yaml", "file", "expansion"))]
    import hidden_core.tune.runner  # noqa: F401  (imports are not the inputs' cost)

    tracemalloc.start()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases[:3] + [c for c in cases if c.id == "storage-bogus"]:  # warm-up: first-use imports and caches
            measure(case, Path(tmp))
        for case in cases:
            seconds, mb, code = measure(case, Path(tmp))
            results.append((seconds, mb, code, case.id))
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    slowest = max(results)
    biggest = max(results, key=lambda r: r[1])
    refused = sum(1 for r in results if r[2] == 2)
    named = {r[3]: r for r in results}
    return [
        {"name": f"hostile specs refused with exit 2 ({len(results)} inputs)", "value": refused, "unit": "inputs", "target": f"= {len(results)}", "met": refused == len(results)},
        {"name": f"hostile spec: slowest input ({slowest[3]})", "value": round(slowest[0], 3), "unit": "s", "target": f"< {TARGET_S:g} s", "met": slowest[0] < TARGET_S},
        {"name": f"hostile spec: largest peak allocation ({biggest[3]})", "value": round(biggest[1], 1), "unit": "MB", "target": f"< {TARGET_MB:g} MB", "met": biggest[1] < TARGET_MB},
        *({"name": f"hostile spec: {name}", "value": round(named[name][0], 3), "unit": "s", "target": f"< {TARGET_S:g} s", "met": named[name][0] < TARGET_S}
          for name in ("alias-bomb", "ten-million-trials", "huge-file") if name in named),
        {"name": "hostile spec: process peak RSS over the corpus (imports included)", "value": round(rss_mb, 1), "unit": "MB", "target": f"< {TARGET_MB:g} MB", "met": rss_mb < TARGET_MB},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
