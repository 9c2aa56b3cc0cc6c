"""Before | after montage of one figure of each kind, for issue 22's closing note."""
import sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.image as mpimg

before, after, out = map(Path, sys.argv[1:4])
out.mkdir(parents=True, exist_ok=True)
for kind in ("scaling", "gap", "controls", "masks", "lottery", "curves"):
    a, b = mpimg.imread(before / f"{kind}.png"), mpimg.imread(after / f"{kind}.png")
    h = max(a.shape[0] / a.shape[1], b.shape[0] / b.shape[1])
    fig, axes = plt.subplots(1, 2, figsize=(16, 8 * h + 0.6), dpi=90)
    for ax, img, title in zip(axes, (a, b), ("before: main at a0348be (2026-12-02, when issue 22 was filed)", "after: this stop's main")):
        ax.imshow(img); ax.set_axis_off(); ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out / f"{kind}.png", dpi=90)
    plt.close(fig)
    print(kind, (out / f"{kind}.png").stat().st_size)
