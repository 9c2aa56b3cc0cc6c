"""Typed, frozen, validated configuration of one trial, and its content-hash identity.

This module imports neither torch nor Ray: the store, the analysis and the sweep-spec
validation use it on machines that only have pandas.

Two objects, on purpose:
- ``TrialConfig`` is the science: everything that can change a result. Its canonical form
  is hashed into ``trial_id``.
- ``RunOptions`` is the execution: device, data location, checkpoint folder. Changing it
  must never rename a trial, so it is not part of the hash.

Strict at the edge: no value is converted from another type (``true`` is not 1.0, ``'7'``
is not 7, ``1.0`` is not the integer 1), floats must be finite, and every number has the
bounds listed in ``BOUNDS`` (each with why it was chosen): a value outside them is refused
before any work starts instead of failing, overflowing or running for days inside a trial.
Values read back from numpy/pandas (``numpy.int64``) are plain numbers, not user input, and
are accepted as such.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from hidden_core.bounds import MAX_EPOCHS, SEED_LIMIT, Bound, number_text
from hidden_core.catalog import CATALOG, METHODS, OPTIONS, REFERENCE
from hidden_core.errors import (  # noqa: F401  (re-exported: hidden_core.errors is their home)
    SYNONYMS,
    ConfigError,
    brief,
    clip,
    error_message,
    suggestion,
)

MethodName = Literal[METHODS]  # type: ignore[valid-type]  # the catalog's names (hidden_core/catalog.py)
ModelName = Literal["mlp", "convnet", "resnet"]
DatasetName = Literal["mnist1d", "digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "synthetic_cifar10"]
WeightDist = Literal[
    "kaiming_normal",
    "kaiming_uniform",
    "signed_constant",
    "unsigned_constant",
    "xavier_normal",
    "xavier_constant",
    "asymmetric_constant",
    "binary",
    "uniform",
    "normal",
]
OptimizerName = Literal["sgd", "adam"]
ScheduleName = Literal["constant", "cosine", "step"]
NormName = Literal["none", "batchnorm"]

MODELS: tuple[str, ...] = get_args(ModelName)
DATASETS: tuple[str, ...] = get_args(DatasetName)
WEIGHT_DISTS: tuple[str, ...] = get_args(WeightDist)


class DatasetInfo(BaseModel):
    """Static facts about a data set, known without loading it (used to validate models)."""

    model_config = ConfigDict(frozen=True)
    input_shape: tuple[int, ...]  # (channels, *spatial)
    num_classes: int
    is_image: bool
    torchvision: bool


DATASET_INFO: dict[str, DatasetInfo] = {
    "mnist1d": DatasetInfo(input_shape=(1, 40), num_classes=10, is_image=False, torchvision=False),
    "digits": DatasetInfo(input_shape=(1, 8, 8), num_classes=10, is_image=True, torchvision=False),
    "cifar10": DatasetInfo(input_shape=(3, 32, 32), num_classes=10, is_image=True, torchvision=True),
    "cifar100": DatasetInfo(input_shape=(3, 32, 32), num_classes=100, is_image=True, torchvision=True),
    "mnist": DatasetInfo(input_shape=(1, 28, 28), num_classes=10, is_image=True, torchvision=True),
    "fashion_mnist": DatasetInfo(input_shape=(1, 28, 28), num_classes=10, is_image=True, torchvision=True),
    "synthetic_cifar10": DatasetInfo(input_shape=(3, 32, 32), num_classes=10, is_image=True, torchvision=False),
}

DEFAULT_DEPTH: dict[str, int] = {"mlp": 2, "convnet": 4, "resnet": 20}

# Which optional fields each method reads. A field a method does not read is reset to its
# default before hashing, so a grid crossing k with `dense` yields one dense trial, not many.
METHOD_FIELDS: dict[str, frozenset[str]] = {name: info.fields for name, info in CATALOG.items()}
METHOD_SPECIFIC_FIELDS: frozenset[str] = frozenset().union(*METHOD_FIELDS.values())
DIST_FIELDS: dict[str, frozenset[str]] = {
    "asymmetric_constant": frozenset({"dist_p"}),
    "binary": frozenset({"dist_scale"}),
    "uniform": frozenset({"dist_low", "dist_high"}),
    "normal": frozenset({"dist_mean", "dist_std"}),
}
DIST_SPECIFIC_FIELDS: frozenset[str] = frozenset().union(*DIST_FIELDS.values())


MAX_BATCH = 2**20

# Every numeric field's allowed values (TrialConfig and RunOptions). One place: validation,
# error messages and the documentation read this table.
BOUNDS: dict[str, Bound] = {
    "keep_fraction": Bound(0, 1, True, False, "a fraction of the weights; 0 keeps nothing"),
    "penalty": Bound(-1, 100, False, False, "-1 selects MinPruning/MinFlipping; a weight above 100 on a mean in [0, 1] swamps any cross-entropy (ln 100 = 4.6)"),
    "dist_p": Bound(0, 1, False, False, "a probability"),
    "dist_scale": Bound(0, 1e3, True, False, "a weight magnitude; 1e3 is 1000x He scale, beyond it activations overflow within a few layers"),
    "dist_low": Bound(-1e3, 1e3, False, False, "a weight value (as dist_scale)"),
    "dist_high": Bound(-1e3, 1e3, False, False, "a weight value (as dist_scale)"),
    "dist_mean": Bound(-1e3, 1e3, False, False, "a weight value (as dist_scale)"),
    "dist_std": Bound(0, 1e3, True, False, "a weight spread (as dist_scale)"),
    "width": Bound(0, 64, True, False, "16x the widest network in the reproduced papers (4x; wide ResNets use 10x); the memory check refuses what still does not fit"),
    "depth": Bound(0, 1202, False, False, "ResNet-1202 (6*200+2) is the deepest network of He et al. 2016; deeper plain stacks do not train"),
    "mlp_units": Bound(1, 100_000, False, False, "1000x the default 100 units; beyond it one layer alone is 10^10 weights"),
    "val_fraction": Bound(0, 1, False, True, "a fraction of the training set; 1 leaves nothing to train on"),
    "split_seed": Bound(0, SEED_LIMIT, False, True, "int64 store column, numpy/torch seed range"),
    "seed": Bound(0, SEED_LIMIT, False, True, "int64 store column, numpy/torch seed range"),
    "epochs": Bound(1, MAX_EPOCHS, False, False, "100,000 epochs of even the smallest data set is days of one CPU"),
    "batch_size": Bound(1, MAX_BATCH, False, False, "2^20 examples is more than any supported data set holds"),
    "lr": Bound(0, 1e4, True, False, "supermask/sign-flip papers use up to 100 with SGD; 100x that is still finite in float32 updates"),
    "momentum": Bound(0, 1, False, True, "SGD momentum: at 1 and above past gradients never decay"),
    "weight_decay": Bound(0, 1, False, False, "an L2 coefficient of 1 already outweighs the loss; the papers use 1e-4 to 5e-4"),
    "step_gamma": Bound(0, 10, False, False, "a per-milestone lr factor; above 10 the lr grows without bound"),
    "label_smoothing": Bound(0, 1, False, True, "a probability mass moved off the label; 1 removes the label"),
    "step_milestones": Bound(1, MAX_EPOCHS, False, False, "epochs (as epochs); at most 1000 of them"),
    "eval_batch_size": Bound(1, MAX_BATCH, False, False, "as batch_size"),
    "threads": Bound(1, 1024, False, False, "torch CPU threads; no machine we run on has more cores"),
    "checkpoint_every_s": Bound(0, 86_400, False, False, "seconds of training a kill may lose; a day is the most any run waits"),
    "mlp_layer_units": Bound(1, 100_000, False, False, "per layer, as mlp_units; at most 1000 layers"),
}
# the method options' bounds, declared on their registry lines
BOUNDS.update({name: option.bound for name, (_, option) in OPTIONS.items() if option.bound is not None})
MAX_MILESTONES = 1000


_num = number_text


def _plain(value: Any) -> Any:
    """numpy/pandas scalars (read back from a store) as the Python numbers they hold."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def _int_tuple(data: dict[str, Any], name: str, example: str) -> None:
    """A list-of-whole-numbers field in place: the command line's text ("80,120") or YAML's
    list, as the tuple the field holds; anything else is left for the field's own check."""
    value = data.get(name)
    if isinstance(value, str):
        parts = [v.strip() for v in value.split(",") if v.strip()]
        if not all(re.fullmatch(r"[0-9]{1,6}", v) for v in parts):
            raise ValueError(f"{name}: {brief(value)} is not a comma-separated list of whole numbers (e.g. '{example}')")
        data[name] = tuple(int(v) for v in parts)
    elif isinstance(value, list):  # YAML has lists, not tuples
        data[name] = tuple(_plain(v) for v in value)


