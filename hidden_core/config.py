"""Typed, frozen, validated configuration of one trial, and its content-hash identity.

This module imports neither torch nor Ray: the store, the analysis and the sweep-spec
validation use it on machines that only have pandas.

Two objects, on purpose:
- ``TrialConfig`` is the science: everything that can change a result. Its canonical form
  is hashed into ``trial_id``.
- ``RunOptions`` is the execution: device, data location, checkpoint folder. Changing it
  must never rename a trial, so it is not part of the hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MethodName = Literal[
    "dense",
    "edge_popup",
    "supermask",
    "free_prune",
    "sign_flip",
    "bn_only",
    "learn_fraction",
    "random_features",
]
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

METHODS: tuple[str, ...] = get_args(MethodName)
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
METHOD_FIELDS: dict[str, frozenset[str]] = {
    "dense": frozenset(),
    "edge_popup": frozenset({"keep_fraction", "scale_fan"}),
    "supermask": frozenset({"scale_fan", "supermask_init_keep"}),
    "free_prune": frozenset({"penalty"}),
    "sign_flip": frozenset({"penalty"}),
    "bn_only": frozenset({"train_output_layer"}),
    "learn_fraction": frozenset({"keep_fraction"}),
    "random_features": frozenset(),
}
METHOD_SPECIFIC_FIELDS: frozenset[str] = frozenset().union(*METHOD_FIELDS.values())
DIST_FIELDS: dict[str, frozenset[str]] = {
    "asymmetric_constant": frozenset({"dist_p"}),
    "binary": frozenset({"dist_scale"}),
    "uniform": frozenset({"dist_low", "dist_high"}),
    "normal": frozenset({"dist_mean", "dist_std"}),
}
DIST_SPECIFIC_FIELDS: frozenset[str] = frozenset().union(*DIST_FIELDS.values())


class TrialConfig(BaseModel):
    """Everything that defines one trial's result. Frozen; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # what is learned
    method: MethodName = "dense"
    keep_fraction: float = Field(0.5, description="fraction of weights KEPT (edge_popup) or LEARNED (learn_fraction), in (0, 1]")
    penalty: float = Field(0.0, description="free_prune/sign_flip: alpha * mean(mask or kept sign) per layer; -1 = MinPruning/MinFlipping")
    train_output_layer: bool = Field(False, description="bn_only: also learn the output layer")
    supermask_init_keep: float = Field(0.5, description="supermask: initial keep probability sigmoid(logit)")
    # the frozen weights
    weight_dist: WeightDist = "kaiming_normal"
    scale_fan: bool = Field(False, description="masked methods: use fan_in*k (the kept fan) in the distribution's scale")
    dist_p: float = Field(0.5, description="asymmetric_constant: P(+)")
    dist_scale: float = Field(1.0, description="binary: magnitude of every weight")
    dist_low: float = -1.0
    dist_high: float = 1.0
    dist_mean: float = 0.0
    dist_std: float = 1.0
    # the network
    model: ModelName = "mlp"
    width: float = Field(1.0, description="multiplier on every hidden layer's units/channels, > 0")
    depth: int | None = Field(None, description="hidden layers (mlp), conv layers (convnet, even), 6n+2 (resnet); None = model default")
    mlp_units: int = Field(100, description="mlp: hidden units per layer at width 1")
    norm: NormName | None = Field(None, description="None = batchnorm for resnet and bn_only, else none")
    # the data
    dataset: DatasetName = "mnist1d"
    val_fraction: float = Field(0.1, description="fraction of the training set held out for validation, in [0, 1)")
    split_seed: int = Field(0, description="seed of the train/validation split (fixed across trial seeds)")
    augment: bool | None = Field(None, description="random crop (pad 4) + horizontal flip; None = on for CIFAR")
    # the training
    seed: int = 0
    epochs: int = 30
    batch_size: int = 128
    optimizer: OptimizerName = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: ScheduleName = "cosine"
    step_milestones: tuple[int, ...] = Field((), description="step schedule: epochs where lr is multiplied by step_gamma")
    step_gamma: float = 0.1
    label_smoothing: float = 0.0

    # ---- validation -------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _resolve_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        model = data.get("model", "mlp")
        method = data.get("method", "dense")
        if data.get("depth") is None and model in DEFAULT_DEPTH:
            data["depth"] = DEFAULT_DEPTH[model]
        if data.get("norm") is None:
            data["norm"] = "batchnorm" if model == "resnet" or method == "bn_only" else "none"
        if data.get("augment") is None:
            data["augment"] = data.get("dataset", "mnist1d") in ("cifar10", "cifar100", "synthetic_cifar10")
        if isinstance(data.get("step_milestones"), str):
            text = data["step_milestones"].strip()
            data["step_milestones"] = tuple(int(v) for v in text.split(",") if v.strip()) if text else ()
        return data

    @field_validator("keep_fraction", "supermask_init_keep")
    @classmethod
    def _in_unit_interval(cls, v: float) -> float:
        if not (0.0 < v <= 1.0) or math.isnan(v):
            raise ValueError(f"{v} is not in (0, 1]")
        return v

    @field_validator("width", "lr", "dist_scale", "dist_std")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0 or math.isinf(v):
            raise ValueError(f"{v} must be > 0")
        return v

    @field_validator("epochs", "batch_size", "mlp_units")
    @classmethod
    def _positive_int(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"{v} must be >= 1")
        return v

    @field_validator("val_fraction")
    @classmethod
    def _val_fraction(cls, v: float) -> float:
        if not (0.0 <= v < 1.0):
            raise ValueError(f"{v} is not in [0, 1)")
        return v

    @field_validator("dist_p")
    @classmethod
    def _probability(cls, v: float) -> float:
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"{v} is not in [0, 1]")
        return v

    @field_validator("momentum", "weight_decay", "label_smoothing", "step_gamma")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        if not v >= 0:
            raise ValueError(f"{v} must be >= 0")
        return v

    @model_validator(mode="after")
    def _check_combination(self) -> TrialConfig:
        depth_problem = model_depth_problem(self.model, self.depth, self.dataset)
        if depth_problem:
            raise ValueError(f"depth: {depth_problem}")
        if self.method == "bn_only" and self.norm != "batchnorm":
            raise ValueError("norm: method bn_only learns BatchNorm parameters; it needs norm 'batchnorm', not 'none'")
        if self.augment and not DATASET_INFO[self.dataset].is_image:
            raise ValueError(f"augment: random crop and flip need an image data set; {self.dataset} is not one")
        if self.dist_low >= self.dist_high:
            raise ValueError(f"dist_low: {self.dist_low} must be < dist_high ({self.dist_high})")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing: {self.label_smoothing} is not in [0, 1)")
        return self

    # ---- identity -----------------------------------------------------------------------
    def _used_fields(self) -> frozenset[str]:
        return METHOD_FIELDS[self.method] | DIST_FIELDS.get(self.weight_dist, frozenset())

    def normalized(self) -> TrialConfig:
        """The same trial with every method/distribution option it does not read reset to its
        default: two configs that differ only there are the same trial."""
        unused = (METHOD_SPECIFIC_FIELDS | DIST_SPECIFIC_FIELDS) - self._used_fields()
        if not unused:
            return self
        defaults = _field_defaults()
        return self.model_copy(update={name: defaults[name] for name in unused})

    def canonical(self) -> dict[str, Any]:
        """The trial's identity: normalized, with fields at their default left out (so a new
        option with a default never renames old trials)."""
        defaults = _field_defaults()
        out: dict[str, Any] = {}
        for name, value in sorted(self.normalized().model_dump().items()):
            if _normalize(value) != _normalize(defaults[name]):
                out[name] = _normalize(value)
        return out

    @property
    def trial_id(self) -> str:
        payload = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def dataset_info(self) -> DatasetInfo:
        return DATASET_INFO[self.dataset]


