"""Every figure the analysis can write passes a reviewer's checks: rendered from synthetic
stores through the CLI (scaling on width, depth and keep fraction with its joint law and
gap plots, curves, lottery with and without edge_popup and dense, controls, subnet masks),
each figure is caught as it is saved and checked: text inside the canvas, legend entries
unique and off the panels, one colour per method across all figures, integer epoch ticks,
tick labels that do not collide, log axes labelled as such, captions naming only what is
drawn. Also: `subnet masks` tells cells that differ only in depth apart."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from synthetic_store import grid, write_synthetic_controls, write_synthetic_sweep
from test_analysis_lottery import lottery_trial

from hidden_core.cli import main as cli_main
from hidden_core.config import METHODS
from hidden_core.store import ResultStore

matplotlib.use("Agg")
# pyplot checks Figure.savefig when first imported: import it before the fixture wraps that method
import matplotlib.pyplot  # noqa: E402, F401

BRANCHES = ("ticket", "reinit", "random_prune", "supermask")  # lottery_ticket's lines in lottery.png
STYLE_WORDS = {"dashed": "--", "dotted": ":", "dash-dot": "-."}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{name: (Figure, caption or None)} for every figure the CLI writes on these stores."""
    root = tmp_path_factory.mktemp("figures")
    store = ResultStore(root / "store", compact_every=None)
    # widths 7.5, 10, 12.5 give params_active 7500, 10000, 12500 at depth 2: the colliding ticks
    write_synthetic_sweep(store, "s", grid(methods=("dense", "edge_popup", "sign_flip", "lottery_ticket", "random_features"),
                                           widths=(0.5, 1, 7.5, 10, 12.5), depths=(1, 2), keep_fractions=(0.3, 0.5), seeds=(0, 1)), epochs=4)
    write_synthetic_sweep(store, "c", grid(methods=("edge_popup", "sign_flip"), widths=(0.5, 1, 2, 4), seeds=(0, 1, 2)))
    write_synthetic_controls(store, "c")
    rng = np.random.default_rng(5)
    lt = [lottery_trial(seed, rng, i) for i, seed in enumerate((0, 1, 2))]
    store.write_trials("lt", [r for r, _ in lt], [{"trial_id": r["trial_id"], **e} for r, h in lt for e in h])
    write_synthetic_sweep(store, "ep", [{"method": m, "keep_fraction": k, "seed": s} for m, ks in (("edge_popup", (0.3, 0.5, 0.7)), ("dense", (0.5,)))
                                        for k in ks for s in (0, 1, 2)])
    saved: list[tuple[Figure, Path]] = []

    def record(self, path, *args, **kwargs):
        """Draw the figure on an Agg canvas once, for the checks, instead of encoding files
        (the same layout at another dpi: every check here is in the canvas's own pixels)."""
        saved.append((self, Path(path)))
        if Path(path).suffix == ".png":
            draw(self)
        Path(path).write_bytes(b"")

    out = root / "out"
    results = ["--results", str(store.root)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", record)
        for name, argv in {
            "width": ["analyze", "scaling", "s"], "depth": ["analyze", "scaling", "s", "--x", "depth"],
            "k": ["analyze", "scaling", "s", "--x", "keep_fraction", "--where", "width == 1"],
            "curves": ["analyze", "curves", "s"], "controls": ["analyze", "controls", "c"],
            "lottery": ["analyze", "lottery", "lt", "--with", "ep"], "lottery_alone": ["analyze", "lottery", "lt"],
        }.items():
            assert cli_main([*argv, "--out", str(out / name), *results]) == 0, name
        assert cli_main(["subnet", "masks", "--files", *mask_files(root / "subnets"), "--plot", str(out / "masks.png")]) == 0
    figures = {}
    for fig, path in saved:
        if path.suffix != ".png":
            continue
        name = f"{path.parent.name}/{path.stem}"
        figures[name] = (fig, caption_for(path))
    return figures


def mask_files(folder: Path) -> list[str]:
    """Untrained edge_popup files of two depths x two widths x two seeds (cells differing only
    in depth) and free_prune ones: enough series to need facets."""
    from hidden_core.config import make_config
    from hidden_core.methods import build_model
    from hidden_core.subnet.state import save_subnet

    paths = []
    for method, depth, width, seed in itertools.product(("edge_popup", "free_prune"), (1, 2), (0.25, 0.5), (0, 1)):
        extra = {"keep_fraction": 0.3} if method == "edge_popup" else {}
        config = make_config(method=method, dataset="digits", epochs=1, width=width, depth=depth, seed=seed, **extra)
        paths.append(str(save_subnet(folder / f"{config.trial_id}.safetensors", build_model(config), config)))
    return paths


def caption_for(png: Path) -> str | None:
    """The caption the written markdown puts under this figure (report.md, lottery.md,
    controls.md): the first paragraph after the image link."""
    for md in png.parent.glob("*.md"):
        parts = md.read_text().split(f"]({png.name})", 1)
        if len(parts) == 2:
            paragraphs = [p.strip() for p in parts[1].split("\n\n") if p.strip()]
            return paragraphs[0].strip("*") if paragraphs else None
    return None


_RENDERERS: dict[int, object] = {}


def draw(fig: Figure):
    """Draw once (layout done, text placed) and keep the renderer for every check."""
    if id(fig) not in _RENDERERS:
        FigureCanvasAgg(fig)
        fig.canvas.draw()
        _RENDERERS[id(fig)] = fig.canvas.get_renderer()
    return _RENDERERS[id(fig)]


def shown_ticklabels(ax, axis: str) -> list:
    """Tick labels drawn: non-empty, at a tick inside the view limits."""
    low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    labels = ax.get_xticklabels(which="both") if axis == "x" else ax.get_yticklabels(which="both")
    out = []
    for t in labels:
        position = t.get_position()[0 if axis == "x" else 1]
        if t.get_visible() and t.get_text().strip() and low - 1e-9 * abs(low) <= position <= high + 1e-9 * abs(high):
            out.append(t)
    return out


def legends(fig: Figure) -> list:
    return [lg for lg in [ax.get_legend() for ax in fig.axes] + list(fig.legends) if lg is not None]


def texts(fig: Figure) -> list:
    out = [t for t in fig.texts] + ([fig._suptitle] if fig._suptitle is not None else [])
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *shown_ticklabels(ax, "x"), *shown_ticklabels(ax, "y")]
    for lg in legends(fig):
        out += [*lg.get_texts(), lg.get_title()]
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def entries(fig: Figure) -> list[tuple[str, str, str]]:
    """(legend text, colour, line style) of each legend entry, from the artist it names; a
    panel's legend that leaves its method to the title ('edge_popup: ...') gets it back."""
    artists = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            artists.setdefault(line.get_label(), line)
        for container in ax.containers:
            if isinstance(container, ErrorbarContainer):
                artists.setdefault(container.get_label(), container.lines[0])
    out = []
    titles = {id(ax.get_legend()): ax.get_title() for ax in fig.axes if ax.get_legend() is not None}
    for lg in legends(fig):
        title = re.match(r"[a-z_]+", titles.get(id(lg), ""))
        for text, handle in zip(lg.get_texts(), lg.legend_handles, strict=True):
            label = text.get_text()
            head = re.match(r"[a-z_]+", label)
            if title and title.group() in METHODS and "=" in label and not (head and head.group() in METHODS):  # 'width=2 (n=3)'
                label = f"{title.group()}, {label}"
            artist = artists.get(text.get_text(), handle)
            color = artist.get_color() if hasattr(artist, "get_color") else artist.get_facecolor()
            color = to_hex(np.asarray(color).reshape(-1, 4)[0] if np.ndim(color) == 2 else color)
            style = artist.get_linestyle() if hasattr(artist, "get_linestyle") else "-"
            out.append((label, color, style if isinstance(style, str) else "-"))
    return out