def _check_bounds(name: str, v: Any) -> Any:
    if v is None:
        return v
    bound = BOUNDS[name]
    if not bound.holds(v):
        raise ValueError(f"{brief(v)} is not in {bound}")
    return v


# Bumped when a change alters what an existing config computes (a default's value, a method's
# semantics), so that every trial gets a new id and a store never mixes the results of two
# meanings under one id (canonical() leaves defaults out, so a changed default alone would
# not rename anything). 2: weight_decay defaults to 0; supermask evaluates a binary mask;
# free_prune/sign_flip scores start at U(0.01, 0.1); edge-popup keeps n - int((1-k) n)
# weights (docs/methods.md).
IDENTITY_VERSION = 2


def canonical_trial_id(canonical: dict[str, Any]) -> str:
    """The trial_id of a config whose canonical() is `canonical` (TrialConfig.trial_id; the
    plan hashes a config's canonical form once for both its trial_id and its cell_id)."""
    return identity_hash({"identity_version": IDENTITY_VERSION, **canonical})


def identity_hash(canonical: dict[str, Any]) -> str:
    """The one content hash of the project: 16 hex digits of the SHA-256 of `canonical` as
    compact JSON with sorted keys. trial_id hashes a config's canonical form with
    IDENTITY_VERSION; the spec's cell_id hashes it without the seed and searched fields."""
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class _TrialConfigCore(BaseModel):
    """Everything that defines one trial's result. Frozen; unknown keys are errors; strict
    types (no conversion between bool, text and numbers); every number within ``BOUNDS``.
    TrialConfig (below) is this plus each method's own options, declared on its registry
    line (hidden_core/catalog.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)

    # what is learned
    method: MethodName = Field(REFERENCE, description="what is learned")
    keep_fraction: float = Field(0.5, description="fraction of weights KEPT (edge_popup) or LEARNED (learn_fraction), in (0, 1]")
    penalty: float = Field(0.0, description="free_prune/sign_flip: alpha * mean(mask or kept sign) per layer; -1 = MinPruning/MinFlipping")
    # the frozen weights
    weight_dist: WeightDist = Field("kaiming_normal", description="distribution of the frozen (or initial) weights")
    scale_fan: bool = Field(False, description="masked methods: use fan_in*k (the kept fan) in the distribution's scale")
    dist_p: float = Field(0.5, description="asymmetric_constant: P(+)")
    dist_scale: float = Field(1.0, description="binary: magnitude of every weight")
    dist_low: float = Field(-1.0, description="uniform: lowest weight value")
    dist_high: float = Field(1.0, description="uniform: highest weight value")
    dist_mean: float = Field(0.0, description="normal: mean of the weights")
    dist_std: float = Field(1.0, description="normal: standard deviation of the weights")
    # the network
    model: ModelName = Field("mlp", description="network family")
    width: float = Field(1.0, description="multiplier on every hidden layer's units/channels, > 0")
    depth: int | None = Field(None, description="hidden layers (mlp), conv layers (convnet, even), 6n+2 (resnet); None = model default")
    mlp_units: int = Field(100, description="mlp: hidden units per layer at width 1")
    mlp_layer_units: tuple[int, ...] = Field((), description="mlp: each hidden layer's units at width 1, e.g. [300, 100] (LeNet 300-100); sets depth; empty = mlp_units for every layer")
    norm: NormName | None = Field(None, description="normalization layers; unset: batchnorm for resnet and for a method that learns BatchNorm (bn_only), else none")
    # the data
    dataset: DatasetName = Field("mnist1d", description="data set")
    val_fraction: float = Field(0.1, description="fraction of the training set held out for validation, in [0, 1)")
    split_seed: int = Field(0, description="seed of the train/validation split (fixed across trial seeds)")
    augment: bool | None = Field(None, description="random crop (pad 4) + horizontal flip; None = on for CIFAR")
    # the training
    seed: int = Field(0, description="seed of the weights, the masks' initialization and the batch order")
    epochs: int = Field(30, description="training epochs")
    batch_size: int = Field(128, description="training examples per step")
    optimizer: OptimizerName = Field("sgd", description="optimizer of the learned parameters")
    lr: float = Field(0.1, description="learning rate")
    momentum: float = Field(0.9, description="sgd momentum")
    nesterov: bool = Field(False, description="sgd: Nesterov momentum")
    # 0: none of the reference codes of the score-based methods decays (docs/methods.md,
    # "Recipes"); a spec that wants decay says so, so no default leaks into a paper recipe
    weight_decay: float = Field(0.0, description="L2 penalty on the learned parameters")
    schedule: ScheduleName = Field("cosine", description="learning-rate schedule over the epochs")
    step_milestones: tuple[int, ...] = Field((), description="step schedule: epochs where lr is multiplied by step_gamma")
    step_gamma: float = Field(0.1, description="step schedule: lr factor at each milestone")
    label_smoothing: float = Field(0.0, description="cross-entropy label smoothing, in [0, 1)")

    # ---- validation -------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _resolve_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: _plain(v) for k, v in data.items()}
        model = data.get("model", "mlp")
        method = data.get("method", REFERENCE)
        for name, example in (("mlp_layer_units", "300,100"), ("step_milestones", "80,120")):
            _int_tuple(data, name, example)
        if data.get("depth") is None and model == "mlp" and isinstance(data.get("mlp_layer_units"), list | tuple) and data["mlp_layer_units"]:
            data["depth"] = len(data["mlp_layer_units"])  # per-layer units fix the depth
        if data.get("depth") is None and isinstance(model, str) and model in DEFAULT_DEPTH:
            data["depth"] = DEFAULT_DEPTH[model]
        if data.get("norm") is None:
            needs_bn = isinstance(method, str) and method in CATALOG and CATALOG[method].needs_batchnorm
            data["norm"] = "batchnorm" if model == "resnet" or needs_bn else "none"
        if data.get("augment") is None:
            data["augment"] = data.get("dataset", "mnist1d") in ("cifar10", "cifar100", "synthetic_cifar10")
        return data

    @field_validator(*(n for n in BOUNDS if n not in ("step_milestones", "mlp_layer_units", "eval_batch_size", "threads", "checkpoint_every_s")),
                     check_fields=False)  # the options' fields are TrialConfig's, not this core's
    @classmethod
    def _in_bounds(cls, v: Any, info: Any) -> Any:
        return _check_bounds(info.field_name, v)

    @field_validator("mlp_layer_units")
    @classmethod
    def _layer_units(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) > MAX_MILESTONES:
            raise ValueError(f"{len(v)} layers; at most {MAX_MILESTONES}")
        for units in v:
            _check_bounds("mlp_layer_units", units)
        return v

    @field_validator("step_milestones")
    @classmethod
    def _milestones(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) > MAX_MILESTONES:
            raise ValueError(f"{len(v)} milestones; at most {MAX_MILESTONES}")
        for epoch in v:
            _check_bounds("step_milestones", epoch)
        return v

    @model_validator(mode="after")
    def _check_combination(self) -> TrialConfig:
        depth_problem = model_depth_problem(self.model, self.depth, self.dataset)
        if depth_problem:
            raise ValueError(f"depth: {depth_problem}")
        if self.mlp_layer_units and self.model == "mlp" and len(self.mlp_layer_units) != self.depth:
            raise ValueError(f"depth: {self.depth} hidden layers but mlp_layer_units lists {len(self.mlp_layer_units)} ({list(self.mlp_layer_units)})")
        if self.mlp_layer_units and self.mlp_units != _field_defaults()["mlp_units"]:
            raise ValueError(f"mlp_units: {self.mlp_units} set together with mlp_layer_units {list(self.mlp_layer_units)}; give one of them")
        if CATALOG[self.method].needs_batchnorm and self.norm != "batchnorm":
            raise ValueError(f"norm: method {self.method} learns BatchNorm parameters; it needs norm 'batchnorm', not 'none'")
        if self.augment and not DATASET_INFO[self.dataset].is_image:
            raise ValueError(f"augment: random crop and flip need an image data set; {self.dataset} is not one")
        if self.dist_low >= self.dist_high:
            raise ValueError(f"dist_low: {self.dist_low} must be < dist_high ({self.dist_high})")
        for name in CATALOG[self.method].options:
            below = OPTIONS[name][1].below
            if below is not None and not getattr(self, name) < getattr(self, below):
                raise ValueError(f"{name}: {getattr(self, name)} is not in [0, {below}) = [0, {getattr(self, below)})")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing: {self.label_smoothing} is not in [0, 1)")
        return self

    # ---- identity -----------------------------------------------------------------------
    def unused_fields(self) -> frozenset[str]:
        """Method/distribution options this config's method and distribution do not read."""
        return (METHOD_SPECIFIC_FIELDS | DIST_SPECIFIC_FIELDS) - (METHOD_FIELDS[self.method] | DIST_FIELDS.get(self.weight_dist, frozenset()))

    def normalized(self) -> TrialConfig:  # type: ignore[valid-type]
        """The same trial with every method/distribution option it does not read reset to its
        default: two configs that differ only there are the same trial."""
        unused = self.unused_fields()
        defaults = _field_defaults()
        reset = {name: defaults[name] for name in unused if getattr(self, name) != defaults[name]}
        return self.model_copy(update=reset) if reset else self  # (most are at their defaults: no copy)

    def canonical(self) -> dict[str, Any]:
        """The trial's identity: normalized, with fields at their default left out (so a new
        option with a default never renames old trials). An option `normalized` would reset
        is left out as a default is, without making the normalized copy (planning a sweep
        of 5,000 trials calls this once a trial)."""
        defaults = _normalized_defaults()
        unused = self.unused_fields()
        out: dict[str, Any] = {}
        values = self.model_dump()
        for name in _sorted_fields():
            if name in unused:
                continue
            value = _normalize(values[name])
            if value != defaults[name]:
                out[name] = value
        return out

    @property
    def trial_id(self) -> str:
        return canonical_trial_id(self.canonical())

    @property
    def dataset_info(self) -> DatasetInfo:
        return DATASET_INFO[self.dataset]


