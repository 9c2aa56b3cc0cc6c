"""The hostile-input corpus: malformed sweep specs, each with the class of failure it once
caused (or would cause) and the path its error message must name.

Generated rather than stored so that it covers every field: for each TrialConfig and
RunOptions field, values of the wrong type, outside its bounds and not finite; for each of
the spec's own keys the same; plus hand-written files for the YAML-level attacks (alias
bombs, deep nesting, duplicate keys, encodings, sizes) and the expansion caps. Used by
tests/test_hostile_inputs.py and benchmarks/bench_hostile_inputs.py.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass

from hidden_core.config import BOUNDS, RunOptions, TrialConfig
from hidden_core.strict_yaml import MAX_BYTES, MAX_DEPTH

# Classes, as the issue grouped what went wrong before
YAML = "yaml structure (aliases, nesting, duplicates)"
FILE = "file (size, encoding, binary)"
EXPANSION = "expansion (planned trials above the cap)"
COERCION = "type coercion (bool/text/float where a number/int/bool is due)"
NONFINITE = "non-finite float (nan, inf)"
BOUND = "numeric bound (too small, too large, beyond 64 bits)"
NAME = "names (sweep name, unknown keys, unknown choices)"
STRUCTURE = "structure (wrong section types, search/grid/pruner rules)"
RUNTIME = "runtime settings (storage URL, resources, run options)"


@dataclass(frozen=True)
class Hostile:
    id: str
    kind: str
    text: str | bytes
    expect: str  # the path (and words) the error message must contain


def _spec(body: str, name: str = "hostile") -> str:
    return f"name: {name}\n{body}\n"


def _yaml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return ".nan"
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        return repr(v)
    if isinstance(v, str):
        return f"'{v}'"
    return str(v)


def _kinds(model: type, name: str) -> set[type]:
    annotation = model.model_fields[name].annotation
    return {a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)}


def _field_cases() -> list[Hostile]:
    """Every trial field gets wrong-typed and out-of-bound values, in base and in grid."""
    out: list[Hostile] = []
    for name in TrialConfig.model_fields:
        kinds = _kinds(TrialConfig, name)
        bad: list[tuple[str, object, str]] = []
        if float in kinds or int in kinds:
            bad += [(COERCION, True, "true/false")]
            if name not in ("step_milestones", "mlp_layer_units"):  # the fields that take text: "80,120"
                bad.append((COERCION, "7", "is text"))
        if int in kinds and float not in kinds:
            bad.append((COERCION, 1.0, "is a float, not a whole number"))
        if float in kinds:
            bad += [(NONFINITE, math.nan, "not a finite number"), (NONFINITE, math.inf, "not a finite number")]
        if bool in kinds:
            bad.append((COERCION, 1, "not true or false"))
        if str in kinds or not kinds & {int, float, bool}:
            bad.append((NAME, 12, ""))
        if name in BOUNDS and name not in ("step_milestones", "mlp_layer_units"):
            bound = BOUNDS[name]
            below = bound.low - 1 if int in kinds and float not in kinds else (bound.low - 1e-9 if not bound.low_open else bound.low)
            above = bound.high + (0 if bound.high_open else 1) if int in kinds and float not in kinds else (bound.high * 2 + 1)
            bad += [(BOUND, below, "is not in"), (BOUND, above, "is not in")]
        for i, (kind, value, _words) in enumerate(bad):
            where = ("base", f"base:\n  {name}: {_yaml_value(value)}", f"base.{name}") if i % 2 == 0 else \
                    ("grid", f"grid:\n  {name}: [{_yaml_value(value)}]", f"grid.{name}[0]")
            out.append(Hostile(f"{where[0]}.{name}-{i}", kind, _spec(where[1]), f"{where[2]}: "))
    return out


def _run_cases() -> list[Hostile]:
    out = []
    for name in RunOptions.model_fields:
        if name in ("device", "checkpoint_dir", "threads"):
            out.append(Hostile(f"run.{name}-runner-set", RUNTIME, _spec(f"run: {{{name}: 'x'}}"), f"run.{name}: set by the sweep runner"))
            continue
        kinds = _kinds(RunOptions, name)
        value = "'yes'" if bool in kinds else "true" if kinds & {int, float} else "12"
        out.append(Hostile(f"run.{name}-type", COERCION, _spec(f"run: {{{name}: {value}}}"), f"run.{name}: "))
    out.append(Hostile("run.eval_batch_size-zero", BOUND, _spec("run: {eval_batch_size: 0}"), "run.eval_batch_size: 0 is not in [1, 1048576]"))
    return out


def _spec_key_cases() -> list[Hostile]:
    grid = "grid: {width: [1]}\n"
    search = "search: {lr: {type: float, low: 0.001, high: 0.1}}\n"
    cases = [
        ("name-missing", NAME, "grid: {width: [1]}\n", "name: missing"),
        ("name-newline", NAME, 'name: "evil\\n"\n' + grid, "name: 'evil\\n' is not a valid sweep name"),
        ("name-slash", NAME, "name: ../up\n" + grid, "name: '../up' is not a valid sweep name"),
        ("name-long", NAME, f"name: {'a' * 5000}\n" + grid, "name: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... (5,002 characters)"),
        ("name-number", NAME, "name: 12\n" + grid, "name: 12 is not a valid sweep name"),
        ("top-unknown", NAME, _spec("optimiser: adam\n" + grid), "optimiser: unknown key"),
        ("base-not-mapping", STRUCTURE, _spec("base: [1, 2]"), "base: must be a mapping"),
        ("grid-not-mapping", STRUCTURE, _spec("grid: 3"), "grid: must be a mapping"),
        ("grid-scalar", STRUCTURE, _spec("grid: {width: 2}"), "grid.width: must be a list"),
        ("grid-empty", STRUCTURE, _spec("grid: {width: []}"), "grid.width: empty list"),
        ("grid-nested-list", STRUCTURE, _spec("grid: {width: [[1, 2]]}"), "grid.width[0]: a list inside a grid list"),
        ("grid-typo", NAME, _spec("grid: {widht: [1]}"), "grid.widht: unknown key (did you mean 'width'?)"),
        ("grid-method-typo", NAME, _spec("grid: {method: [edge_pop]}"), "grid.method[0]: 'edge_pop' is not allowed"),
        ("grid-mapping-no-axis", STRUCTURE, _spec("grid: {method: [{lr: 0.1}]}"), "grid.method[0]: a mapping value must set its axis"),
        ("grid-companion-bad", BOUND, _spec("grid: {method: [{method: dense, lr: -1}]}"), "grid.method[0].lr: -1.0 is not in (0, 10000]"),
        ("grid-step-milestones-text", COERCION, _spec("grid: {step_milestones: ['a,b']}"), "step_milestones"),
        ("grid-int-key", STRUCTURE, _spec("grid: {1: [1]}"), "grid.1: keys must be field names"),
        ("search-not-mapping", STRUCTURE, _spec("search: {lr: 0.1}"), "search.lr: must be a mapping"),
        ("search-unknown-type", NAME, _spec("search: {lr: {type: floaty, low: 0.1, high: 1}}"), "search.lr.type: 'floaty' is not allowed"),
        ("search-type-list", STRUCTURE, _spec("search: {lr: {type: [float], low: 0.1, high: 1}}"), "search.lr.type: ['float'] is not allowed"),
        ("search-high-inf", NONFINITE, _spec("search: {lr: {type: float, low: 0.001, high: .inf}}"), "search.lr.high: inf is not a finite number"),
        ("search-low-nan", NONFINITE, _spec("search: {lr: {type: float, low: .nan, high: 0.1}}"), "search.lr.low: nan is not a finite number"),
        ("search-high-above-bound", BOUND, _spec("search: {lr: {type: float, low: 0.001, high: 1.0e9}}"), "search.lr.high: 1000000000.0 is not in (0, 10000]"),
        ("search-low-gt-high", STRUCTURE, _spec("search: {lr: {type: float, low: 0.1, high: 0.01}}"), "search.lr: low 0.1 > high 0.01"),
        ("search-int-float-bound", COERCION, _spec("search: {epochs: {type: int, low: 1.5, high: 3}}"), "search.epochs.low: 1.5 is a float, not a whole number"),
        ("search-bool-bound", COERCION, _spec("search: {lr: {type: float, low: true, high: 0.1}}"), "search.lr.low: True is true/false, not a number"),
        ("search-seed", STRUCTURE, _spec("search: {seed: {type: int, low: 0, high: 9}}"), "search.seed: seeds are replicates"),
        ("search-step-zero", BOUND, _spec("search: {epochs: {type: int, low: 1, high: 9, step: 0}}"), "search.epochs.step: 0: input should be greater than or equal to 1"),
        ("search-categorical-nan", NONFINITE, _spec("search: {lr: {type: categorical, choices: [0.1, .nan]}}"), "search.lr.choices"),
        ("search-categorical-empty", STRUCTURE, _spec("search: {lr: {type: categorical, choices: []}}"), "search.lr.choices: empty list"),
        ("search-in-grid-too", STRUCTURE, _spec("grid: {lr: [0.1]}\nsearch: {lr: {type: float, low: 0.01, high: 0.1}}"), "search.lr: also a grid axis"),
        ("samples-without-search", STRUCTURE, _spec(grid + "samples_per_cell: 3"), "samples_per_cell: only means something with a `search` section"),
        ("samples-bool", COERCION, _spec(search + "samples_per_cell: true"), "samples_per_cell: True is true/false, not a whole number"),
        ("samples-zero", BOUND, _spec(search + "samples_per_cell: 0"), "samples_per_cell: 0: input should be greater than or equal to 1"),
        ("sampler-typo", NAME, _spec(grid + "sampler: tpee"), "sampler: 'tpee' is not allowed"),
        ("seed-huge", BOUND, _spec(grid + "seed: 99999999999999999999999"), "seed: 99999999999999999999999: input should be less than 9223372036854775808"),
        ("seed-negative", BOUND, _spec(grid + "seed: -1"), "seed: -1: input should be greater than or equal to 0"),
        ("seed-text", COERCION, _spec(grid + "seed: '7'"), "seed: '7' is text, not a whole number"),
        ("pruner-typo", NAME, _spec(grid + "pruner: medain"), "pruner.type: 'medain' is not allowed"),
        ("pruner-type-list", STRUCTURE, _spec(grid + "pruner: {type: [median]}"), "pruner.type: ['median'] is not allowed"),
        ("pruner-nested-args", STRUCTURE, _spec(grid + "pruner: {type: median, args: {n_startup_trials: 3}}"), "pruner.args: give the pruner's arguments next to its type"),
        ("pruner-none-with-args", STRUCTURE, _spec(grid + "pruner: {type: none, n_startup_trials: 3}"), "pruner.n_startup_trials: pruner 'none' takes no arguments"),
        ("pruner-arg-bool", COERCION, _spec(grid + "pruner: {type: median, n_startup_trials: true}"), "pruner.n_startup_trials: True is true/false"),
        ("pruner-arg-huge", BOUND, _spec(grid + "pruner: {type: median, n_warmup_steps: 99999999999}"), "pruner.n_warmup_steps: 99999999999: input should be less than or equal to 100000"),
        ("pruner-percentile-nan", NONFINITE, _spec(grid + "pruner: {type: percentile, percentile: .nan}"), "pruner.percentile: nan is not a finite number"),
        ("pruner-not-mapping", STRUCTURE, _spec(grid + "pruner: [median]"), "pruner: must be a name"),
        ("storage-bogus", RUNTIME, _spec(grid + "study_storage: 'bogus://nowhere'"), "study_storage: 'bogus://nowhere' is not a usable database URL"),
        ("storage-not-url", RUNTIME, _spec(grid + "study_storage: 'just text'"), "study_storage: 'just text' is not a database URL"),
        ("storage-number", COERCION, _spec(grid + "study_storage: 5"), "study_storage: 5 is a whole number, not text"),
        ("cpu-tiny", RUNTIME, _spec(grid + "resources: {cpu: 1.0e-320}"), "resources.cpu: 1e-320 is not in [0.01, 1024]"),
        ("cpu-small", RUNTIME, _spec(grid + "resources: {cpu: 0.00001}"), "resources.cpu: 1e-05 is not in [0.01, 1024]"),
        ("cpu-huge", RUNTIME, _spec(grid + "resources: {cpu: 1.0e9}"), "resources.cpu: 1000000000.0 is not in [0.01, 1024]"),
        ("cpu-inf", NONFINITE, _spec(grid + "resources: {cpu: .inf}"), "resources.cpu: inf is not a finite number"),
        ("cpu-text", COERCION, _spec(grid + "resources: {cpu: '2'}"), "resources.cpu: '2' is text, not a number"),
        ("cpu-fraction-above-one", RUNTIME, _spec(grid + "resources: {cpu: 1.5}"), "resources.cpu: 1.5: more than one CPU must be a whole number"),
        ("gpu-negative", RUNTIME, _spec(grid + "resources: {gpu: -1}"), "resources.gpu: -1.0 must be 0 or in [0.01, 64]"),
        ("gpu-tiny", RUNTIME, _spec(grid + "resources: {gpu: 0.0001}"), "resources.gpu: 0.0001 must be 0 or in [0.01, 64]"),
        ("resources-typo", NAME, _spec(grid + "resources: {cpus: 2}"), "resources.cpus: unknown key (did you mean 'cpu'?)"),
        ("max-concurrent-zero", BOUND, _spec(grid + "max_concurrent: 0"), "max_concurrent: 0: input should be greater than or equal to 1"),
        ("max-concurrent-float", COERCION, _spec(grid + "max_concurrent: 2.0"), "max_concurrent: 2.0 is a float, not a whole number"),
        ("max-failures-huge", BOUND, _spec(grid + "max_failures: 1000000"), "max_failures: 1000000: input should be less than or equal to 100"),
        ("report-every-nan", NONFINITE, _spec(grid + "report_every_s: .nan"), "report_every_s: nan is not a finite number"),
        ("report-every-negative", BOUND, _spec(grid + "report_every_s: -1"), "report_every_s: -1: input should be greater than or equal to 0"),
        ("max-trials-zero", BOUND, _spec(grid + "max_trials: 0"), "max_trials: 0: input should be greater than or equal to 1"),
        ("max-trials-huge", BOUND, _spec(grid + "max_trials: 100000000000"), "max_trials: 100000000000: input should be less than or equal to 10000000"),
        ("description-number", COERCION, _spec(grid + "description: 3"), "description: 3 is a whole number, not text"),
        ("spec-a-list", STRUCTURE, "- name: x\n", "spec: must be a mapping"),
        ("spec-empty", STRUCTURE, "", "spec: must be a mapping"),
        ("spec-scalar", STRUCTURE, "hello\n", "spec: must be a mapping"),
    ]
    return [Hostile(i, k, t, e) for i, k, t, e in cases]


def alias_bomb(levels: int = 9) -> str:
    lines = ["name: bomb", "base:", "  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]")
    lines.append(f"grid: {{width: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def _yaml_cases() -> list[Hostile]:
    seeds = ", ".join(str(i) for i in range(10_000))
    big_grid = "grid:\n  seed: [" + seeds + "]\n  split_seed: [" + ", ".join(str(i) for i in range(1000)) + "]\n"
    cases = [
        Hostile("alias-bomb", YAML, alias_bomb(), "line 4: alias *a0 is not allowed"),
        Hostile("alias-small", YAML, _spec("base: &b {lr: 0.1}\ngrid: {method: [{<<: *b, method: dense}]}"), "alias *b is not allowed"),
        Hostile("deep-brackets", YAML, _spec("grid: {width: " + "[" * 30_000 + "]" * 30_000 + "}"), f"nested deeper than {MAX_DEPTH} levels"),
        Hostile("deep-nesting-small", YAML, _spec("grid: {width: " + "[" * 40 + "]" * 40 + "}"), f"nested deeper than {MAX_DEPTH} levels"),
        Hostile("deep-mappings", YAML, _spec("base: " + "{a: " * 40 + "1" + "}" * 40), f"nested deeper than {MAX_DEPTH} levels"),
        Hostile("duplicate-key-base", YAML, _spec("base: {lr: 0.1, lr: 1000000}"), "base.lr: duplicate key at lines 2 and 2"),
        Hostile("duplicate-key-top", YAML, "name: a\ngrid: {width: [1]}\nname: b\n", "name: duplicate key at lines 1 and 3"),
        Hostile("duplicate-key-grid", YAML, _spec("grid:\n  width: [1]\n  seed: [0]\n  width: [2]"), "grid.width: duplicate key at lines 3 and 5"),
        Hostile("duplicate-key-in-list", YAML, _spec("grid:\n  method:\n    - {method: dense, lr: 0.1, lr: 0.2}"), "grid.method[0].lr: duplicate key"),
        Hostile("invalid-yaml", YAML, _spec("grid: {width: [1, 2}"), "not valid YAML (line 2"),
        Hostile("tab-indent", YAML, "name: x\ngrid:\n\twidth: [1]\n", "not valid YAML"),
        Hostile("python-tag", YAML, _spec("base: !!python/object/apply:os.system ['true']"), "not valid YAML"),
        Hostile("control-character", YAML, "name: x\x07\n", "not valid YAML"),
        Hostile("huge-file", FILE, _spec("grid:\n  seed: [" + ", ".join(str(i) for i in range(1_500_000)) + "]"), "a spec file may hold at most 65,536 bytes"),
        Hostile("latin-1", FILE, "name: caf\xe9\ngrid: {width: [1]}\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9)"),
        Hostile("utf-16", FILE, "name: x\ngrid: {width: [1]}\n".encode("utf-16"), "UTF-16 text; save the spec as UTF-8"),
        Hostile("random-bytes", FILE, bytes(range(256)) * 4, "a binary file"),
        Hostile("ten-million-trials", EXPANSION, _spec(big_grid), "grid: plans 10,000,000 trials (seed 10,000 x split_seed 1,000), more than max_trials 10,000"),
        Hostile("search-samples-cap", EXPANSION, _spec("grid: {seed: [0, 1, 2, 3]}\nsearch: {lr: {type: float, low: 0.001, high: 0.1}}\nsamples_per_cell: 5000"), "grid: plans 20,000 trials"),
        Hostile("cap-in-spec", EXPANSION, _spec("grid: {seed: [0, 1, 2], width: [1, 2]}\nmax_trials: 5"), "grid: plans 6 trials (seed 3 x width 2), more than max_trials 5"),
        Hostile("long-message-value", NAME, _spec("grid: {method: ['" + "x" * 20_000 + "']}"), "grid.method[0]: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (20,002 characters) is not allowed"),
        Hostile("many-unknown-keys", NAME, _spec("\n".join(f"k{i}: 1" for i in range(2000)) + "\ngrid: {width: [1]}"), "k0: unknown key"),
    ]
    return cases


def corpus() -> list[Hostile]:
    return [*_yaml_cases(), *_spec_key_cases(), *_field_cases(), *_run_cases()]


def worst_input() -> Hostile:
    """The input that cost the most before this was bounded (the alias bomb grew past 3 GB)."""
    return next(h for h in corpus() if h.id == "alias-bomb")


assert MAX_BYTES == 64 * 1024  # the expectations above quote it