def method_of(figure: str, label: str) -> str | None:
    head = re.match(r"[a-z_]+", label)
    if figure.startswith("lottery") and head and head.group() in BRANCHES:
        return "lottery_ticket"
    if head and head.group() in METHODS:
        return head.group()
    return "dense" if re.search(r"(?<![\w-])dense(?![\w-])", label) else None


@pytest.mark.slow  # seconds to a minute (a subprocess, a real training or a heavy import): not the unit loop
def test_every_kind_of_figure_is_rendered(rendered):
    names = set(rendered)
    for expected in ("width/accuracy_vs_width", "width/gap_vs_width", "width/accuracy_vs_params_active", "width/accuracy_vs_keep_fraction",
                     "depth/accuracy_vs_depth", "k/accuracy_vs_keep_fraction", "curves/curves_test_acc", "controls/controls",
                     "lottery/lottery", "lottery_alone/lottery", "out/masks"):
        assert expected in names, sorted(names)


def test_no_duplicate_plot_in_depth(rendered):
    """Figures that do not depend on x are written by the width analysis only."""
    depth = {n.split("/")[1] for n in rendered if n.startswith("depth/")}
    width = {n.split("/")[1] for n in rendered if n.startswith("width/")}
    assert not depth & width, depth & width


def test_text_lies_inside_the_canvas(rendered):
    for name, (fig, _) in rendered.items():
        renderer = draw(fig)
        canvas = fig.bbox
        for t in texts(fig):
            box = t.get_window_extent(renderer)
            assert box.x0 >= canvas.x0 - 1 and box.y0 >= canvas.y0 - 1 and box.x1 <= canvas.x1 + 1 and box.y1 <= canvas.y1 + 1, \
                f"{name}: {t.get_text()!r} is clipped ({box} outside {canvas})"


