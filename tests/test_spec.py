"""Sweep specs: validation (every problem by its path, nothing started), expansion,
normalization/dedupe, trial and cell identity, skipping what the store holds, dry run."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from hidden_core.cli import main as cli_main
from hidden_core.config import ConfigError, TrialConfig, make_config
from hidden_core.spec import cell_id, check_resources, load_spec, parse_spec
from hidden_core.store import ResultStore
from hidden_core.strict_yaml import load_yaml_text
from hidden_core.tune.planning import describe_todo, longest_first, plan_todo

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((Path(__file__).parent / "data" / "bad_specs").glob("*.yaml"))
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <error substring>'"
    return first[len("# expect: "):]


# ---- malformed specs ------------------------------------------------------------------------
def test_there_are_at_least_20_bad_specs():
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_gives_its_error(path: Path):
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    expected = _expected(path)
    assert any(expected in line for line in err.value.problems), f"expected {expected!r} in {err.value.problems}"


@pytest.mark.parametrize("path", BAD[:6], ids=[p.stem for p in BAD[:6]])
def test_bad_spec_cli_exits_2_and_writes_nothing(path: Path, tmp_path: Path, capsys):
    results = tmp_path / "results"
    assert cli_main(["sweep", "run", str(path), "--results", str(results)]) == 2
    assert _expected(path) in capsys.readouterr().err
    assert not results.exists()


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_spec({
            "name": "many", "bogus": 1,
            "base": {"lr": -1, "foo": 2},
            "grid": {"keep_fraction": [0.5, 2.0], "width": [], "method": ["dense", "nope"]},
            "search": {"weight_decay": {"type": "float", "low": 1.0, "high": 0.1}},
            "pruner": {"type": "median", "n_startup_trials": -1},
            "resources": {"gpu": -1},
        })
    text = "\n".join(err.value.problems)
    for part in ("bogus: unknown key", "base.lr: -1.0 is not in (0, 10000]", "base.foo: unknown key", "grid.keep_fraction[1]: 2.0 is not in (0, 1]",
                 "grid.width: empty list", "grid.method[1]: 'nope' is not allowed", "search.weight_decay: low 1.0 > high 0.1",
                 "pruner.n_startup_trials", "resources.gpu: -1.0 must be 0 or in [0.01, 64]"):
        assert part in text, f"{part!r} missing from:\n{text}"


def test_combination_errors_name_the_grid_value():
    with pytest.raises(ConfigError) as err:
        parse_spec({"name": "x", "grid": {"model": ["mlp", "convnet"], "depth": [2, 3]}})
    assert err.value.problems == ["grid.depth[1]: 3: convnet takes an even number of conv layers >= 2 (2, 4, 6, 8, ...)"]


def test_resources_the_cluster_cannot_hold():
    spec = parse_spec({"name": "x", "grid": {"width": [1]}, "resources": {"cpu": 4, "gpu": 1}})
    with pytest.raises(ConfigError) as err:
        check_resources(spec, [{"CPU": 2.0}, {"CPU": 2.0, "GPU": 0.0}])
    assert err.value.problems == [
        "resources.cpu: 4 CPUs per trial, but the largest node has 2; no trial could ever start (lower it, or add a node that has them)",
        "resources.gpu: 1 GPU per trial, but the largest node has 0; no trial could ever start (lower it, or add a node that has them)",
    ]
    check_resources(spec, [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}])  # one node fits: fine
    fractional = parse_spec({"name": "x", "grid": {"width": [1]}, "resources": {"cpu": 0.5, "gpu": 0.25}})
    check_resources(fractional, [{"CPU": 1.0, "GPU": 1.0}])


def test_run_sweep_refuses_impossible_resources_before_starting(tmp_path: Path):
    import ray

    from hidden_core.tune.runner import run_sweep

    ray_was_up = ray.is_initialized()
    spec = parse_spec({"name": "huge", "grid": {"width": [1]}, "resources": {"cpu": 1024}})
    with pytest.raises(ConfigError, match=r"resources\.cpu: 1024 CPUs per trial"):
        run_sweep(spec, tmp_path / "results", progress=False)
    assert not (tmp_path / "results").exists()
    assert ray.is_initialized() == ray_was_up  # no Ray started


# ---- one declaration per fact ----------------------------------------------------------------
def test_spec_keys_are_declared_once_in_sweepspec():
    """The scalar keys are checked (each error at its own path) by a model made of SweepSpec's
    own fields, so a key's type, default and bounds are written in one place."""
    from hidden_core.spec import SweepSpec
    from hidden_core.spec.validate import _SECTIONS, _Rest

    assert set(_Rest.model_fields) | _SECTIONS == set(SweepSpec.model_fields)
    assert not set(_Rest.model_fields) & _SECTIONS
    for name, field in _Rest.model_fields.items():
        own = SweepSpec.model_fields[name]
        assert (field.annotation, field.default, field.metadata) == (own.annotation, own.default, own.metadata), name
    # the bounds are SweepSpec's own (before, only the validator's copy had them)
    with pytest.raises(ValidationError, match="description"):
        SweepSpec.model_validate({"name": "x", "description": "d" * 10_001})
    with pytest.raises(ValidationError, match="study_storage"):
        SweepSpec.model_validate({"name": "x", "study_storage": "sqlite:///" + "d" * 2000})