def _option_field(method: str, name: str) -> tuple[Any, Any]:
    option = OPTIONS[name][1]
    return option.type, Field(option.default, description=f"{method}: {option.description}")


# The trial config: the core fields plus each method's own options (a new method adds its
# options on its registry line; nothing here changes). Options come after the core fields.
TrialConfig = create_model(  # type: ignore[call-overload]
    "TrialConfig", __base__=_TrialConfigCore, __module__=__name__,
    **{name: _option_field(method, name) for name, (method, _) in OPTIONS.items()},
)
TrialConfig.__doc__ = _TrialConfigCore.__doc__


class RunOptions(BaseModel):
    """How and where a trial runs. Not part of the trial's identity. Strict like TrialConfig."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    data_root: str | None = Field(None, description="folder of torchvision data sets (default $HIDDEN_DATA_ROOT or ~/.cache/hidden/data)")
    download: bool = Field(True, description="download torchvision data sets that are missing")
    checkpoint_dir: str | None = Field(None, description="save a checkpoint here (every checkpoint_every_s) and resume from it")
    checkpoint_every_s: float = Field(30.0, description="with checkpoint_dir: seconds of training between checkpoints (0: every epoch); a kill loses at most this much plus the epoch in progress")
    save_subnet: str | None = Field(None, description="at the end, write what the trial learned to this .safetensors file (hidden subnet eval FILE re-evaluates it)")
    amp: bool = Field(True, description="bf16 autocast on CUDA")
    channels_last: bool = Field(True, description="channels_last memory format for 2-D conv models on CUDA")
    compile: bool = Field(False, description="torch.compile the model")
    eval_batch_size: int = Field(2048, description="examples per forward pass when evaluating")
    threads: int | None = Field(None, description="torch CPU threads (None = torch default)")

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        return {k: _plain(v) for k, v in data.items()} if isinstance(data, dict) else data

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:[0-9]{1,3}", v) is not None
        if not ok:
            raise ValueError(f"{brief(v)} is not one of auto, cpu, cuda, cuda:N, mps")
        return v

    @field_validator("eval_batch_size", "threads", "checkpoint_every_s")
    @classmethod
    def _in_bounds(cls, v: Any, info: Any) -> Any:
        return _check_bounds(info.field_name, v)


def model_depth_problem(model: str, depth: int | None, dataset: str) -> str | None:
    """Why `model` cannot take `depth` on `dataset`, or None if it can."""
    if depth is None:
        return None
    if model == "mlp":
        return None if depth >= 0 else f"{depth}: mlp takes depth >= 0 hidden layers"
    if model == "convnet":
        if depth < 2 or depth % 2:
            return f"{depth}: convnet takes an even number of conv layers >= 2 (2, 4, 6, 8, ...)"
        size = min(DATASET_INFO[dataset].input_shape[1:])
        for _ in range(depth // 2):
            size //= 2
        if size < 1:
            return (
                f"{depth}: convnet with {depth // 2} max-pools shrinks {dataset}'s "
                f"{DATASET_INFO[dataset].input_shape[1:]} input to nothing; use at most "
                f"{2 * _max_pools(min(DATASET_INFO[dataset].input_shape[1:]))} conv layers"
            )
        return None
    if model == "resnet":
        if depth < 8 or (depth - 2) % 6:
            return f"{depth}: resnet takes depth 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...)"
        return None
    return None


def _max_pools(size: int) -> int:
    pools = 0
    while size // 2 >= 1:
        size //= 2
        pools += 1
    return pools


def _normalize(value: Any) -> Any:
    """Floats to 12 significant digits (0.1+0.2 == 0.3), ints that are floats stay floats."""
    kind = type(value)  # the common exact types first: canonical() runs this on every field
    if kind is float:
        return float(f"{value:.12g}")
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if isinstance(value, str | int):  # subclasses (bool among the ints)
        return value
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    return value


_DEFAULTS: dict[str, Any] | None = None


def _field_defaults() -> dict[str, Any]:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = {name: f.default for name, f in TrialConfig.model_fields.items()}
    return _DEFAULTS


_NORMALIZED_DEFAULTS: dict[str, Any] | None = None
_SORTED_FIELDS: list[str] = []


def _sorted_fields() -> list[str]:
    """TrialConfig's field names in the order canonical() lists them."""
    if not _SORTED_FIELDS:
        _SORTED_FIELDS.extend(sorted(TrialConfig.model_fields))
    return _SORTED_FIELDS


