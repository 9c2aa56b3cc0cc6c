"""`make reproduce`: run the small reproduction sweeps (sweeps/repro/*.yaml; finished trials
are skipped by the sweep runner), then write REPRODUCTIONS.md and one figure per claim from
the results store.

    python -m hidden_core.reproduce [--results results/repro] [--report-only]

Every number in the report is read from the store: the published claim, the small spec that
tests it on MNIST-1D, the paper-scale spec, each cell's seeds and their values, and an
interval. This module imports neither torch nor Ray (the sweeps run in a subprocess)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hidden_core.spec import load_spec
from hidden_core.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
REPRO_DIR = ROOT / "sweeps" / "repro"
FIGURE_DIR = ROOT / "docs" / "reproductions"
REPORT = ROOT / "REPRODUCTIONS.md"
TIMINGS = "reproduce_timings.json"  # in the results folder: wall seconds of the runs that made each sweep's trials
METRIC = "test_acc_at_best_val"  # the one test metric: test accuracy at the best validation epoch
MNIST1D_TEST = 1000  # test signals of MNIST-1D: the n of each trial's test accuracy
Z95 = 1.959963984540054
CHANCE = 0.1


# ---- statistics ------------------------------------------------------------------------------
def wilson(correct: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95%). Its actual coverage stays within
    about a point of 95% for n >= 1000 and p in [0.05, 0.95] (Brown, Cai & DasGupta 2001,
    Statistical Science 16(2), figure 5)."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


@dataclass
class Cell:
    label: str
    values: list[float]  # METRIC per seed
    seeds: list[int]
    extra: dict[str, float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the accuracy pooled over the seeds' test predictions: it
        covers test-set sampling, not seed-to-seed variation (shown by the per-seed values)."""
        return wilson(sum(v * MNIST1D_TEST for v in self.values), MNIST1D_TEST * len(self.values))

    def row(self) -> str:
        lo, hi = self.interval()
        per_seed = ", ".join(f"s{s}: {100 * v:.1f}" for s, v in zip(self.seeds, self.values, strict=True))
        extra = "".join(f" | {v:.3f}" if not math.isnan(v) else " | -" for v in self.extra.values())
        return f"| {self.label} | {100 * self.mean:.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | {per_seed}{extra} |"


def cells(frame: pd.DataFrame, by: list[str], label: Callable[[pd.Series], str], extra: tuple[str, ...] = ()) -> list[Cell]:
    out = []
    for _, group in frame.sort_values([*by, "seed"]).groupby(by, sort=True, dropna=False):
        first = group.iloc[0]
        out.append(Cell(label(first), group[METRIC].tolist(), group["seed"].astype(int).tolist(), {e: float(group[e].mean()) for e in extra}))
    return out


def table(rows: list[Cell], extra_names: tuple[str, ...] = ()) -> str:
    head = "| cell | mean test % | 95% interval | per seed" + "".join(f" | {n}" for n in extra_names) + " |"
    rule = "|" + " --- |" * (4 + len(extra_names))
    return "\n".join([head, rule, *(c.row() for c in rows)])


# ---- the claims --------------------------------------------------------------------------------
@dataclass
class Claim:
    key: str
    title: str
    published: str
    sweeps: tuple[str, ...]  # small specs in sweeps/repro (without .yaml)
    paper_spec: str
    analyse: Callable[[dict[str, pd.DataFrame], Path], tuple[str, str]]  # -> (body, verdict)