def test_one_identity_hash():
    """trial_id and cell_id are hashed by one function (config.identity_hash); their values
    are pinned (a renamed trial or cell would orphan stored rows, checkpoints and studies)."""
    import ast

    from hidden_core.config import IDENTITY_VERSION, identity_hash

    config = make_config(width=1, seed=3, lr=0.01, method="edge_popup", keep_fraction=0.3)
    assert (config.trial_id, cell_id(config), cell_id(config, ["lr"])) == ("06fc5d4352b38ebc", "1abf3fc433d796da", "a9e35b9e165cdac7")
    assert config.trial_id == identity_hash({"identity_version": IDENTITY_VERSION, **config.canonical()})
    canonical = config.canonical()
    assert cell_id(config, ["lr"]) == identity_hash({k: v for k, v in canonical.items() if k not in ("seed", "lr")})
    for path in (ROOT / "hidden_core" / "spec").glob("*.py"):
        imported = {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import) for a in n.names}
        assert "hashlib" not in imported, f"{path.name} hashes on its own; use config.identity_hash"


def test_one_sweep_name_rule(tmp_path: Path):
    """A spec's name and a store's sweep argument are checked by one rule (paths.py), with
    one message (before, the store's said "not starting with '.' or '_'" while '-' and '='
    were refused too)."""
    from hidden_core.paths import SWEEP_NAME_RULE, is_sweep_name

    for bad in ("-starts-with-a-symbol", "=x", "../up", "a" * 101, "a b"):
        with pytest.raises(ConfigError) as spec_err:
            parse_spec({"name": bad, "grid": {"width": [1]}})
        with pytest.raises(ConfigError) as store_err:
            ResultStore(tmp_path).write_trial(bad, {"trial_id": "x", "status": "completed"})
        spec_line = next(line for line in spec_err.value.problems if line.startswith("name: "))
        assert spec_line.removeprefix("name: ") == store_err.value.problems[0].removeprefix("sweep: ")
        assert f"is not a valid sweep name ({SWEEP_NAME_RULE})" in spec_line and not is_sweep_name(bad)
    assert is_sweep_name("a" * 100) and is_sweep_name("lr=0.1_v2.b-c")


