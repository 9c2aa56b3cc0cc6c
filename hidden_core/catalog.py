"""The method catalog: one registry line per method, torch-free.

A method is one file, `hidden_core/methods/<name>.py` (torch: its parametrization, how its
learned state goes into and out of a subnet file, its hooks), plus one `MethodInfo` line here:
the facts the spec, the CLI, the store and the analysis need without importing torch (the
config fields it reads, the options it adds to the trial config, the kind of state it learns,
which evaluation-only controls apply, its runner). No other module keeps a table or an
if-chain keyed by a method's name: they ask this catalog (tests/test_catalog.py scans for
method names outside hidden_core/methods/, this file, docs and specs).

This module imports neither torch nor pydantic: hidden_core.config builds the trial config's
fields from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from hidden_core.bounds import MAX_EPOCHS, Bound

# The kinds of state a method learns (what a subnet file keeps; docs/subnetworks.md):
LEARNS: Mapping[str, str] = MappingProxyType({
    "weights": "every weight (and every other parameter) is trained",
    "mask": "a binary mask over the frozen random weights (1 bit per weight)",
    "mask_logits": "a binary evaluation mask (1 bit per weight) and the logits it is drawn from",
    "sign": "the sign of every frozen random magnitude (1 bit per weight)",
    "values": "the trained values of a random subset of the weights; the rest stay at their random values",
    "bn_affine": "BatchNorm gamma/beta (and optionally the output layer)",
    "output_layer": "the output layer only",
    "ticket": "a mask pruned over levels of training, and the trained values of its kept weights",
    "index": "which of K fixed random values each weight uses (an index, ceil(log2 K) bits per weight)",
})
CONTROL_KINDS: tuple[str, ...] = ("mask", "sign")  # hidden_core.subnet.controls draws controls of these states
TRAIN, LEVELS = "train", "levels"
RUNNERS: tuple[str, ...] = (TRAIN, LEVELS)  # one training; a level loop of trainings (lottery_ticket: hidden_core.lottery)


@dataclass(frozen=True)
class Option:
    """A trial-config field that only its method reads (declared on the method's line)."""

    type: Any  # bool, int, float, str, or a typing.Literal of the allowed values
    default: Any
    description: str
    bound: Bound | None = None  # numbers: the allowed interval, and why
    below: str | None = None  # numbers: also strictly below this other config field (e.g. epochs)


@dataclass(frozen=True)
class MethodInfo:
    """One method's registry line: what can be known about it without torch."""

    name: str
    module: str  # its one file; the module's METHOD is its hidden_core.methods.base.Method class
    summary: str
    learns: str  # a key of LEARNS
    reads: tuple[str, ...] = ()  # shared trial-config fields it reads (keep_fraction, scale_fan, penalty)
    options: Mapping[str, Option] = field(default_factory=dict)  # fields of its own, added to the trial config
    controls: str | None = None  # a CONTROL_KINDS kind: its found state is tested against random/shuffled/fresh draws
    runner: str = "train"  # a RUNNERS value
    # its seeds may train together as one vectorized cell (hidden_core/vectorized.py): False
    # for a method with step or epoch hooks (after_step, after_epoch, optimized), which the
    # vectorized loop does not call
    vectorizes: bool = True
    # an option of its own that, away from its default, makes it train the kept weights
    # (Gem-Miner's fine-tuning): such a trial's state is no untrained subnetwork, so the
    # evaluation-only controls do not apply to it (controls_of)
    trains_weights_when: str | None = None
    reference: bool = False  # the trained dense network every gap and ratio is measured against
    selects: str | None = None  # what its per-layer selection is called in `hidden subnet analyze` ("kept", "flipped")
    needs_batchnorm: bool = False  # it learns BatchNorm parameters: norm defaults to batchnorm and must be, and its
    # BatchNorm starts as open_lth's (gamma ~ U[0, 1), beta 0) on any model
    open_lth_bn_init: bool = False  # on the ResNet its BatchNorm starts as open_lth's (the BN-only paper's baselines)

    def __post_init__(self) -> None:
        assert self.learns in LEARNS, f"{self.name}: learns {self.learns!r} is not one of {sorted(LEARNS)}"
        assert self.controls in (None, *CONTROL_KINDS), f"{self.name}: controls {self.controls!r}"
        assert self.runner in RUNNERS, f"{self.name}: runner {self.runner!r}"
        assert self.runner == TRAIN or not self.vectorizes, f"{self.name}: a level loop does not vectorize"

    @property
    def fields(self) -> frozenset[str]:
        """Every trial-config field it reads (a field it does not read is reset to its default
        before the trial's identity is hashed)."""
        return frozenset(self.reads) | frozenset(self.options)


# One line per method. A new method goes last: its position is its colour in every figure
# (hidden_core.analysis.plots), so the others keep theirs.
CATALOG: Mapping[str, MethodInfo] = MappingProxyType({info.name: info for info in (
    MethodInfo("dense", "hidden_core.methods.dense", "every weight trained from the same random start (the reference)", "weights",
               reference=True, open_lth_bn_init=True),
    MethodInfo("edge_popup", "hidden_core.methods.edge_popup", "top-k of learned scores per layer masks the random weights (Ramanujan et al. 2020)",
               "mask", reads=("keep_fraction", "scale_fan"), controls="mask", selects="kept"),
    MethodInfo("supermask", "hidden_core.methods.supermask", "a Bernoulli mask per weight, its logits trained (Zhou et al. 2019)", "mask_logits",
               reads=("scale_fan",), controls="mask", selects="kept", options={
                   "supermask_init_keep": Option(float, 0.5, "initial keep probability sigmoid(logit)",
                                                 Bound(0, 1, True, True, "a probability turned into a logit: 0 and 1 are infinite logits")),
                   "supermask_eval": Option(Literal["sampled", "deterministic"], "sampled", "evaluation mask: one Bernoulli sample per evaluation (fixed seed), or sigmoid(logit) > 0.5 (docs/methods.md)"),
               }),
    MethodInfo("free_prune", "hidden_core.methods.free_prune", "a learned keep/drop score per weight, sign(relu(score)) (Ivan & Florian 2020)", "mask",
               reads=("penalty",), controls="mask", selects="kept"),
    MethodInfo("sign_flip", "hidden_core.methods.sign_flip", "learned signs of frozen random magnitudes (Ivan & Florian 2020)", "sign",
               reads=("penalty",), controls="sign", selects="flipped"),
    MethodInfo("bn_only", "hidden_core.methods.bn_only", "only BatchNorm gamma/beta trained (Frankle, Schwab & Morcos 2021)", "bn_affine",
               needs_batchnorm=True, options={
                   "train_output_layer": Option(bool, False, "also learn the output layer"),
               }),
    MethodInfo("learn_fraction", "hidden_core.methods.learn_fraction", "a random fraction k of the weights trained, the rest frozen", "values",
               reads=("keep_fraction",)),
    MethodInfo("random_features", "hidden_core.methods.random_features", "only the output layer trained", "output_layer", open_lth_bn_init=True),
    MethodInfo("lottery_ticket", "hidden_core.methods.lottery_ticket", "iterative magnitude pruning with rewinding (Frankle & Carbin 2019; open_lth)", "ticket",
               reads=("keep_fraction",), runner="levels", vectorizes=False, selects="kept", options={
                   "prune_rate": Option(float, 0.2, "fraction of the remaining weights pruned at each level, in (0, 1)",
                                        Bound(0, 1, True, True, "a fraction of the remaining weights; 0 never reaches k, 1 prunes everything")),
                   "prune_scope": Option(Literal["layer", "global"], "layer", "prune each layer at the rate (layer) or all layers pooled, as open_lth's sparse_global (global)"),
                   "rewind_epoch": Option(int, 0, "rewind survivors to their values after this epoch (0 = initialization), in [0, epochs)",
                                          Bound(0, MAX_EPOCHS, False, False, "an epoch (as epochs); also below epochs"), below="epochs"),
                   "lottery_controls": Option(bool, False, "also train random reinitialization and random pruning at every level"),
               }),
    MethodInfo("iterand", "hidden_core.methods.iterand", "edge-popup whose pruned weights are re-drawn every K steps with probability r (Chijiwa et al. 2021)",
               "mask", reads=("keep_fraction", "scale_fan"), controls="mask", selects="kept", vectorizes=False, options={
                   "iterand_period": Option(int, 300, "re-draw the pruned weights after every this many optimizer steps (K_per; the reference's rerand_freq, paper: 300 on CIFAR-10)",
                                            Bound(1, 10**9, False, False, "a count of optimizer steps")),
                   "iterand_rate": Option(float, 0.1, "probability that a pruned weight is re-drawn at each re-draw (r; the reference's rerand_lambda; 0 = no re-draw, 1 = naive randomization)",
                                          Bound(0, 1, False, False, "a probability")),
                   "iterand_scores": Option(Literal["signed", "abs"], "signed", "mask ranking: signed scores (the reference's own edge-popup) or |score| (edge_popup's; docs/methods.md)"),
               }),
    MethodInfo("slot_machine", "hidden_core.methods.slot_machine", "K fixed random values per weight; learned scores choose one (Aladago & Torresani 2021)", "index",
               vectorizes=False, options={
                   "slot_machine_k": Option(int, 8, "random values per weight (K) that the scores choose among",
                                            Bound(2, 256, False, False, "K = 1 leaves nothing to choose; each K costs K values and K scores per weight (the paper's largest K is 64)")),
                   "slot_machine_selection": Option(Literal["greedy", "probabilistic"], "greedy", "training forward uses argmax(scores) (greedy) or a draw from softmax(scores) (probabilistic); evaluation uses the argmax"),
               }),
    MethodInfo("biprop", "hidden_core.methods.biprop", "edge-popup's top-k mask, the kept random weights binarized to sign(w) * one computed gain per layer (Diffenderfer & Kailkhura 2021, MPT-1/32)",
               "mask", reads=("keep_fraction", "scale_fan"), controls="mask", selects="kept"),
    MethodInfo("gem_miner", "hidden_core.methods.gem_miner", "scores in [0, 1] rounded at 0.5 mask the random weights, an L2 push and periodic global pruning reach k, "
               "then optional fine-tuning of the kept weights (Sreenivasan et al. 2022)", "mask", reads=("keep_fraction",), controls="mask", selects="kept",
               vectorizes=False, trains_weights_when="gem_miner_finetune_epochs", options={
                   "gem_miner_lambda": Option(float, 1e-4, "weight of the regularizer on the scores (the reference's lmbda)",
                                              Bound(0, 1, False, False, "a sum over every score in [0, 1]: at 1 it outweighs any cross-entropy; the paper uses 1e-8 to 1e-4")),
                   "gem_miner_regularizer": Option(Literal["L2", "L1"], "L2", "lambda * sum of squared scores (L2, the paper's) or of scores (L1)"),
                   "gem_miner_period": Option(int, 5, "prune the lowest scores of all layers every this many epochs (the reference's iter_period)",
                                              Bound(1, MAX_EPOCHS, False, False, "epochs (as epochs)")),
                   "gem_miner_finetune_epochs": Option(int, 0, "train the found subnetwork's kept weights in the last this many epochs (0: no fine-tuning), below epochs",
                                                       Bound(0, MAX_EPOCHS, False, False, "epochs (as epochs); also below epochs: the search needs one"), below="epochs"),
                   "gem_miner_unflag": Option(bool, True, "fine-tune every weight the periodic pruning left (the reference's unflag_before_finetune), not only the found mask"),
                   "gem_miner_finetune_weight_decay": Option(float, 1e-4, "L2 weight decay on the fine-tuned weights (the reference's fine_tune_wd)",
                                                             Bound(0, 1, False, False, "as weight_decay")),
               }),
)})

METHODS: tuple[str, ...] = tuple(CATALOG)
REFERENCE: str = next(name for name, info in CATALOG.items() if info.reference)  # "the dense network" of gaps and ratios


def method_info(name: str) -> MethodInfo:
    """The registry line of `name` (KeyError naming the allowed names)."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}") from None


def methods_where(**facts: Any) -> tuple[str, ...]:
    """The methods whose registry line has every given fact, e.g. methods_where(controls="mask")."""
    return tuple(name for name, info in CATALOG.items() if all(getattr(info, k) == v for k, v in facts.items()))


def controls_of(method: str, fields: Mapping[str, Any]) -> str | None:
    """The controls kind of one trial (its method and config fields): its registry line's
    `controls`, or None where `trains_weights_when` says it trained its kept weights."""
    info = method_info(method)
    option = info.trains_weights_when
    if option is not None and fields.get(option, info.options[option].default) != info.options[option].default:
        return None
    return info.controls


def _options() -> dict[str, tuple[str, Option]]:
    out: dict[str, tuple[str, Option]] = {}
    for info in CATALOG.values():
        for name, option in info.options.items():
            assert name not in out, f"option {name!r} is declared by both {out[name][0]} and {info.name}"
            out[name] = (info.name, option)
    return out


OPTIONS: Mapping[str, tuple[str, Option]] = MappingProxyType(_options())  # option name -> (its method, Option)
