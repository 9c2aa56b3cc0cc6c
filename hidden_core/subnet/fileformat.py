"""The subnetwork file: one `safetensors` file per trial holding only what the trial learned.

safetensors, not pickle: reading a file never runs code. Layout (results/README.md and
docs/subnetworks.md document it for outside readers):

- tensors, named `<kind>/<module name>`:
    mask/<layer>     uint8, the layer's 0/1 mask bit-packed (numpy packbits, little bit order)
    sign/<layer>     uint8, the layer's effective signs bit-packed (1 = positive)
    logits/<layer>   float32, supermask's logits (beside mask/<layer>, the binary mask it evaluates)
    values/<layer>   the learned subset's values (learn_fraction), in the subset's flat order
    param/<name>     a learned parameter stored whole (dense weights, BN gamma/beta, readout)
    buffer/<name>    a buffer changed by training (BatchNorm running statistics)
- metadata (string -> string): `format` ("hidden-subnet"), `format_version`, `config` (the
  TrialConfig as JSON), `trial_id`, `method`, `shapes` (JSON: layer -> shape, for the packed
  tensors), `status`, `metrics` (JSON), `run` (JSON: how it was evaluated), `hidden_version`,
  `git_commit`, `torch_version`, optionally `sweep`, and `sha256`: a digest of every other
  metadata entry and every tensor (name, dtype, shape, bytes), so a truncated or edited file
  is refused instead of silently giving another network.

This module needs numpy and safetensors only (no torch): the mask analysis reads files with it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hidden_core import paths
from hidden_core.config import ConfigError, TrialConfig, make_config

FORMAT = "hidden-subnet"
FORMAT_VERSION = 1
SUFFIX = paths.SUBNET_SUFFIX
PACKED_KINDS = ("mask", "sign")
KINDS = ("mask", "sign", "logits", "values", "param", "buffer")


class SubnetFormatError(ConfigError):
    """A subnetwork file that cannot be trusted: unreadable, edited, or of another format."""

    def __init__(self, path: str | os.PathLike[str], problem: str):
        super().__init__([f"subnet file {os.fspath(path)}: {problem}"])


@dataclass
class SubnetFile:
    """A read (and verified) subnetwork file: numpy tensors and parsed metadata."""

    path: str
    config: TrialConfig
    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads(self.metadata.get("metrics") or "{}")

    @property
    def run(self) -> dict[str, Any]:
        return json.loads(self.metadata.get("run") or "{}")

    @property
    def status(self) -> str:
        return self.metadata.get("status", "")

    def layers(self, kind: str) -> dict[str, np.ndarray]:
        """{layer name: tensor} of one kind; packed kinds come back unpacked as bool arrays."""
        prefix = kind + "/"
        order = {layer: i for i, layer in enumerate(self.shapes)}  # the network's order (safetensors sorts names)
        names = sorted((n for n in self.tensors if n.startswith(prefix)), key=lambda n: (order.get(n[len(prefix):], len(order)), n))
        out = {}
        for name in names:
            layer = name[len(prefix):]
            value = self.tensors[name]
            out[layer] = unpack_bits(value, self.shapes[layer]) if kind in PACKED_KINDS else value
        return out


def pack_bits(bits: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(bits, dtype=bool).reshape(-1), bitorder="little")


def unpack_bits(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    return np.unpackbits(packed, count=count, bitorder="little").astype(bool).reshape(shape)


def _digest(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in metadata.items() if k != "sha256"}, sort_keys=True).encode())
    for name in sorted(tensors):
        value = np.asarray(tensors[name], order="C")
        h.update(f"\n{name}|{value.dtype.str}|{list(value.shape)}\n".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def write_subnet_file(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write atomically (a reader or a crash never sees half a file); returns the path."""
    from safetensors.numpy import save_file

    bad = [n for n in tensors if n.split("/", 1)[0] not in KINDS]
    if bad:
        raise ValueError(f"tensor names must start with one of {KINDS}: {bad}")
    metadata = {**{k: str(v) for k, v in metadata.items()}, "format": FORMAT, "format_version": str(FORMAT_VERSION)}
    tensors = {k: np.asarray(v, order="C") for k, v in tensors.items()}
    metadata["sha256"] = _digest(metadata, tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A subnet file is read like the Parquet files beside it (a shared store's colleagues),
    # so it gets the mode open() gives a new file, 0666 less the umask; safetensors (0.8)
    # and mkstemp both write 0600. The mode is taken from a file created that way.
    tmp = str(path.parent / f".subnet-{uuid.uuid4().hex}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_subnet_file(path: str | os.PathLike[str]) -> SubnetFile:
    """Read and verify a file; any problem is a SubnetFormatError naming the file."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SubnetFormatError(path, "no such file")
    try:
        with safe_open(path, framework="np") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as err:
        raise SubnetFormatError(path, f"not a readable safetensors file (truncated or corrupt?): {err}") from None
    if metadata.get("format") != FORMAT:
        raise SubnetFormatError(path, f"not a hidden subnetwork file (format {metadata.get('format')!r}, expected {FORMAT!r})")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise SubnetFormatError(path, f"format_version {version!r} is not supported; this hidden reads format_version {FORMAT_VERSION} "
                                      f"(written by hidden {metadata.get('hidden_version', '?')}; read it with that version)")
    if metadata.get("sha256") != _digest(metadata, tensors):
        raise SubnetFormatError(path, "sha256 does not match the contents: the file was edited or damaged after it was written")
    try:
        config = make_config(json.loads(metadata["config"]))
        shapes = {k: tuple(v) for k, v in json.loads(metadata.get("shapes") or "{}").items()}
    except (KeyError, ValueError, TypeError) as err:
        raise SubnetFormatError(path, f"metadata 'config'/'shapes' unreadable: {err}") from None
    if metadata.get("trial_id") != config.trial_id:
        raise SubnetFormatError(path, f"trial_id {metadata.get('trial_id')!r} does not match its config (whose trial_id is {config.trial_id})")
    for name, value in tensors.items():
        kind, _, layer = name.partition("/")
        if kind not in KINDS:
            raise SubnetFormatError(path, f"tensor {name!r}: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
        if kind in PACKED_KINDS:
            if layer not in shapes:
                raise SubnetFormatError(path, f"tensor {name!r} has no shape in the header")
            expected = (math.prod(shapes[layer]) + 7) // 8
            if value.dtype != np.uint8 or value.shape != (expected,):
                raise SubnetFormatError(path, f"tensor {name!r}: {value.dtype}{list(value.shape)} does not hold the header's "
                                              f"shape {list(shapes[layer])} ({expected} packed bytes expected)")
    return SubnetFile(path=path, config=config, tensors=tensors, metadata=metadata, shapes=shapes)


def update_metadata(source: str | os.PathLike[str], target: str | os.PathLike[str], **updates: Any) -> Path:
    """Copy a verified file to `target` with metadata entries added or replaced (export)."""
    f = read_subnet_file(source)
    values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in updates.items() if v is not None}
    return write_subnet_file(target, f.tensors, {**f.metadata, **values})
