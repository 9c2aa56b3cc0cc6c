"""Is it the mask, or just its density? A found subnetwork against controls that keep one
property of it and destroy the rest.

For a mask (edge_popup, free_prune, and the binary mask supermask evaluates):
    random     a uniformly random mask with each layer's found density (equivalently, the
               found mask permuted within its layer: the two are the same distribution)
    shuffled   the found mask permuted within each output unit (row / filter): keeps every
               unit's number of kept inputs, hence dead units and the per-unit fan-in profile,
               which a per-layer shuffle would also destroy
    fresh      the found mask on weights drawn again from the same distribution (another seed)
For sign_flip the same three on the flip pattern (which weights flipped against their
initial sign): random flips at each layer's found flip fraction, the found flips permuted
within each output unit, and the found signs on freshly drawn magnitudes; plus `initial`,
the network before any flip.

Every control is drawn `draws` times; draw d of a control depends only on the trial and d
(the permutations' generator is seeded with (trial seed, d, control), fresh weights use seed +
10_000 + d), so a sweep's controls pass (hidden_core/tune/controls_pass.py) can compute the
draws a killed run did not store and `hidden subnet controls FILE` gives the same numbers.
The table gives the mean and a 95%
Student-t interval over the draws (exact for normally distributed draw accuracies; with few
draws read it as indicative). With BatchNorm every row, the found network included, gets its
running statistics re-estimated on the training split, so no row is handicapped by statistics
measured on other weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from hidden_core import paths
from hidden_core.catalog import CATALOG, controls_of
from hidden_core.errors import ConfigError
from hidden_core.records import (
    CONTROLLED_METHODS,
    DENSITY,
    DRAWN_CONTROLS,
    FOUND,
    TEST_ACC,
    VAL_ACC,
)
from hidden_core.subnet.fileformat import SubnetFile

FRESH_SEED_OFFSET = 10_000  # fresh weights use seed + 10_000 + draw: never the trial's own seed
SUFFIX = paths.CONTROLS_SUFFIX
_STREAM = {"random": 0, "shuffled": 1}  # the permutations' generator stream of each permuted control


def controlled_kind(f: SubnetFile) -> str:
    info = CATALOG[f.config.method]
    kind = controls_of(info.name, f.config.model_dump())
    if kind is not None:
        return kind
    if info.controls is not None:  # trained its kept weights (trains_weights_when)
        raise ConfigError([f"{info.trains_weights_when}: a {info.name} trial with {info.trains_weights_when} = {getattr(f.config, info.trains_weights_when)} "
                           "trained its kept weights, so untrained controls (a random or shuffled mask, fresh weights) would not test the mask; "
                           f"controls apply to {info.name} trials without it"])
    if info.runner == "levels":  # its own, trained controls are in the epochs table
        raise ConfigError([f"method: {info.name} trained its kept weights under its mask, so untrained controls (a random or shuffled "
                           "mask, fresh weights) would not test the mask; a lottery trial trains its own controls at every level "
                           "(lottery_controls: true: reinit, random_prune) and scores the supermask (its mask on the initial weights): "
                           "the epochs table's branch column, `hidden analyze lottery`"])
    raise ConfigError([f"method: {info.name} learns no mask or signs, so it has no controls; controls exist for {', '.join(CONTROLLED_METHODS)}"])


def permute_within_layer(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(values.reshape(-1)).reshape(values.shape)


def permute_within_units(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each output unit's entries (dimension 0: a row of a Linear, a filter of a Conv)
    permuted independently."""
    rows = values.reshape(values.shape[0], -1)
    return rng.permuted(rows, axis=1).reshape(values.shape)


def initial_signs(f: SubnetFile) -> dict[str, np.ndarray]:
    """sign_flip's starting signs (w >= 0 -> +), from the regenerated weights."""
    from hidden_core.methods import build_model
    from hidden_core.methods.base import original_weight

    modules = dict(build_model(f.config).net.named_modules())
    return {name: (original_weight(modules[name]) >= 0).numpy() for name in f.shapes}


