"""The docs run: every YAML block and every `hidden` command line in README.md,
results/README.md and cluster/README.md is executed, so the docs cannot drift from the code.

- a YAML block that is a sweep spec goes through `hidden sweep run FILE --dry-run`;
- `hidden sweep run` lines run with --dry-run (with their --address: the dry run connects to
  nothing and leaves the resource check to the run that joins the cluster), `results`, `sweep status` and `analyze` lines on a tiny synthetic store named
  quickstart (object-store URLs replaced by it), `inspect` for real;
- `train` lines are parsed and their config validated exactly as `hidden train` does, without
  training (they name CUDA, CIFAR-10 and files of the reader's); `data download` with --help.
Each must exit 0 with no traceback.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from synthetic_store import grid, write_synthetic_controls, write_synthetic_sweep

from hidden_core.cli import build_parser
from hidden_core.cli import main as cli_main
from hidden_core.store import ResultStore

pytestmark = pytest.mark.slow  # every test here runs real commands or benchmarks (tens of seconds): not the unit loop

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "results" / "README.md", ROOT / "cluster" / "README.md"]


def blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, first line number, text) of every fenced block."""
    out, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1), number + 1, []
        elif line.startswith("```") and lang is not None:
            out.append((lang, start, "\n".join(lines)))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def commands(path: Path) -> list[tuple[str, list[str]]]:
    """`hidden ...` command lines of the shell blocks: (where, argv after `hidden`)."""
    out = []
    for lang, start, text in blocks(path):
        if lang not in ("bash", "sh", "console", ""):
            continue
        joined = re.sub(r"\\\n\s*", " ", text)
        for offset, line in enumerate(joined.splitlines()):
            if not re.match(r"\s*(\S*/)?hidden\s", line):  # not a command line (e.g. a folder tree with prose)
                continue
            words = shlex.split(line, comments=True)
            if words and re.fullmatch(r"(\S*/)?hidden", words[0]):
                out.append((f"{path.relative_to(ROOT)}:{start + offset}", words[1:]))
    return out


YAML_BLOCKS = [(f"{p.relative_to(ROOT)}:{start}", text) for p in DOCS for lang, start, text in blocks(p) if lang in ("yaml", "yml")]
COMMANDS = [c for p in DOCS for c in commands(p)]


def test_the_docs_have_commands_and_specs():
    assert len(COMMANDS) >= 15 and YAML_BLOCKS
    assert {argv[0] for _, argv in COMMANDS} >= {"train", "inspect", "data", "sweep", "results", "analyze"}


def spec_has_controls(sweep: str) -> bool:
    """Whether sweeps/<sweep>.yaml asks for the controls pass (`subnet_controls`)."""
    from hidden_core.spec import load_spec

    path = ROOT / "sweeps" / f"{sweep}.yaml"
    return path.is_file() and load_spec(path).subnet_controls is not None


# the docs' commands that read the controls a sweep's `subnet_controls` adds
CONTROL_COMMANDS = [(w, a) for w, a in COMMANDS if a[:2] == ["analyze", "controls"] or (a[0] == "results" and any(x.startswith("control_") for x in a))]


def test_the_controls_commands_name_a_sweep_that_has_controls():
    """`analyze controls quickstart` exited 2 after `make demo`: the demo spec had no
    subnet_controls. Every such command must name a sweep of sweeps/ whose spec has them."""
    assert CONTROL_COMMANDS
    for where, argv in CONTROL_COMMANDS:
        assert spec_has_controls(argv[2]), f"{where}: sweeps/{argv[2]}.yaml has no subnet_controls: hidden {' '.join(argv)}"


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("docs_results")
    store = ResultStore(root)
    write_synthetic_sweep(store, "quickstart", grid(methods=("dense", "edge_popup"), widths=(0.5, 1, 2), seeds=(0, 1)))
    if spec_has_controls("quickstart"):  # the store `make demo` leaves: controls only if its spec asks for them
        write_synthetic_controls(store, "quickstart")
    return root


