"""Property tests: generated specs and `--where` strings are either accepted or refused with
a ConfigError (exit 2 and a message on the command line), never any other exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hidden_core.config import ConfigError, TrialConfig
from hidden_core.spec import SweepSpec, parse_spec
from hidden_core.store import TRIAL_SCHEMA, where_expression
from hidden_core.strict_yaml import load_yaml_text

FIELDS = list(TrialConfig.model_fields)
TOP = list(SweepSpec.model_fields)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["dense", "edge_popup", "mlp", "convnet", "resnet", "mnist1d", "digits", "sgd", "adam", "7", "1e-3", "", "x" * 300]),
    st.text(max_size=20),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)), max_leaves=8)
field_values = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), values, max_size=4)
grids = st.dictionaries(st.sampled_from(FIELDS), st.one_of(st.lists(values, min_size=0, max_size=3), values), max_size=3)
search_params = st.fixed_dictionaries(
    {"type": st.sampled_from(["float", "int", "categorical", "nope"])},
    optional={"low": scalars, "high": scalars, "log": scalars, "step": scalars, "choices": st.lists(scalars, max_size=3)},
)
specs = st.fixed_dictionaries(
    {"name": st.one_of(st.just("prop"), scalars)},
    optional={
        "base": st.one_of(field_values, values),
        "grid": st.one_of(grids, values),
        "search": st.dictionaries(st.sampled_from(FIELDS), st.one_of(search_params, values), max_size=2),
        "samples_per_cell": scalars,
        "pruner": st.one_of(st.sampled_from(["none", "median", "hyperband", "medain"]), st.dictionaries(st.sampled_from(["type", "n_startup_trials", "args", "percentile"]), values, max_size=3)),
        "resources": st.dictionaries(st.sampled_from(["cpu", "gpu", "cpus"]), scalars, max_size=2),
        "seed": scalars, "max_concurrent": scalars, "max_failures": scalars, "report_every_s": scalars, "max_trials": scalars,
        "study_storage": scalars, "sampler": scalars, "run": st.dictionaries(st.sampled_from(["amp", "eval_batch_size", "compile", "device"]), scalars, max_size=2),
        "bogus": values,
    },
)


def _accepted_or_refused(call, *args):
    try:
        return call(*args)
    except ConfigError as err:
        assert err.problems and all(isinstance(p, str) and p for p in err.problems)
        assert sum(len(p) for p in err.problems) < 50_000
        return None


@SETTINGS
@given(specs)
def test_generated_specs_are_valid_or_refused_with_a_message(data):
    spec = _accepted_or_refused(parse_spec, data)
    if spec is not None:
        assert spec.plan().total >= 1


@SETTINGS
@given(specs)
def test_generated_spec_files_are_valid_or_refused_with_a_message(data):
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return
    _accepted_or_refused(lambda t: parse_spec(load_yaml_text(t)), text)


columns = st.sampled_from([*TRIAL_SCHEMA.names[:40], "colour", "__class__"])
constants = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str), st.floats().map(repr),
    st.sampled_from(["'dense'", "'2026-01-01'", "'not a date'", "None", "True", "...", "b'x'", "1j", "[1, 2]", "'a' + 'b'"]),
)
atoms = st.one_of(columns, constants)
comparisons = st.builds(lambda a, op, b: f"{a} {op} {b}", atoms, st.sampled_from(["==", "!=", "<", ">=", "in", "+", "**", "/"]), atoms)
expressions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or", "&", "|"]), inner),
        st.builds(lambda a: f"not ({a})", inner),
        st.builds(lambda c, m: f"{c}.{m}", columns, st.sampled_from(["isna()", "isin([1])", "between(0, 1)", "between('a', 2)", "upper()"])),
    ),
    max_leaves=6,
)


@SETTINGS
@given(st.one_of(expressions, st.text(max_size=60), expressions.map(lambda e: e + " -- c"), expressions.map(lambda e: e + " # c")))
def test_generated_where_strings_are_valid_or_refused_with_a_message(text):
    _accepted_or_refused(where_expression, text)
