"""`make demo`'s sweep, trials per hour: this checkout against the first version, side by side.

    python -m benchmarks.bench_demo [--quick] [--baseline COMMIT]

The first version is commit 7f42f8f (main when the performance issue was filed, before any
of its changes). The bench checks it out into a temporary git worktree (`git worktree add
--detach`, removed afterwards) and runs the same sub-grid of sweeps/quickstart.yaml under
both codes, back to back, each as a fresh Python process with PYTHONPATH set to its tree
and its working directory there: `run_sweep(spec, results, num_cpus=cores)`, an embedded
Ray each time, a new temporary store each time. The figure is completed trials / wall
seconds of the whole process (imports, Ray start, data, Tune, store writes: what a user
waits for) x 3600, and the ratio new / first version, target 3x.

Grids: full = the whole quickstart grid (84 trials, 20 epochs), run old, new, new, old (the
rates are totals over both runs of a code, so drift in the machine's load hits both alike);
--quick = its 7 methods x widths 0.5, 2 x 2 seeds (28 trials), old then new. Whatever the
current code does by default is measured (vectorized seed cells, when they are the default).

Without git history (a CI tarball) or without the baseline commit the figure says
"skipped" instead of failing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import format_rows, info, row

BASELINE = "7f42f8f"
TARGET = 3.0
ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 3600

# The child: one sweep with the code on its PYTHONPATH; prints one JSON line.
CHILD = """
import json, sys, time
t0 = time.perf_counter()
from hidden_core.spec import load_spec
from hidden_core.tune.runner import run_sweep
report = run_sweep(load_spec(sys.argv[1]), sys.argv[2], progress=False, num_cpus=int(sys.argv[3]))
counts = report.counts
print("BENCH_DEMO " + json.dumps({
    "trials": len(report.trials), "completed": counts.get("completed", 0), "failed": counts.get("failed", 0),
    "wall_seconds": report.wall_seconds, "fit_seconds": report.fit_seconds, "train_seconds": report.train_seconds,
    "concurrency": report.concurrency, "in_process_seconds": time.perf_counter() - t0,
}))
"""


NOTES = """\
- This round cut the sweep's own overhead (bench_sweep: checkpoint writes per trial from
  0.18 s to 0.01-0.03 s, checkpoints every 30 s and not every epoch; dearest trials first), but
  the demo's wall is mostly training (new: 72.5 of 2 x 56.6 s of the Tune phase were
  training seconds in the quick run) plus fixed start-up (Ray, data, the actors' imports:
  about 35 s of 76 s), so trials per hour stay at about 1x the first version's: the 3x
  needs less training time per trial (vectorized seed cells) and less start-up.
- This code's training seconds on the same grid were 15% higher than the first version's
  in the quick run (72.5 s against 62.9 s), with the load of other jobs changing between
  the two runs (the full run alternates old, new, new, old to even that out).
