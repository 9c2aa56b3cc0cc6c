"""One-command GPU acceptance run: `make gpu-check WHEELS=/path/to/wheels`.

For a CUDA machine that has PyTorch (and torchvision) but no network. Prepare the wheel
folder on a machine with network first (`python benchmarks/prepare_wheels.py wheels/ --have
gpu-freeze.txt`, see there) and copy it over. Then, in a checkout of this repository:

    make gpu-check WHEELS=/data/wheels            # or: python benchmarks/gpu_check.py /data/wheels

1. installs this project and its other dependencies from WHEELS (pip --no-index), into the
   Python that has PyTorch (use a venv made with --system-site-packages to keep it apart);
2. trains every method for one epoch on synthetic_cifar10 (generated, no download) on
   CUDA, with bf16 autocast and channels_last, on the Conv4 and the ResNet-20 model;
3. runs the benchmarks: `python -m benchmarks.run_all --device cuda --quick`;
4. runs a 16-trial sweep with `gpu: 0.25` (four trials per GPU at once) on synthetic_cifar10;
5. prints one table last: images/s per method and model, the fraction of the GPU's bf16
   peak, sweep efficiency, trials on the GPU at once, and every failure.

Exit status: 0 when every step passed, 1 when one failed (the table says which), 2 on bad
arguments or no CUDA (before anything is installed). Target: under 8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = (("convnet", 4), ("resnet", 20))
SWEEP_TRIALS = 16


class UsageError(Exception):
    """Bad arguments or an unusable machine: exit 2 before anything starts."""


def check_wheels(folder: str | None, skip_install: bool) -> Path | None:
    if skip_install:
        return None
    if folder is None:
        raise UsageError("WHEELS: give the wheel folder (make gpu-check WHEELS=/path, or --skip-install when "
                         "hidden-core and its dependencies are installed already)")
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"WHEELS: {path} is not a folder; prepare it with `python benchmarks/prepare_wheels.py {path}` "
                         "on a machine with network and copy it here")
    if not any(path.glob("*.whl")):
        raise UsageError(f"WHEELS: {path} holds no .whl files; prepare it with `python benchmarks/prepare_wheels.py {path}`")
    return path


def check_cuda() -> str:
    """The GPU's name; UsageError when PyTorch or CUDA is missing."""
    try:
        import torch
    except ImportError:
        raise UsageError("PyTorch is not installed in this Python; gpu-check runs on a machine that has it "
                         f"({sys.executable})") from None
    if not torch.cuda.is_available():
        raise UsageError(f"CUDA is not available to PyTorch {torch.__version__} (torch.version.cuda={torch.version.cuda}); "
                         "gpu-check needs a CUDA GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    return torch.cuda.get_device_name(0)


def install(wheels: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", f"--find-links={wheels}", "-e", str(ROOT)], check=True)


def methods_one_epoch(peak: float | None) -> tuple[list[dict], list[str]]:
    """Every method x (Conv4, ResNet-20): one epoch of synthetic_cifar10 through `train`
    (bf16 autocast, channels_last); images/s as train measures it; fraction of peak from
    FlopCounterMode's count of one training step."""
    from hidden_core import make_config, train
    from hidden_core.config import METHODS, RunOptions

    rows, failures = [], []
    run = RunOptions(device="cuda", amp=True, channels_last=True)
    for model, depth in MODELS:
        for method in METHODS:
            label = f"{method} {model}{depth}"
            try:
                config = make_config(method=method, model=model, depth=depth, dataset="synthetic_cifar10", epochs=1, batch_size=256)
                result = train(config, run)
                flops = _flops_per_image(config)
                fraction = flops * result.samples_per_second / (peak * 1e12) if peak and flops else float("nan")
                rows.append({"method": method, "model": f"{model}{depth}", "images_s": result.samples_per_second,
                             "peak_fraction": fraction, "val_acc": result.val_acc, "status": result.status})
                if result.status != "completed":
                    failures.append(f"{label}: {result.status}")
            except Exception as err:  # noqa: BLE001 - the table reports it
                failures.append(f"{label}: {type(err).__name__}: {err}")
                rows.append({"method": method, "model": f"{model}{depth}", "images_s": float("nan"), "peak_fraction": float("nan"),
                             "val_acc": float("nan"), "status": "error"})
    return rows, failures


def _flops_per_image(config) -> float | None:
    """Training FLOPs per image (forward + backward) of one step, as benchmarks count them."""
    try:
        import torch

        from benchmarks.bench_methods import Step, flops_per_image

        fields = {"model": config.model, "depth": config.depth, "dataset": "cifar10"}
        step = Step(config.method, fields, batch=config.batch_size, device=torch.device("cuda"))
        return flops_per_image(step, config.batch_size)
    except Exception:  # noqa: BLE001 - a missing count leaves the fraction empty, not the run failed
        traceback.print_exc()
        return None


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    from benchmarks.bench_methods import PEAK_TFLOPS

    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


def bench(out_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.run_all", "--device", "cuda", "--quick", "--out", str(out_dir / "bench.md")]
    done = subprocess.run(cmd, cwd=ROOT)
    return [] if done.returncode == 0 else [f"make bench --device cuda --quick: exit {done.returncode}"]


def sweep(out_dir: Path) -> tuple[dict, list[str]]:
    """16 trials of 4 methods x 4 seeds, gpu 0.25 each: four share the GPU at once."""
    from hidden_core.spec import parse_spec
    from hidden_core.store import ResultStore
    from hidden_core.tune.progress import max_overlap
    from hidden_core.tune.runner import run_sweep

    spec = parse_spec({
        "name": "gpu_check",
        "base": {"dataset": "synthetic_cifar10", "model": "convnet", "depth": 4, "epochs": 2, "batch_size": 256},
        "grid": {"method": ["dense", "edge_popup", "supermask", "bn_only"], "seed": [0, 1, 2, 3]},
        "resources": {"cpu": 1, "gpu": 0.25},
    })
    assert spec.plan().total == SWEEP_TRIALS
    results = out_dir / "results"
    report = run_sweep(spec, results)
    frame = ResultStore(results).load_trials("gpu_check")
    spans = [(a.timestamp(), b.timestamp()) for a, b in zip(frame["started_at"], frame["finished_at"], strict=True)]
    summary = {"efficiency": report.efficiency, "concurrency": report.concurrency, "at_once": max_overlap(spans),
               "counts": report.counts, "wall_s": report.wall_seconds}
    failures = [] if report.counts.get("completed") == SWEEP_TRIALS else [f"sweep: {report.counts}"]
    return summary, failures


def table(gpu: str, peak: float | None, rows: list[dict], sweep_summary: dict | None, failures: list[str], seconds: float) -> str:
    lines = [f"gpu-check on {gpu} (bf16 peak {peak:g} TFLOP/s)" if peak else f"gpu-check on {gpu} (bf16 peak unknown: pass --peak-tflops)",
             f"{'method':<16} {'model':<9} {'images/s':>10} {'of peak':>8} {'val acc':>8}  status"]
    for r in rows:
        fraction = "" if not math.isfinite(r["peak_fraction"]) else f"{r['peak_fraction']:.1%}"
        images = "" if not math.isfinite(r["images_s"]) else f"{r['images_s']:.0f}"
        val = "" if not math.isfinite(r["val_acc"]) else f"{r['val_acc']:.3f}"
        lines.append(f"{r['method']:<16} {r['model']:<9} {images:>10} {fraction:>8} {val:>8}  {r['status']}")
    if sweep_summary:
        lines.append(f"sweep ({SWEEP_TRIALS} trials, gpu 0.25): efficiency {sweep_summary['efficiency']:.2f}, "
                     f"trials on the GPU at once {sweep_summary['at_once']} (concurrency {sweep_summary['concurrency']}), "
                     f"{sweep_summary['wall_s']:.0f}s, {sweep_summary['counts']}")
    lines.append(f"total {seconds:.0f}s; " + (f"{len(failures)} failure(s):" if failures else "no failures"))
    lines += [f"  FAILED {f}" for f in failures]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="?", help="wheel folder made by benchmarks/prepare_wheels.py")
    parser.add_argument("--skip-install", action="store_true", help="hidden-core and its dependencies are installed already")
    parser.add_argument("--skip-bench", action="store_true", help="leave out `make bench --device cuda --quick`")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: by device name)")
    parser.add_argument("--out", type=Path, help="folder for the bench file and the sweep's store (default: a temp folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        wheels = check_wheels(args.wheels, args.skip_install)
        if args.peak_tflops is not None and not args.peak_tflops > 0:
            raise UsageError(f"--peak-tflops: {args.peak_tflops} must be > 0")
        gpu = check_cuda()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if wheels is not None:
        install(wheels)
    sys.path.insert(0, str(ROOT))
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    peak = peak_tflops(gpu, args.peak_tflops)
    failures: list[str] = []
    rows, failed = methods_one_epoch(peak)
    failures += failed
    if not args.skip_bench:
        failures += bench(out_dir)
    summary = None
    try:
        summary, failed = sweep(out_dir)
        failures += failed
    except Exception as err:  # noqa: BLE001 - the table reports it
        traceback.print_exc()
        failures.append(f"sweep: {type(err).__name__}: {err}")
    text = table(gpu, peak, rows, summary, failures, time.perf_counter() - started)
    (out_dir / "gpu_check.json").write_text(json.dumps({"gpu": gpu, "peak": peak, "rows": rows, "sweep": summary, "failures": failures},
                                                       default=str, indent=1))
    print("\n" + text)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