def test_spec_package_imports_no_torch_ray_optuna_or_tune():
    """A laptop validates and plans a spec with pydantic alone (the package's docstring)."""
    import subprocess
    import sys

    code = ("import sys; from hidden_core.spec import load_spec; load_spec('sweeps/quickstart.yaml').plan(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'optuna') or m.startswith('hidden_core.tune')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pruner_names_are_declared_once():
    from hidden_core.spec import PRUNERS, PrunerSpec
    from hidden_core.spec.model import PRUNER_ARGS

    assert PRUNERS == tuple(PRUNER_ARGS) == typing.get_args(PrunerSpec.model_fields["type"].annotation)
    assert "hyperband" in PRUNERS and PrunerSpec(type="hyperband").enabled


# ---- every spec of the repository ------------------------------------------------------------
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_repository_specs_validate(path: Path):
    spec = load_spec(path)
    plan = spec.plan()
    assert plan.total > 0
    assert spec.name == path.stem
    for trial in plan.trials:
        assert trial.config == trial.config.normalized()


def test_repository_has_the_issue_specs():
    names = {p.stem for p in SWEEPS}
    assert {"quickstart", "edge_popup_conv", "edge_popup_width", "bn_only_resnet", "connectivity"} <= names


def test_quickstart_covers_the_methods_widths_and_seeds():
    spec = load_spec(ROOT / "sweeps" / "quickstart.yaml")
    trials = spec.plan().trials
    assert {t.config.dataset for t in trials} == {"mnist1d"}
    assert {t.config.model for t in trials} == {"mlp"}
    assert {"dense", "edge_popup", "sign_flip", "free_prune", "learn_fraction", "random_features", "bn_only"} <= {t.config.method for t in trials}
    widths = {t.config.width for t in trials}
    assert min(widths) <= 0.25 and max(widths) >= 8
    assert len({t.config.seed for t in trials}) >= 2
    assert all(t.config.norm == "batchnorm" for t in trials if t.config.method == "bn_only")


# ---- expansion and identity ------------------------------------------------------------------
def test_grid_is_crossed_and_method_fields_collapse():
    spec = parse_spec({"name": "x", "base": {"epochs": 3}, "grid": {"method": ["dense", "edge_popup"], "keep_fraction": [0.3, 0.5], "seed": [0, 1]}})
    plan = spec.plan()
    assert plan.combinations == 8
    assert len(plan.trials) == 6  # dense ignores k: 2 seeds, not 4
    assert plan.duplicates == 2
    dense = [t for t in plan.trials if t.config.method == "dense"]
    assert len(dense) == 2 and {t.config.keep_fraction for t in dense} == {TrialConfig().keep_fraction}
    for t in plan.trials:
        assert t.trial_id == t.config.trial_id == make_config(t.config.model_dump()).trial_id


def test_trial_ids_are_stable_across_spellings():
    a = parse_spec({"name": "x", "grid": {"width": [0.5], "lr": [0.1]}}).plan().trials[0]
    b = parse_spec(load_yaml_text("name: y\nbase: {lr: 1e-1}\ngrid: {width: [0.50]}")).plan().trials[0]
    assert a.trial_id == b.trial_id


def test_cell_id_ignores_seed_and_searched_fields():
    spec = parse_spec({"name": "x", "grid": {"width": [1, 2], "seed": [0, 1]}})
    trials = spec.plan().trials
    cells = {}
    for t in trials:
        cells.setdefault(t.config.width, set()).add(t.cell_id)
    assert all(len(ids) == 1 for ids in cells.values())  # seeds share a cell
    assert cells[1.0] != cells[2.0]
    config = make_config(width=1, lr=0.3, seed=4)
    assert cell_id(config, ["lr"]) == cell_id(make_config(width=1, lr=0.01), ["lr"])
    assert cell_id(config) != cell_id(make_config(width=1, lr=0.01))


def test_mapping_values_set_companion_fields():
    spec = parse_spec({"name": "x", "grid": {"method": ["dense", {"method": "edge_popup", "optimizer": "adam", "lr": 0.003}], "width": [1, 2]}})
    by_method = {}
    for t in spec.plan().trials:
        by_method.setdefault(t.config.method, set()).add((t.config.optimizer, t.config.lr))
    assert by_method == {"dense": {("sgd", 0.1)}, "edge_popup": {("adam", 0.003)}}
    assert dict(spec.plan().trials[0].point)["method"] == "dense"


def test_seeds_of_a_cell_are_adjacent():
    spec = parse_spec({"name": "x", "grid": {"seed": [0, 1, 2], "width": [1, 2]}})
    widths = [t.config.width for t in spec.plan().trials]
    assert widths == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]


def test_bn_only_gets_batchnorm_automatically():
    spec = parse_spec({"name": "x", "grid": {"method": ["dense", "bn_only"]}})
    norms = {t.config.method: t.config.norm for t in spec.plan().trials}
    assert norms == {"dense": "none", "bn_only": "batchnorm"}