def _normalized_defaults() -> dict[str, Any]:
    """The defaults as `canonical` compares them, normalized once (planning a sweep calls
    `canonical` a few times per trial: 10,000 trials planned in seconds, not tens)."""
    global _NORMALIZED_DEFAULTS
    if _NORMALIZED_DEFAULTS is None:
        _NORMALIZED_DEFAULTS = {name: _normalize(value) for name, value in _field_defaults().items()}
    return _NORMALIZED_DEFAULTS


def format_validation_error(err: ValidationError, prefix: str = "") -> list[str]:
    """pydantic errors as 'path: message' lines naming the value and what is allowed."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = error_message(e)
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1]) if e["loc"] else ""
            allowed = ", ".join(TrialConfig.model_fields)
            msg = f"unknown key{suggestion(key, [*TrialConfig.model_fields, *RunOptions.model_fields])}; allowed keys: {allowed}"
            loc = ".".join(clip(str(p)) for p in e["loc"])
        # model-level errors carry their own "field: ..." prefix
        if not loc and ": " in msg and msg.split(": ", 1)[0] in TrialConfig.model_fields:
            loc, msg = msg.split(": ", 1)
        path = ".".join(p for p in (prefix, loc) if p)
        lines.append(f"{path}: {msg}" if path else msg)
    return lines


def _validated(model: type[BaseModel], data: dict[str, Any] | None, overrides: dict[str, Any]) -> Any:
    try:
        return model.model_validate({**(data or {}), **overrides})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def make_config(data: dict[str, Any] | None = None, **overrides: Any) -> TrialConfig:
    """Build a TrialConfig, raising ConfigError with every problem listed by field."""
    return _validated(TrialConfig, data, overrides)


def make_run_options(data: dict[str, Any] | None = None, **overrides: Any) -> RunOptions:
    return _validated(RunOptions, data, overrides)


def from_command_line(model: type[BaseModel], name: str, text: Any) -> Any:
    """A flag's text as the value its field takes: the command line's one conversion, made
    here (by the field's declared type) since validation itself never converts. Text that is
    not a valid value is left as is, so validation reports it with the field's name."""
    if not isinstance(text, str) or name not in model.model_fields:
        return text
    annotation = model.model_fields[name].annotation
    kinds = (annotation, *get_args(annotation))
    word = text.strip().lower()
    if type(None) in kinds and word in ("none", "null", ""):
        return None
    if bool in kinds:
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(word, text)
    if int in kinds and re.fullmatch(r"[-+]?[0-9]{1,30}", word):
        return int(word)
    if float in kinds or (int in kinds and typing.get_origin(annotation) is not tuple):  # "1.5" for an int: say it is a float
        try:
            return float(word)
        except ValueError:
            return text
    return text