class RunOptions(BaseModel):
    """How and where a trial runs. Not part of the trial's identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    data_root: str | None = Field(None, description="folder of torchvision data sets (default $HIDDEN_DATA_ROOT or ~/.cache/hidden/data)")
    download: bool = Field(True, description="download torchvision data sets that are missing")
    checkpoint_dir: str | None = Field(None, description="save a checkpoint every epoch here and resume from it")
    amp: bool = Field(True, description="bf16 autocast on CUDA")
    channels_last: bool = Field(True, description="channels_last memory format for 2-D conv models on CUDA")
    compile: bool = Field(False, description="torch.compile the model")
    eval_batch_size: int = 2048
    threads: int | None = Field(None, description="torch CPU threads (None = torch default)")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"{v!r} is not one of auto, cpu, cuda, cuda:N, mps")
        return v


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
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
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


class ConfigError(ValueError):
    """Bad user input. `problems` are 'path: message' lines, every one of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def format_validation_error(err: ValidationError, prefix: str = "") -> list[str]:
    """pydantic errors as 'path: message' lines naming the value and what is allowed."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            allowed = ", ".join(TrialConfig.model_fields)
            msg = f"unknown key; allowed keys: {allowed}"
        elif e["type"] == "literal_error":
            msg = f"{e.get('input')!r} is not allowed; {msg[0].lower()}{msg[1:]}"
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