def test_search_points_and_unused_search_fields():
    spec = parse_spec({
        "name": "x", "grid": {"method": ["dense", "edge_popup"], "seed": [0, 1]},
        "search": {"keep_fraction": {"type": "float", "low": 0.1, "high": 0.9}}, "samples_per_cell": 3,
    })
    plan = spec.plan()
    # dense does not read keep_fraction: plain trials, one per seed; edge_popup: 3 samples per seed
    assert [t.config.method for t in plan.trials] == ["dense", "dense"]
    assert len(plan.points) == 2 and all(p.space == ("keep_fraction",) and p.samples == 3 for p in plan.points)
    assert plan.total == 2 + 6
    assert len({p.cell_id for p in plan.points}) == 1  # the two seeds share a cell (and its study)
    config = plan.points[0].config_for({"keep_fraction": 0.25})
    assert config.keep_fraction == 0.25 and config.method == "edge_popup"
    assert spec.search["keep_fraction"].distribution().low == 0.1


# ---- planning one validation per cell (spec.plan.expand's by_cell) ------------------------------
_BY_CELL_SPECS = [
    # methods (a mapping value among them) x weight distributions x widths x seeds (0 the default, a
    # repeated seed, a seed only the first cell has in common with none): duplicates by normalization
    {"name": "x", "base": {"epochs": 2},
     "grid": {"method": ["dense", {"method": "edge_popup", "optimizer": "adam", "lr": 0.003}, "sign_flip", "bn_only"],
              "weight_dist": ["kaiming_normal", "signed_constant"], "keep_fraction": [0.3, 0.5], "width": [0.5, 1],
              "seed": [3, 0, 7, 3]}},
    # a search: points of (cell, seed) for the methods that read the searched field, trials for the others
    {"name": "x", "grid": {"seed": [1, 0, 2], "method": ["dense", "edge_popup"], "model": ["mlp", "convnet"], "depth": [2, 4]},
     "search": {"keep_fraction": {"type": "float", "low": 0.1, "high": 0.9}}, "samples_per_cell": 2},
]


def _plan_facts(plan):
    return (plan.trials, [t.config.model_fields_set for t in plan.trials], plan.points, plan.axes, plan.combinations, plan.duplicates)


@pytest.mark.parametrize("spec", [*SWEEPS, *sorted((ROOT / "sweeps" / "repro").glob("*.yaml")), *_BY_CELL_SPECS],
                         ids=lambda s: s.stem if isinstance(s, Path) else "crossed")
def test_planning_by_cell_gives_the_plan_of_every_trial_validated(spec):
    """The plan validates one config per grid cell and copies it for the cell's other
    seeds: the same trials (configs, ids, cells, points), in the same order, as validating
    every combination's config."""
    from hidden_core.spec.plan import expand

    parsed = load_spec(spec) if isinstance(spec, Path) else parse_spec(spec)
    by_cell, problems = expand(parsed)
    each, each_problems = expand(parsed, by_cell=False)
    assert problems == each_problems == []
    assert _plan_facts(by_cell) == _plan_facts(each)
    assert [t.trial_id for t in by_cell.trials] == [t.config.trial_id for t in by_cell.trials]


def test_planning_validates_one_config_per_cell(monkeypatch):
    """`sweep status` and every run plan the whole sweep: 300 trials (100 seeds x 3 learning
    rates) validate the first cell's 100 seeds and one config for each other cell, not 300
    configs (most of a 5,000-trial status's own time before)."""
    from benchmarks.bench_scale import spec

    calls = [0]
    validate = TrialConfig.model_validate

    def counted(*args, **kwargs):
        calls[0] += 1
        return validate(*args, **kwargs)

    parsed = parse_spec(spec(300))  # its field checks validate a config per grid value; not counted below
    parsed._plan = None
    monkeypatch.setattr(TrialConfig, "model_validate", counted)
    assert parsed.plan().total == 300
    assert calls[0] == 100 + 2


def test_an_invalid_combination_is_reported_as_when_every_trial_is_validated():
    """A combination that fails validation in a later cell than the first: the problems, in
    their order, are those of validating every trial."""
    with pytest.raises(ConfigError) as err:
        parse_spec({"name": "x", "grid": {"model": ["mlp", "convnet"], "depth": [2, 3, 5], "seed": [0, 1, 2]}})
    assert err.value.problems == ["grid.depth[1]: 3: convnet takes an even number of conv layers >= 2 (2, 4, 6, 8, ...)",
                                  "grid.depth[2]: 5: convnet takes an even number of conv layers >= 2 (2, 4, 6, 8, ...)"]


