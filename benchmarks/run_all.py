"""`make bench`: every bench module, each figure with its target, and benchmarks/RESULTS.md.

    python -m benchmarks.run_all [--device cpu|cuda] [--quick] [--threads N]
                                 [--peak-tflops X] [--only methods,data,store,sweep,demo,vectorized,hostile_inputs,scale,controls]

Each bench module `benchmarks/bench_<name>.py` has `run(...) -> list[dict]` returning rows
{name, value, unit, target, met}; this driver passes it whichever of device / quick it
takes. A module that is not there yet is skipped with a note; one that fails is reported
and the driver goes on. RESULTS.md keeps one section per device type, so a CPU run and a
CUDA run of the same checkout sit side by side: a run replaces only its own device's
section. Exit status 1 when a target is missed or a module failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

import torch

from benchmarks.common import cpu_model, device_name, format_rows, set_threads

MODULES = ("methods", "data", "store", "sweep", "demo", "vectorized", "hostile_inputs", "scale", "controls")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = """# Benchmark results

Written by `make bench` (`python -m benchmarks.run_all`); every figure is a ratio (or a
rate) of candidates measured side by side in the same run, so the figures of a noisy,
shared machine are still comparable. What each figure measures is in the docstring of
its `benchmarks/bench_*.py`; the Notes under a table say what was measured about the
targets missed. One section per device; a run replaces only its own device's section.
"""


def load(name: str):
    """The bench module, or None when it does not exist (yet)."""
    module_name = f"benchmarks.bench_{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            return None
        raise


def call_run(module, device: str, quick: bool, tiny: bool, peak: float | None) -> list[dict]:
    params = inspect.signature(module.run).parameters
    kwargs = {}
    if "device" in params:
        kwargs["device"] = device
    if "quick" in params:
        kwargs["quick"] = quick or tiny
    if "tiny" in params:
        kwargs["tiny"] = tiny
    if "peak" in params and peak:
        kwargs["peak"] = peak
    return module.run(**kwargs)


def machine(device: str, threads: int) -> dict[str, str]:
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores",
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": str(threads),
        "clock": "process CPU time for single-thread CPU steps, else wall time (GPU: synchronized)",
    }
    if hasattr(os, "getloadavg"):
        info["load average at start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return info


def section(device_type: str, meta: dict[str, str], mode: str, results: dict[str, list[dict] | str], seconds: float, notes: dict[str, str] | None = None) -> str:
    lines = [f"<!-- device:{device_type} -->", f"## {device_type.upper()} ({mode})", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += [f"- total time: {seconds:.0f} s", ""]
    for name, rows in results.items():
        lines.append(f"### {name}")
        lines.append("")
        if isinstance(rows, str):
            lines += [rows, ""]
            continue
        lines += ["| figure | value | unit | target | met |", "| --- | ---: | --- | --- | --- |"]
        for r in rows:
            met = "" if r["met"] is None else ("yes" if r["met"] else "**NO**")
            lines.append(f"| {r['name']} | {r['value']} | {r['unit']} | {r['target']} | {met} |")
        lines.append("")
        if notes and notes.get(name):
            lines += ["Notes:", "", notes[name].rstrip(), ""]
    lines.append(f"<!-- /device:{device_type} -->")
    return "\n".join(lines) + "\n"


def write_results(path: Path, device_type: str, text: str) -> None:
    """Replace this device's section of `path`, keeping the others."""
    old = path.read_text() if path.exists() else ""
    blocks = {m.group(1): m.group(0) for m in re.finditer(r"<!-- device:(\w+) -->\n.*?<!-- /device:\1 -->\n", old, flags=re.S)}
    blocks[device_type] = text
    order = sorted(blocks, key=lambda d: (d != "cpu", d))
    body = HEADER + "\n" + "\n".join(blocks[d] for d in order)
    if "cuda" not in blocks:
        body += "\n## CUDA\n\nNot run yet: on a GPU machine run `make bench BENCH_ARGS='--device cuda'`.\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (about 2 minutes on 2 CPU cores)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke test: every path, meaningless numbers
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for every bench (default 1)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU peak for the fraction-of-peak figures (default: by device name)")
    parser.add_argument("--only", default=",".join(MODULES), help=f"comma-separated subset of {','.join(MODULES)}")
    parser.add_argument("--out", default=str(RESULTS), help="results file (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    threads = set_threads(args.threads)
    meta = machine(args.device, threads)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    print(" | ".join(f"{k}: {v}" for k, v in meta.items()) + f" | mode: {mode}", flush=True)

    started = time.perf_counter()
    results: dict[str, list[dict] | str] = {}
    notes: dict[str, str] = {}
    failed = False
    for name in [m.strip() for m in args.only.split(",") if m.strip()]:
        module = load(name)
        if module is None:
            note = f"skipped: benchmarks/bench_{name}.py is not there"
            print(f"\n== {name}: {note}", flush=True)
            results[name] = note
            continue
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            rows = call_run(module, args.device, args.quick, args.tiny, args.peak_tflops)
        except Exception:  # noqa: BLE001 - report and go on with the other benches
            failed = True
            text = traceback.format_exc()
            print(text, file=sys.stderr, flush=True)
            results[name] = "FAILED:\n\n```\n" + text.strip() + "\n```"
            continue
        set_threads(args.threads)  # a bench may have changed it
        results[name] = rows
        notes[name] = getattr(module, "NOTES", "")
        print(format_rows(rows), flush=True)
        print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    seconds = time.perf_counter() - started

    rows = [r for v in results.values() if isinstance(v, list) for r in v]
    missed = [r for r in rows if r["met"] is False]
    print(f"\n== summary: {sum(r['met'] is True for r in rows)} targets met, {len(missed)} missed, {seconds:.0f} s")
    for r in missed:
        print(f"  missed: {r['name']}: {r['value']} {r['unit']} (target {r['target']})")
    write_results(Path(args.out), device.type, section(device.type, meta, mode, results, seconds, notes))
    print(f"wrote {args.out}")
    return 1 if (missed or failed) else 0


if __name__ == "__main__":
    sys.exit(main())