@pytest.mark.parametrize(("where", "text"), YAML_BLOCKS, ids=[w for w, _ in YAML_BLOCKS])
def test_yaml_block_is_a_valid_spec(where, text, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    code = cli_main(["sweep", "run", str(spec), "--dry-run", "--results", str(tmp_path / "results")])
    captured = capsys.readouterr()
    assert code == 0, f"{where}: {captured.err}"
    assert "trials planned" in captured.out


def _on_tiny_store(argv: list[str], store: Path, tmp_path: Path) -> list[str]:
    argv = list(argv)
    if "--results" in argv:
        argv[argv.index("--results") + 1] = str(store)
    else:
        argv += ["--results", str(store)]
    if "--out" in argv:
        argv[argv.index("--out") + 1] = str(tmp_path / "out")
    return argv


@pytest.fixture(scope="module")
def subnet_store(tmp_path_factory) -> tuple[Path, Path]:
    """A store with a sweep 's' of two edge_popup trials and their (untrained) subnet files,
    and one of the files: what the README's `hidden subnet` lines name SWEEP and FILE."""
    from hidden_core.config import make_config
    from hidden_core.methods import build_model
    from hidden_core.paths import trial_subnet_path
    from hidden_core.subnet.state import save_subnet

    root = tmp_path_factory.mktemp("docs_subnets")
    store = ResultStore(root, compact_every=None)
    for seed, val in ((0, 0.5), (1, 0.7)):
        config = make_config(method="edge_popup", seed=seed, width=0.3)
        store.write_trial("s", {"trial_id": config.trial_id, "cell_id": "c", "status": "completed", "val_acc": val, "best_val_acc": val, "test_acc": val - 0.1, **config.model_dump()})
        path = save_subnet(trial_subnet_path(store.root, "s", config.trial_id), build_model(config), config)
    return root, path


def _subnet_argv(argv: list[str], root: Path, file: Path, tmp_path: Path) -> list[str]:
    argv = [str(file) if a.endswith(".safetensors") and argv[i - 1] not in ("-o", "--output") else a for i, a in enumerate(argv)]
    argv = [str(tmp_path / Path(a).name) if i and argv[i - 1] in ("-o", "--output", "--plot") else a for i, a in enumerate(argv)]
    argv = ["s" if a in ("SWEEP", "quickstart") else a for a in argv]  # the README's sweep names
    if argv[1] in ("export", "masks"):
        argv += ["--results", str(root)]
    if argv[1] == "masks":
        argv += ["--plot", str(tmp_path / "masks.png")]
    if argv[1] == "controls":
        argv += ["--draws", "2", "--output", str(tmp_path / "controls.csv")]
    return argv


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[f"{w} {' '.join(a[:2])}" for w, a in COMMANDS])
def test_command_line_runs(where, argv, tiny_store, tmp_path, capsys, monkeypatch, request):
    monkeypatch.chdir(ROOT)
    head = argv[:2]
    if head[0] == "train":
        from hidden_core.cli.train_cmd import configs_from_args

        args = build_parser().parse_args([a for a in argv if a != "--json"])
        if args.config:  # a file of the reader's: an empty one stands in
            (tmp_path / "trial.yaml").write_text("method: edge_popup\n")
            args.config = str(tmp_path / "trial.yaml")
        configs_from_args(args)
        return
    if head == ["data", "download"]:
        argv = [*head, "--help"]
    elif head == ["sweep", "run"]:
        argv = _on_tiny_store([a for a in argv if a != "--dry-run"] + ["--dry-run"], tmp_path / "empty_results", tmp_path)
    elif head[0] == "subnet":
        argv = _subnet_argv(argv, *request.getfixturevalue("subnet_store"), tmp_path)
    elif head == ["results", "delete"]:  # on a copy, confirmed: the other lines still need the sweep
        import shutil

        shutil.copytree(tiny_store, tmp_path / "copy")
        argv = _on_tiny_store([*argv, "--yes"], tmp_path / "copy", tmp_path)
    elif head[0] in ("results", "analyze") or head == ["sweep", "status"]:
        # --watch refreshes until every trial is final, which the tiny store never is; its loop
        # is tested in test_progress.py
        argv = _on_tiny_store([a for a in argv if a != "--watch"], tiny_store, tmp_path)
    try:
        code = cli_main(argv)
    except SystemExit as exit_:  # --help
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 0, f"{where}: hidden {' '.join(argv)}\n{captured.err}"
    assert "Traceback" not in captured.err