def test_run_options_follow_resources():
    spec = parse_spec({"name": "x", "grid": {"width": [1]}, "resources": {"cpu": 2, "gpu": 0.5}, "run": {"amp": False}})
    run = spec.run_options()
    assert (run.device, run.threads, run.amp) == ("cuda", 2, False)
    assert parse_spec({"name": "x", "grid": {"width": [1]}, "resources": {"cpu": 0.5}}).run_options().threads == 1


def test_checkpoint_cadence_every_epoch_with_a_pruner_unless_the_spec_says():
    plain = {"name": "x", "grid": {"width": [1]}}
    assert parse_spec(plain).run_options().checkpoint_every_s == 30.0
    pruned = {**plain, "pruner": "median"}
    assert parse_spec(pruned).run_options().checkpoint_every_s == 0.0  # the pruned trial's subnet file: its last epoch
    assert parse_spec({**pruned, "run": {"checkpoint_every_s": 5.0}}).run_options().checkpoint_every_s == 5.0
    with pytest.raises(ConfigError, match="checkpoint_every_s"):
        parse_spec({**plain, "run": {"checkpoint_every_s": -1.0}})


def test_trials_start_dearest_first_with_a_cells_seeds_together(tmp_path: Path):
    spec = parse_spec({"name": "x", "base": {"dataset": "mnist1d", "model": "mlp"},
                       "grid": {"width": [1, 4], "epochs": [2, 8], "seed": [0, 1]}})
    order = [(t.config.width, t.config.epochs, t.config.seed) for t in longest_first(plan_todo(spec, ResultStore(tmp_path)).trials)]
    # 4x width is ~10x the parameters of 1x: 2 epochs of it cost more than 8 of the narrow
    # one; after the first wave (one slot: one cell), the probe (the cheapest cell) runs
    assert order == [(4.0, 8, 0), (4.0, 8, 1), (1.0, 2, 0), (1.0, 2, 1), (4.0, 2, 0), (4.0, 2, 1), (1.0, 8, 0), (1.0, 8, 1)]


def test_each_methods_cheapest_and_median_cells_run_after_the_first_wave(tmp_path: Path):
    """The ETA's probes (planning.longest_first): per method its cheapest cell, and with 5
    cells or more its median one, right after the first `slots` cells; the rest dearest first."""
    spec = parse_spec({"name": "x", "base": {"dataset": "mnist1d", "model": "mlp"},
                       "grid": {"method": ["dense", "edge_popup"], "width": [0.25, 0.5, 1, 2, 4]}})
    trials = longest_first(plan_todo(spec, ResultStore(tmp_path)).trials, slots=2)
    order = [(t.config.method, t.config.width) for t in trials]
    assert order[:2] == [("dense", 4.0), ("edge_popup", 4.0)]  # the first wave: the dearest, one per slot
    assert set(order[2:6]) == {("dense", 0.25), ("dense", 1.0), ("edge_popup", 0.25), ("edge_popup", 1.0)}
    assert order[6:] == [("dense", 2.0), ("edge_popup", 2.0), ("dense", 0.5), ("edge_popup", 0.5)]


# ---- skipping what the store holds -----------------------------------------------------------
def _row(trial, status: str) -> dict:
    return {"trial_id": trial.trial_id, "cell_id": trial.cell_id, "status": status, **trial.config.model_dump(), "step_milestones": []}


def test_final_trials_are_skipped_and_failed_ones_rerun(tmp_path: Path):
    store = ResultStore(tmp_path)
    spec = parse_spec({"name": "skip", "grid": {"width": [1, 2], "seed": [0, 1]}})
    trials = spec.plan().trials
    for trial, status in zip(trials, ["completed", "pruned", "diverged", "failed"], strict=True):
        store.write_trial("skip", _row(trial, status))
    todo = plan_todo(spec, store)
    assert [t.trial_id for t in todo.trials] == [trials[3].trial_id]
    assert todo.skipped == 3
    # a new grid value: only its trials are added
    grown = parse_spec({"name": "skip", "grid": {"width": [1, 2, 4], "seed": [0, 1]}})
    todo = plan_todo(grown, store)
    assert {t.config.width for t in todo.trials} == {2.0, 4.0} and len(todo.trials) == 3