"""


def sub_grid(quick: bool, tiny: bool) -> dict:
    """The quickstart spec with a smaller grid (quick, tiny), keeping only the keys every
    version of the spec format knows (name, description, base, grid, resources)."""
    import yaml

    spec = yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())
    out = {k: spec[k] for k in ("name", "description", "base", "grid", "resources") if k in spec}
    out["grid"] = dict(out["grid"])
    if tiny:
        out["base"] = {**out["base"], "epochs": 2}
        out["grid"].update(method=["dense", "edge_popup"], width=[0.25], seed=[0, 1])
    elif quick:
        out["grid"].update(width=[0.5, 2])
    return out


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def baseline_problem(commit: str) -> str | None:
    """Why the baseline cannot be checked out here, or None."""
    if shutil.which("git") is None:
        return "no git"
    if git("rev-parse", "--git-dir").returncode != 0:
        return "no git history"
    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return f"commit {commit} is not in this repository's history"
    return None


@contextlib.contextmanager
def baseline_tree(commit: str, folder: Path):
    tree = folder / "baseline"
    done = git("worktree", "add", "--detach", str(tree), commit)
    if done.returncode != 0:
        raise RuntimeError(f"git worktree add {commit}: {done.stderr.strip()}")
    try:
        yield tree
    finally:
        git("worktree", "remove", "--force", str(tree))
        git("worktree", "prune")


def run_child(tree: Path, spec_path: Path, folder: Path, cores: int) -> dict:
    """One sweep under the code in `tree`, in a fresh process; its report plus the wall
    seconds of the whole process."""
    results = Path(tempfile.mkdtemp(prefix="results-", dir=folder))
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir=folder))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    # PYTHONPATH: this tree's hidden_core; RAY_TMPDIR: a Ray that does not make its own temp
    # dir (the first version's) keeps its sessions in this run's folder, removed afterwards
    env.update(PYTHONPATH=str(tree), RAY_TMPDIR=str(ray_tmp))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(spec_path), str(results), str(cores)], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: its Ray goes with it
        out, _ = proc.communicate()
        raise RuntimeError(f"sweep under {tree} ran past {CHILD_TIMEOUT_S} s:\n{out[-3000:]}") from None
    wall = time.perf_counter() - started
    shutil.rmtree(results, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = [line for line in out.splitlines() if line.startswith("BENCH_DEMO ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"sweep under {tree} exited {proc.returncode}:\n{out[-3000:]}")
    report = json.loads(lines[-1].split(" ", 1)[1])
    report["process_seconds"] = wall
    return report


def run(quick: bool = False, tiny: bool = False, baseline: str = BASELINE) -> list[dict]:
    import yaml

    problem = baseline_problem(baseline)
    if problem is not None:
        return [info(f"demo: trials per hour vs the first version ({baseline})", f"skipped: {problem}")]
    cores = os.cpu_count() or 1
    spec = sub_grid(quick, tiny)
    order = ["old", "new"] if (quick or tiny) else ["old", "new", "new", "old"]
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        folder = Path(tmp)
        spec_path = folder / "demo.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        with baseline_tree(baseline, folder) as old_tree:
            for which in order:
                tree = old_tree if which == "old" else ROOT
                report = run_child(tree, spec_path, folder, cores)
                print(f"  {which}: {report['completed']} trials in {report['process_seconds']:.1f} s "
                      f"(run_sweep {report['wall_seconds']:.1f} s, Tune {report['fit_seconds']:.1f} s, "
                      f"training {report['train_seconds']:.1f} s)", flush=True)
                runs[which].append(report)

    def per_hour(which: str) -> float:
        return 3600.0 * sum(r["completed"] for r in runs[which]) / sum(r["process_seconds"] for r in runs[which])

    def seconds(which: str, key: str) -> str:
        return " / ".join(f"{r[key]:.1f}" for r in runs[which])

    old, new = per_hour("old"), per_hour("new")
    ratio = new / old
    trials = runs["new"][0]["trials"]
    grid = "tiny" if tiny else ("quick sub-grid" if quick else "whole grid")
    label = f"demo ({grid}: {trials} trials, {cores} cores)"
    rows = [
        info(f"{label}: first version ({baseline}) process wall, per run", seconds("old", "process_seconds"), "s"),
        info(f"{label}: this code, process wall, per run", seconds("new", "process_seconds"), "s"),
        info(f"{label}: first version training seconds, per run", seconds("old", "train_seconds"), "s"),
        info(f"{label}: this code training seconds, per run", seconds("new", "train_seconds"), "s"),
        info(f"{label}: this code Tune phase wall, per run", seconds("new", "fit_seconds"), "s"),
        info(f"{label}: first version, trials per hour", round(old), "trials/h"),
        info(f"{label}: this code, trials per hour", round(new), "trials/h"),
        row(f"{label}: trials per hour, this code / first version", round(ratio, 2), "x", f">= {TARGET:g}x", ratio >= TARGET),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default=BASELINE, help=f"the first version's commit (default {BASELINE})")
    args = parser.parse_args(argv)
    print(format_rows(run(quick=args.quick, tiny=args.tiny, baseline=args.baseline)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