def control_states(f: SubnetFile, control: str, rng: np.random.Generator, start: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The `replace` argument of materialize() for one draw of `control` (random/shuffled)."""
    kind = controlled_kind(f)
    found = f.layers(kind)
    permute = permute_within_layer if control == "random" else permute_within_units
    if kind != "sign":
        return {kind: {name: permute(value, rng) for name, value in found.items()}}
    flips = {name: value != start[name] for name, value in found.items()}
    return {"sign": {name: start[name] ^ permute(flip, rng) for name, flip in flips.items()}}


def _summary(name: str, description: str, accuracies: list[dict[str, float]]) -> dict:
    test = np.array([a[TEST_ACC] for a in accuracies])
    val = np.array([a[VAL_ACC] for a in accuracies])
    row = {"control": name, "description": description, "draws": len(test), VAL_ACC: val.mean(), TEST_ACC: test.mean(),
           "test_acc_std": test.std(ddof=1) if len(test) > 1 else math.nan, "test_acc_ci_low": math.nan, "test_acc_ci_high": math.nan}
    if len(test) > 1:
        from scipy import stats

        half = stats.t.ppf(0.975, len(test) - 1) * row["test_acc_std"] / math.sqrt(len(test))
        row["test_acc_ci_low"], row["test_acc_ci_high"] = row[TEST_ACC] - half, row[TEST_ACC] + half
    return row


def method_controls(method: str) -> tuple[str, ...]:
    """found and the controls of a controlled method (records.CONTROLLED_METHODS), in table order."""
    return (FOUND, *DRAWN_CONTROLS, *(("initial",) if CONTROLLED_METHODS[method] == "sign" else ()))


def method_draws(method: str, draws: int) -> list[tuple[str, int]]:
    """(control, draw) pairs of a full table: found and initial once, the others `draws` times."""
    return [(c, d) for c in method_controls(method) for d in (range(draws) if c in DRAWN_CONTROLS else (0,))]


def control_names(f: SubnetFile) -> tuple[str, ...]:
    controlled_kind(f)  # a clear error for a method without controls
    return method_controls(f.config.method)


def wanted_draws(f: SubnetFile, draws: int) -> list[tuple[str, int]]:
    controlled_kind(f)
    return method_draws(f.config.method, draws)


def trial_seed(f: SubnetFile) -> int:
    """The permutations' seed: from the trial_id, so every trial draws its own controls."""
    return int(f.config.trial_id[:15], 16) if all(c in "0123456789abcdef" for c in f.config.trial_id[:15]) else 0


def score_controls(f: SubnetFile, evaluator, wanted: Iterable[tuple[str, int]], seed: int | None = None) -> list[dict]:
    """One row {control, draw, val_acc, test_acc} per (control, draw) asked for. Draw d of a
    control is the same whatever else is asked (its own seeded generator), so a resumed pass
    computes only what is missing. `seed`: default trial_seed(f)."""
    from hidden_core.subnet.state import materialize

    kind = controlled_kind(f)
    seed = trial_seed(f) if seed is None else seed
    device = evaluator.device
    start = initial_signs(f) if kind == "sign" else None

    def score(**kw) -> dict[str, float]:
        return evaluator.accuracy(evaluator.recalibrate_batchnorm(materialize(f, device, **kw), f.config.batch_size))

    rows = []
    for control, draw in wanted:
        if control == FOUND:
            accuracy = score()
        elif control in _STREAM:
            accuracy = score(replace=control_states(f, control, np.random.default_rng([seed, draw, _STREAM[control]]), start))
        elif control == "fresh":
            accuracy = score(weights_seed=f.config.seed + FRESH_SEED_OFFSET + draw)
        elif control == "initial" and kind == "sign":
            accuracy = score(replace={"sign": start})
        else:
            raise ValueError(f"control {control!r} does not exist for {f.config.method}; its controls: {', '.join(control_names(f))}")
        rows.append({"control": control, "draw": draw, **accuracy})
    return rows


def run_controls(f: SubnetFile, evaluator, draws: int = 5, seed: int | None = None) -> pd.DataFrame:
    """found, random, shuffled, fresh (and initial for sign_flip) as a table: one row each."""
    kind = controlled_kind(f)
    scored = score_controls(f, evaluator, wanted_draws(f, draws), seed)
    unit = "flips" if kind == "sign" else "mask"
    descriptions = {
        FOUND: "the stored subnetwork",
        "random": f"random {unit} at each layer's found {'flip fraction' if kind == 'sign' else DENSITY}",
        "shuffled": f"found {unit} permuted within each output unit",
        "fresh": f"found {'signs on fresh magnitudes' if kind == 'sign' else 'mask on fresh weights'} (same distribution, another seed)",
        "initial": "the initial network, no sign flipped",
    }
    rows = [_summary(c, descriptions[c], [r for r in scored if r["control"] == c]) for c in control_names(f)]
    table = pd.DataFrame(rows)
    table.insert(0, "trial_id", f.config.trial_id)
    table.insert(1, "method", f.config.method)
    return table


def controls_path(file: str | Path) -> Path:
    """Where `hidden subnet controls FILE` stores its table: next to FILE."""
    return Path(paths.controls_table_path(file))