def test_search_points_count_their_finished_samples(tmp_path: Path):
    store = ResultStore(tmp_path)
    spec = parse_spec({"name": "srch", "grid": {"width": [1, 2]}, "search": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}, "samples_per_cell": 3})
    point = spec.plan().points[0]
    for lr, status in ((0.01, "completed"), (0.02, "pruned"), (0.03, "failed")):
        config = point.config_for({"lr": lr})
        store.write_trial("srch", {"trial_id": config.trial_id, "cell_id": point.cell_id, "status": status, **config.model_dump(), "step_milestones": []})
    todo = plan_todo(spec, store)
    remaining = {p.template.width: n for p, n in todo.points}
    assert remaining == {1.0: 1, 2.0: 3}
    assert todo.skipped == 2


def test_dry_run_prints_axes_and_trials(tmp_path: Path, capsys):
    path = tmp_path / "dry.yaml"
    path.write_text("name: dry\ngrid:\n  method: [dense, edge_popup]\n  keep_fraction: [0.3, 0.5]\n  width: [1, 2]\n")
    results = tmp_path / "results"
    assert cli_main(["sweep", "run", str(path), "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "sweep dry: 6 trials planned (8 grid combinations, 2 collapsed by normalization)" in out
    assert re.search(r"method\s+2 values: dense, edge_popup", out)
    assert re.search(r"keep_fraction\s+2 values: 0.3, 0.5", out)
    assert "skipped (already final in the store): 0" in out and "would run: 6" in out
    assert len(re.findall(r"^\s+[0-9a-f]{16}\s+method=", out, flags=re.M)) == 6
    assert not results.exists()
    # with some results in the store, the dry run counts them as skipped
    spec = load_spec(path)
    store = ResultStore(results)
    store.write_trial("dry", _row(spec.plan().trials[0], "completed"))
    lines = describe_todo(spec, plan_todo(spec, store))
    assert "  skipped (already final in the store): 1" in lines and "  would run: 5" in lines


def test_dry_run_shows_every_field_that_differs_from_its_default(tmp_path: Path):
    path = tmp_path / "nd.yaml"
    path.write_text("name: nd\nbase: {optimizer: adam, lr: 0.01, epochs: 7}\ngrid:\n  method: [dense, edge_popup]\n  seed: [0]\n")
    spec = load_spec(path)
    lines = describe_todo(spec, plan_todo(spec, ResultStore(tmp_path / "results")))
    trial_lines = [line for line in lines if re.match(r"^\s+[0-9a-f]{16}\s", line)]
    assert len(trial_lines) == 2
    for line in trial_lines:
        axes, _, others = line.partition(" | ")
        assert "seed=0" in axes
        # the base's values are shown; a field left at its default (batch_size, momentum) is not
        assert {"optimizer=adam", "lr=0.01", "epochs=7"} <= set(others.split())
        assert "batch_size=" not in others and "momentum=" not in others
    edge = next(line for line in trial_lines if "method=edge_popup" in line)
    assert "keep_fraction" not in edge  # 0.5 is the default k: not listed, and the header says so
    assert any("runs at its default" in line for line in lines)


def test_status_reads_the_store_alone(tmp_path: Path, capsys):
    path = tmp_path / "st.yaml"
    path.write_text("name: st\ngrid:\n  method: [dense, edge_popup]\n  width: [1, 2]\n")
    spec = load_spec(path)
    store = ResultStore(tmp_path / "results")
    for i, trial in enumerate(spec.plan().trials[:3]):
        row = _row(trial, "completed" if i < 2 else "failed")
        row.update(best_val_acc=0.5 + i / 10, test_acc_at_best_val=0.4 + i / 10, train_seconds=1.0, error="ValueError: boom" if i == 2 else None)
        store.write_trial("st", row)
    assert cli_main(["sweep", "status", str(path), "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "sweep st: 4 trials planned = 2 final (completed 2, pruned 0, diverged 0) + 2 still to run (1 of them failed before)" in out
    assert "failed " in out and "ValueError: boom" in out
    assert "w=1" in out