def test_legend_entries_are_unique_and_off_the_panels(rendered):
    for name, (fig, _) in rendered.items():
        renderer = draw(fig)
        for lg in legends(fig):
            labels = [t.get_text() for t in lg.get_texts()]
            assert len(labels) == len(set(labels)), f"{name}: repeated legend entries {[x for x in labels if labels.count(x) > 1]}"
            box = lg.get_window_extent(renderer)
            for ax in fig.axes:
                if ax.get_visible():
                    assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: the legend covers a panel"


def test_one_colour_per_method_across_every_figure(rendered):
    colours: dict[str, set[tuple[str, str]]] = {}
    for name, (fig, _) in rendered.items():
        draw(fig)
        for label, colour, _ in entries(fig):
            method = method_of(name, label)
            if method:
                colours.setdefault(method, set()).add((colour, f"{name}: {label}"))
    assert {"dense", "edge_popup", "sign_flip", "lottery_ticket", "random_features", "free_prune"} <= set(colours)
    for method, seen in colours.items():
        assert len({c for c, _ in seen}) == 1, f"{method} is drawn in several colours: {sorted(seen)}"
    firsts = {method: next(iter(seen))[0] for method, seen in colours.items()}
    assert len(set(firsts.values())) == len(firsts), f"two methods share a colour: {firsts}"


def test_method_colours_follow_the_registry_order():
    """The colour is the method's place in the catalog; config.METHODS (torch-free, what the
    figures read) lists the methods in the registry's order."""
    from hidden_core.analysis.plots import METHOD_PALETTE, method_color
    from hidden_core.catalog import CATALOG

    assert list(CATALOG) == list(METHODS)
    assert [method_color(m) for m in CATALOG] == list(METHOD_PALETTE[: len(METHODS)])
    assert method_color("dense") == "#000000"


def test_epoch_axes_have_integer_ticks(rendered):
    checked = 0
    for name, (fig, _) in rendered.items():
        draw(fig)
        for ax in fig.axes:
            if ax.get_visible() and ax.get_xlabel().startswith("epoch"):
                low, high = ax.get_xlim()
                ticks = [v for v in ax.get_xticks() if low <= v <= high]
                assert ticks and all(float(v).is_integer() for v in ticks), f"{name}: epoch ticks {ticks}"
                checked += 1
    assert checked