def _figure(path: Path, draw: Callable[[object], None], xlabel: str, ylabel: str = "test accuracy at best val") -> None:
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot()
    draw(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _series(ax, frame: pd.DataFrame, x: str, label: str, style: str = "o-") -> None:
    ax.scatter(frame[x], frame[METRIC], s=12, alpha=0.5)
    means = frame.groupby(x)[METRIC].mean()
    ax.plot(means.index, means.values, style, label=label)


def analyse_width(data, fig_path):
    bodies, verdicts, panels = [], [], []
    for sweep, arch in (("repro_edge_popup_width", "MLP"), ("repro_edge_popup_width_conv", "1-D Conv2")):
        if sweep not in data:
            continue
        frame = data[sweep]
        rows = cells(frame, ["method", "width"], lambda r, arch=arch: f"{arch} {r['method']} width {r['width']:g}")
        ep, dense = frame[frame.method == "edge_popup"], frame[frame.method == "dense"]
        # a dense baseline that failed to train (at most twice chance) is no baseline: such
        # widths are left out of the verdict and named
        failed = [w for w in sorted(frame.width.unique()) if dense[dense.width == w][METRIC].mean() <= 2 * CHANCE]
        widths = [w for w in sorted(frame.width.unique()) if w not in failed]
        gaps = {w: dense[dense.width == w][METRIC].mean() - ep[ep.width == w][METRIC].mean() for w in widths}
        ratio = ep[ep.width == widths[-1]][METRIC].mean() / dense[dense.width == widths[-1]][METRIC].mean()
        shrinks = gaps[widths[-1]] < gaps[widths[0]]
        gap_text = ", ".join(f"width {w:g}: {100 * g:+.1f}" for w, g in gaps.items())
        verdicts.append(
            f"{arch}: {'reproduced' if shrinks and ratio >= 0.9 else 'not reproduced'}; the dense minus edge-popup gap (points) is {gap_text}, "
            f"and at width {widths[-1]:g} edge-popup reaches {100 * ratio:.0f}% of dense."
            + (f" Left out: width {', '.join(f'{w:g}' for w in failed)}, where the dense baseline did not train (at chance; its recipe, not the claim, failed there)." if failed else "")
        )
        bodies.append(table(rows))
        panels.append((arch, ep, dense))

    def draw(ax):
        for i, (arch, ep, dense) in enumerate(panels):
            _series(ax, ep, "width", f"{arch} edge_popup k=0.5", "o-" if i == 0 else "o-.")
            _series(ax, dense, "width", f"{arch} dense", "s--" if i == 0 else "s:")
        ax.set_xscale("log", base=2)

    _figure(fig_path, draw, "width multiplier")
    verdict = " ".join(verdicts) + " (Criterion: the gap shrinks from the narrowest to the widest network and the widest reaches >= 90% of dense.)"
    return "\n\n".join(bodies), verdict


def analyse_k(data, fig_path):
    frame = data["repro_edge_popup_k"]
    rows = cells(frame, ["keep_fraction"], lambda r: f"k = {r['keep_fraction']:g}", ("density",))
    means = frame.groupby("keep_fraction")[METRIC].mean()
    best = float(means.idxmax())
    ends = (means.iloc[0], means.iloc[-1])
    _figure(fig_path, lambda ax: _series(ax, frame, "keep_fraction", "edge_popup, MLP width 2"), "keep fraction k")
    hump = 0.3 <= best <= 0.7 and max(ends) < means.max()
    verdict = (
        f"{'Reproduced' if hump else 'Not reproduced'}: best mean at k = {best:g} ({100 * means.max():.1f}%), "
        f"{100 * ends[0]:.1f}% at k = {means.index[0]:g} and {100 * ends[1]:.1f}% at k = {means.index[-1]:g} "
        "(criterion: best k in [0.3, 0.7] and both ends lower)."
    )
    return table(rows, ("density",)), verdict


def analyse_bn(data, fig_path):
    frame = data["repro_bn_only"]
    dense = data.get("repro_bn_only_dense", pd.DataFrame())
    both = pd.concat([frame, dense], ignore_index=True)
    rows = cells(both, ["method", "depth", "width"], lambda r: f"{r['method']} ResNet-{int(r['depth'])} width {r['width']:g}", ("disabled_features",))

    def mean(d, w, m="bn_only"):
        sel = both[(both.method == m) & (both.depth == d) & (both.width == w)]
        return sel[METRIC].mean()

    depth_grows = mean(20, 1) > mean(8, 1)
    width_grows = mean(8, 4) > mean(8, 1)
    disabled = frame["disabled_features"].mean()
    dense_disabled = dense["disabled_features"].mean() if len(dense) else math.nan

    def draw(ax):
        deep = frame[frame.width == 1]
        _series(ax, deep, "depth", "bn_only, width 1 (x = depth)")
        wide = frame[frame.depth == 8].assign(depth=lambda f: 8 * f.width)
        _series(ax, wide, "depth", "bn_only, ResNet-8 (x = 8 x width)", "s--")

    _figure(fig_path, draw, "depth, or 8 x width")
    verdict = (
        f"Accuracy with depth: {'grows' if depth_grows else 'does not grow'} (ResNet-8 {100 * mean(8, 1):.1f}% -> ResNet-20 {100 * mean(20, 1):.1f}%); "
        f"with width: {'grows' if width_grows else 'does not grow'} (width 1 {100 * mean(8, 1):.1f}% -> width 4 {100 * mean(8, 4):.1f}%). "
        f"Disabled features (|gamma| < 0.01, docs/methods.md) average {100 * disabled:.1f}% over the BN-only trials, "
        f"against {100 * dense_disabled:.1f}% for dense training of ResNet-8 (published: about a third, after 160 epochs on CIFAR-10). "
        f"{'Reproduced' if depth_grows and width_grows and disabled >= 0.1 else 'Not (fully) reproduced'} at small scale "
        "(criterion: both grow and at least 10% of features disabled)."
    )
    return table(rows, ("disabled_features",)), verdict


def analyse_connectivity(data, fig_path):
    frame = data["repro_connectivity"]
    rows = cells(frame, ["method", "penalty"], lambda r: r["method"] + ("" if r["method"] == "dense" else f" penalty {r['penalty']:g}"), ("changed_fraction", "density"))
    dense = frame[frame.method == "dense"][METRIC].mean()
    lines, ok = [], []
    for method in ("free_prune", "sign_flip"):
        sel = frame[(frame.method == method) & (frame.penalty == -1.0)]
        changed, acc = sel["changed_fraction"].mean(), sel[METRIC].mean()
        ok.append(changed < 0.10 and acc >= 0.9 * dense)
        lines.append(f"{method} with penalty -1 changes {100 * changed:.1f}% of connections and reaches {100 * acc / dense:.0f}% of dense")

    def draw(ax):
        for (method, penalty), sel in frame[frame.method != "dense"].groupby(["method", "penalty"]):
            ax.scatter(sel["changed_fraction"], sel[METRIC], label=f"{method} penalty {penalty:g}")
        ax.axhline(dense, color="k", ls="--", label="dense")
        ax.axhline(0.9 * dense, color="k", ls=":", label="90% of dense")
        ax.axvline(0.1, color="grey", ls=":")

    _figure(fig_path, draw, "changed fraction (connections pruned or signs flipped)")
    verdict = f"{'Reproduced' if all(ok) else 'Not (fully) reproduced'}: " + "; ".join(lines) + " (criterion: < 10% changed and >= 90% of dense, for both)."
    return table(rows, ("changed_fraction", "density")), verdict


def analyse_fraction(data, fig_path):
    frame = data["repro_learn_fraction"].copy()
    frame.loc[frame.method == "dense", "keep_fraction"] = 1.0
    rows = cells(frame, ["keep_fraction"], lambda r: "dense (k = 1)" if r["method"] == "dense" else f"learn_fraction k = {r['keep_fraction']:g}")
    means = frame.groupby("keep_fraction")[METRIC].mean()
    dense = means.loc[1.0]
    _figure(fig_path, lambda ax: (_series(ax, frame, "keep_fraction", "learn_fraction (k = 1: dense)"), ax.set_xscale("log")), "fraction of weights learned")
    ratios = ", ".join(f"k = {k:g}: {100 * m / dense:.0f}%" for k, m in means.items() if k < 1)
    smallest_close = [k for k, m in means.items() if k < 1 and m >= 0.9 * dense]
    verdict = (
        f"Accuracy relative to dense: {ratios}. "
        + (f"Reproduced: learning {100 * min(smallest_close):g}% of the weights reaches >= 90% of dense." if smallest_close else "Not reproduced: no fraction up to 0.2 reaches 90% of dense.")
    )
    return table(rows), verdict


def analyse_supermask(data, fig_path):
    frame = data["repro_supermask"]
    rows = cells(frame, ["supermask_eval"], lambda r: f"supermask, {r['supermask_eval']} evaluation", ("density",))
    best = frame.groupby("supermask_eval")[METRIC].mean()

    def draw(ax):
        for i, (how, sel) in enumerate(frame.groupby("supermask_eval")):
            ax.scatter([i] * len(sel), sel[METRIC], label=how)
        ax.axhline(CHANCE, color="k", ls=":", label="chance")
        ax.set_xticks(range(len(best)), list(best.index))

    _figure(fig_path, draw, "evaluation mask")
    far = best.min() >= 3 * CHANCE
    verdict = (
        f"{'Reproduced' if far else 'Not reproduced'}: "
        + ", ".join(f"{how} {100 * m:.1f}%" for how, m in best.items())
        + f" against {100 * CHANCE:.0f}% chance (criterion: at least 3x chance)."
    )
    return table(rows, ("density",)), verdict


CLAIMS: tuple[Claim, ...] = (
    Claim("a", "edge-popup: wider random networks hide subnetworks that approach dense accuracy",
          "Ramanujan et al. 2020: as Conv4/Conv6 grow wider the best subnetwork closes the gap to the dense network (CIFAR-10); a randomly weighted Wide ResNet-50 hides a subnetwork matching a trained ResNet-34 on ImageNet (73.3% top-1, hidden-networks README)",
          ("repro_edge_popup_width", "repro_edge_popup_width_conv"), "sweeps/edge_popup_width.yaml", analyse_width),
    Claim("b", "edge-popup: accuracy is hump-shaped in k", "Ramanujan et al. 2020, Conv2..Conv8 figure: best k between 0.3 and 0.7 (about 77.5 / 86 / 88 / 88.5% for Conv2 / 4 / 6 / 8 on CIFAR-10)",
          ("repro_edge_popup_k",), "sweeps/edge_popup_conv.yaml", analyse_k),
    Claim("c", "BN-only: accuracy grows with depth and width; BatchNorm disables a sizeable fraction of features",
          "Frankle, Schwab & Morcos 2021: BN-only ResNet-866 reaches 82% on CIFAR-10; 'BatchNorm ... naturally learning to disable around a third of the random features'",
          ("repro_bn_only", "repro_bn_only_dense"), "sweeps/bn_only_resnet.yaml", analyse_bn),
    Claim("d", "Ivan & Florian: changing < 10% of connections reaches > 90% of dense accuracy",
          "Ivan & Florian 2020 (abstract): MinPruning / MinFlipping change fewer than 10% of the connections and reach more than 90% of the accuracy of standard training",
          ("repro_connectivity",), "sweeps/connectivity.yaml", analyse_connectivity),
    Claim("e", "Rosenfeld & Tsotsos: learning a small random fraction of the weights comes close to training all",
          "Rosenfeld & Tsotsos 2019: training a small random subset of the weights (a few percent) reaches accuracy close to full training",
          ("repro_learn_fraction",), "(none: none of the four reference repositories is Rosenfeld & Tsotsos'; the small spec is the only one)", analyse_fraction),
    Claim("f", "Zhou et al.: supermasks reach far above chance", "Zhou et al. 2019 (abstract): masks applied to untrained networks reach 86% on MNIST and 41% on CIFAR-10 (heuristic supermasks); learned supermasks (train_supermask.py) go higher",
          ("repro_supermask",), "sweeps/supermask_mnist.yaml", analyse_supermask),
)


# ---- running -------------------------------------------------------------------------------------
def run_sweeps(results: str, timings_path: Path) -> None:
    """Run each claim's sweeps one after another. A sweep's wall time is added to the timings
    when the run finished trials of the current spec (a rerun that skips everything adds
    nothing); a spec whose plan changed starts its count again."""
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    store = ResultStore(results)
    for claim in CLAIMS:
        for sweep in claim.sweeps:
            spec = REPRO_DIR / f"{sweep.removeprefix('repro_')}.yaml"
            planned = sorted(load_spec(spec).plan().by_id)
            before = _done(store, sweep, planned)
            if before == len(planned):  # every trial final: the runner would skip them all
                print(f"reproduce: {sweep}: all {before} trials already final in {results}", flush=True)
                continue
            started = time.monotonic()
            cmd = [sys.executable, "-m", "hidden_core.cli", "sweep", "run", str(spec), "--results", results, "--quiet"]
            print(f"reproduce: {' '.join(cmd[2:])}", flush=True)
            subprocess.run(cmd, check=True)
            seconds = time.monotonic() - started
            after = _done(store, sweep, planned)
            entry = timings.get(sweep, {})
            if entry.get("plan") != _plan_key(planned):
                entry = {"plan": _plan_key(planned), "seconds": 0.0}
            if after > before:
                entry["seconds"] = round(entry["seconds"] + seconds, 1)
            timings[sweep] = entry
            timings_path.write_text(json.dumps(timings, indent=1))


def _done(store: ResultStore, sweep: str, planned: list[str]) -> int:
    return len(store.final_trial_ids(sweep) & set(planned)) if sweep in store.sweeps() else 0


def _plan_key(planned: list[str]) -> str:
    return hashlib.sha256(",".join(planned).encode()).hexdigest()[:16]


def write_report(results: str, wall_seconds: float | None) -> str:
    store = ResultStore(results)
    known = set(store.sweeps())
    timings_path = Path(results) / TIMINGS
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    lines = [
        "# Reproductions",
        "",
        "Regenerated by `make reproduce` (python -m hidden_core.reproduce): it runs the small specs in",
        "`sweeps/repro/` (a sweep skips trials already final in the store) and rewrites this file and",
        "the figures in `docs/reproductions/` from the store. Every number is MNIST-1D (4000 training",
        "signals, 10% held out for validation, 1000 test signals), on this machine's CPUs.",
        "",
        f"Metric: `{METRIC}`, test accuracy at the epoch of best validation accuracy. Each cell lists",
        "every seed. The interval is a 95% Wilson score interval of the accuracy pooled over the seeds'",
        "test predictions (n = 1000 x seeds): it covers test-set sampling only (coverage within about a",
        "point of 95% at this n, Brown, Cai & DasGupta 2001), not seed-to-seed variation, which the",
        "per-seed values show. Methods and statistics: docs/methods.md.",
        "",
    ]
    total = 0.0
    for claim in CLAIMS:
        lines += [f"## ({claim.key}) {claim.title}", "", f"**Published.** {claim.published}", ""]
        specs = ", ".join(
            f"`sweeps/repro/{s.removeprefix('repro_')}.yaml` ({load_spec(REPRO_DIR / (s.removeprefix('repro_') + '.yaml')).description})" for s in claim.sweeps
        )
        paper = claim.paper_spec if claim.paper_spec.startswith("(") else f"`{claim.paper_spec}`"
        lines += [f"**Small spec.** {specs}. **Paper-scale spec.** {paper}.", ""]
        data = {s: _final(store, s) for s in claim.sweeps if s in known}
        data = {s: d for s, d in data.items() if not d.empty}
        missing = [s for s in claim.sweeps if s not in data]
        if not data or missing == [claim.sweeps[0]]:
            lines += [f"**Result.** Not run yet (no finished trials of {', '.join(missing)}).", ""]
            continue
        if missing:
            lines += [f"(Not run yet: {', '.join(missing)}; the result below is without it.)", ""]
        seconds = sum(float(d["train_seconds"].sum()) for d in data.values())
        wall = sum(timings.get(s, {}).get("seconds", math.nan) for s in claim.sweeps)
        total += seconds
        fig = FIGURE_DIR / f"claim_{claim.key}.png"
        body, verdict = claim.analyse(data, fig)
        trials = sum(len(d) for d in data.values())
        lines += [
            f"**Result.** {verdict}",
            "",
            body,
            "",
            f"{trials} trials, {seconds / 60:.1f} min of training in total; wall time of the sweep run(s) that made them: {_minutes(wall)}.",
            "",
            f"![claim {claim.key}](docs/reproductions/{fig.name})",
            "",
        ]
    lines += ["## Time", ""]
    lines.append(f"Training time summed over all trials: {total / 60:.1f} min (trials run two at a time on 2 shared cores).")
    if timings:
        lines.append(f"Wall time of the sweep runs that made the trials, one after another: {_minutes(sum(t['seconds'] for t in timings.values()))}.")
    if wall_seconds is not None:
        lines.append(f"This `make reproduce` invocation: {_minutes(wall_seconds)} (finished trials are skipped, so a rerun takes only the sweeps' start-up and the report).")
    text = "\n".join(lines) + "\n"
    return text


def _minutes(seconds: float) -> str:
    return "unknown" if seconds is None or math.isnan(seconds) else f"{seconds / 60:.1f} min"


def _final(store: ResultStore, sweep: str) -> pd.DataFrame:
    """The completed trials of the spec as it is now (trials of an older version of the spec
    stay in the store but are not reported)."""
    planned = set(load_spec(REPRO_DIR / f"{sweep.removeprefix('repro_')}.yaml").plan().by_id)
    frame = store.load_trials(sweep)
    return frame[(frame["status"] == "completed") & frame["trial_id"].isin(planned)].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hidden_core.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results/repro", help="results store of the reproduction sweeps (default results/repro)")
    parser.add_argument("--report-only", action="store_true", help="do not run the sweeps; only rewrite the report from the store")
    parser.add_argument("--out", default=str(REPORT), help="report file (default REPRODUCTIONS.md at the repository root)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if not args.report_only:
        Path(args.results).mkdir(parents=True, exist_ok=True)
        run_sweeps(args.results, Path(args.results) / TIMINGS)
    text = write_report(args.results, None if args.report_only else time.monotonic() - started)
    Path(args.out).write_text(text)
    print(f"reproduce: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
