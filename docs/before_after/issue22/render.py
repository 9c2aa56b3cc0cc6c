"""Render one figure of each kind (scaling, gap, controls, masks, lottery, curves) from the
same synthetic store through the `hidden` CLI. Usage: PYTHONPATH=<tree> python render.py <tree> <out>"""
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

tree, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(tree / "tests"))
from synthetic_store import grid, write_synthetic_controls, write_synthetic_sweep  # noqa: E402
from test_analysis_lottery import lottery_trial  # noqa: E402

from hidden_core.cli import main  # noqa: E402
from hidden_core.store import ResultStore  # noqa: E402

out.mkdir(parents=True, exist_ok=True)
root = Path(tempfile.mkdtemp())
store = ResultStore(root, compact_every=None)
write_synthetic_sweep(store, "s", grid(methods=("dense", "edge_popup", "sign_flip", "lottery_ticket", "random_features"), widths=(0.25, 0.5, 1, 2, 4, 8), depths=(1, 2), seeds=(0, 1, 2)), epochs=4)
write_synthetic_sweep(store, "c", grid(methods=("edge_popup", "sign_flip"), widths=(0.5, 1, 2, 4), seeds=(0, 1, 2)))
write_synthetic_controls(store, "c")
rng = np.random.default_rng(5)
lt = [lottery_trial(seed, rng, i) for i, seed in enumerate((0, 1, 2))]
store.write_trials("lt", [r for r, _ in lt], [{"trial_id": r["trial_id"], **e} for r, h in lt for e in h])
write_synthetic_sweep(store, "ep", [{"method": m, "keep_fraction": k, "seed": s} for m, ks in (("edge_popup", (0.3, 0.5, 0.7)), ("dense", (0.5,))) for k in ks for s in (0, 1, 2)])
R = ["--results", str(root)]
work = root / "work"
assert main(["analyze", "scaling", "s", "--out", str(work / "scaling"), *R]) == 0
assert main(["analyze", "scaling", "s", "--x", "depth", "--out", str(work / "depth"), *R]) == 0
assert main(["analyze", "curves", "s", "--out", str(work / "curves"), *R]) == 0
assert main(["analyze", "controls", "c", "--out", str(work / "controls"), *R]) == 0
assert main(["analyze", "lottery", "lt", "--with", "ep", "--out", str(work / "lottery"), *R]) == 0

# masks: untrained edge_popup files (2 depths x 2 widths x 2 seeds) and sign_flip, written as a sweep would
from hidden_core.config import make_config  # noqa: E402
from hidden_core.methods import build_model  # noqa: E402
from hidden_core.subnet.state import save_subnet  # noqa: E402

files = []
for method in ("edge_popup", "sign_flip", "free_prune"):
    for depth in (1, 2):
        for width in (0.25, 0.5, 1.0):
            for seed in (0, 1):
                extra = {"keep_fraction": 0.3} if method == "edge_popup" else {}
                config = make_config(method=method, dataset="digits", epochs=1, width=width, depth=depth, seed=seed, **extra)
                files.append(str(save_subnet(root / "subnets" / f"{config.trial_id}.safetensors", build_model(config), config)))
assert main(["subnet", "masks", "--files", *files, "--plot", str(work / "masks.png"), "--output", str(out / "masks.csv")]) == 0

for name, source in (("scaling", "scaling/accuracy_vs_width.png"), ("gap", "scaling/gap_vs_width.png"), ("keep_fraction", "scaling/accuracy_vs_keep_fraction.png"),
                     ("joint", "scaling/accuracy_vs_params_active.png"), ("depth", "depth/accuracy_vs_depth.png"),
                     ("controls", "controls/controls.png"), ("masks", "masks.png"), ("lottery", "lottery/lottery.png"), ("curves", "curves/curves_test_acc.png")):
    if (work / source).exists():
        shutil.copy(work / source, out / f"{name}.png")
for md in ("scaling/report.md", "lottery/lottery.md", "controls/controls.md", "depth/report.md"):
    if (work / md).exists():
        shutil.copy(work / md, out / md.replace("/", "_"))
print(sorted(p.name for p in (work / "depth").iterdir()))
print(sorted(p.name for p in out.iterdir()))
shutil.rmtree(root)