def test_tick_labels_do_not_collide(rendered):
    for name, (fig, _) in rendered.items():
        renderer = draw(fig)
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            for axis in ("x", "y"):
                boxes = [(t.get_window_extent(renderer), t.get_text()) for t in shown_ticklabels(ax, axis)]
                for (a, ta), (b, tb) in itertools.combinations(boxes, 2):
                    assert not a.overlaps(b), f"{name}: tick labels {ta!r} and {tb!r} collide"


def test_log_axes_say_so(rendered):
    logs = 0
    for name, (fig, _) in rendered.items():
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            for scale, label in ((ax.get_xscale(), ax.get_xlabel()), (ax.get_yscale(), ax.get_ylabel())):
                if scale == "log":
                    logs += 1
                    assert "log" in label.lower(), f"{name}: a log axis labelled {label!r}"
    assert logs


def test_error_bars_of_different_series_are_dodged(rendered):
    checked = 0
    for name, (fig, _) in rendered.items():
        for ax in fig.axes:
            series = [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.has_yerr]
            for a, b in itertools.combinations(series, 2):
                checked += 1
                xs = [np.round(np.asarray(c.lines[0].get_xdata(), float), 12) for c in (a, b)]
                shared = set(xs[0]) & set(xs[1])
                assert not shared, f"{name}: {a.get_label()!r} and {b.get_label()!r} have bars at the same x {sorted(shared)}"
    assert checked


def test_captions_name_only_drawn_series(rendered):
    checked = 0
    for name, (fig, caption) in rendered.items():
        if not caption:
            continue
        checked += 1
        draw(fig)
        drawn = entries(fig)
        # lottery.png's branch lines are lottery_ticket's: a caption may name the method
        labels = " | ".join([label for label, _, _ in drawn] + [m for label, _, _ in drawn if (m := method_of(name, label))])
        for series in (*METHODS, "reinit", "random_prune"):
            if re.search(rf"(?<![\w-]){series}(?![\w-])", caption):
                assert re.search(rf"(?<![\w-]){series}(?![\w-])", labels), f"{name}: the caption names {series!r}, which is not drawn ({labels})"
        for word, style in STYLE_WORDS.items():
            claims = re.findall(rf"(?<![\w-]){word}: ([\w]+)", caption, flags=re.I) + \
                [m for m, w in re.findall(r"([\w]+) \((dashed|dotted|dash-dot)\)", caption) if w == word]
            for what in claims:
                what = what.split("-")[0]
                styled = [label for label, _, s in drawn if s == style]
                assert styled, f"{name}: the caption says {word}: {what}, but nothing {word} is drawn"
                assert all(what in label for label in styled), f"{name}: the caption says {word}: {what}, but {word} lines are {styled}"
    assert checked >= 4


def test_subnet_masks_tells_cells_apart(tmp_path, capsys):
    """Cells that differ only in depth: a depth column and a cell_id in the table, CSV and
    JSON; rows sorted; each cell once in the plot's legend."""
    files = mask_files(tmp_path / "subnets")
    assert cli_main(["subnet", "masks", "--files", *files, "--format", "json", "--output", str(tmp_path / "m.csv"), "--plot", str(tmp_path / "m.png")]) == 0
    rows = pd.DataFrame(json.loads(capsys.readouterr().out))
    csv = pd.read_csv(tmp_path / "m.csv")
    for frame in (rows, csv):
        assert {"cell_id", "depth", "width", "method", "layer"} <= set(frame.columns)
        assert not frame.duplicated(["cell_id", "layer"]).any()
        identity = frame[["method", "depth", "width", "layer"]].astype(str)
        assert not identity.duplicated().any(), "two rows differ only in an unshown column"
    edge = rows[rows["method"] == "edge_popup"]
    assert edge["cell_id"].nunique() == 4 and sorted(edge["depth"].unique()) == [1, 2]
    keys = list(zip(rows["method"].map(METHODS.index), rows["depth"], rows["width"], strict=True))
    assert keys == sorted(keys), "rows sorted by method, then the cell's fields"
    assert list(rows.loc[rows["cell_id"] == rows["cell_id"].iloc[-1], "layer"])[-1] == "classifier", "layers in network order"
