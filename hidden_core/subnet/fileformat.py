"""The subnetwork file: one `safetensors` file per trial holding only what the trial learned.

safetensors, not pickle: reading a file never runs code. Layout (results/README.md and
docs/subnetworks.md document it for outside readers):

- tensors, named `<kind>/<module name>`:
    mask/<layer>     uint8, the layer's 0/1 mask bit-packed (numpy packbits, little bit order)
    sign/<layer>     uint8, the layer's effective signs bit-packed (1 = positive)
    <kind>/<layer>   any other per-layer state a method keeps (its file_tensors): bit-packed
                     when the `packed` header names it (bits per entry: 1 for a bool array,
                     ceil(log2 K) for an index among K values), else stored as it is
    logits/<layer>   float32, supermask's logits (beside mask/<layer>, the binary mask it evaluates)
    values/<layer>   the learned subset's values (learn_fraction), in the subset's flat order
    param/<name>     a learned parameter stored whole (dense weights, BN gamma/beta, readout)
    buffer/<name>    a buffer changed by training (BatchNorm running statistics)
- metadata (string -> string): `format` ("hidden-subnet"), `format_version`, `config` (the
  TrialConfig as JSON), `trial_id`, `method`, `shapes` (JSON: layer -> shape, for the packed
  tensors), `packed` (JSON: tensor name -> bits per entry; a file without it packs mask/ and
  sign/ in 1 bit), `status`, `metrics` (JSON), `run` (JSON: how it was evaluated), `hidden_version`,
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
import re
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hidden_core import paths
from hidden_core.config import TrialConfig, make_config
from hidden_core.errors import ConfigError

# Memory budget (docs/subnetworks.md): a file's tensors, and the network its config builds,
# must fit in this many GiB ($HIDDEN_SUBNET_MEMORY_GB) or the file is refused (exit 2) before
# anything is read or allocated. Headers are read up to MAX_HEADER_BYTES.
MEMORY_BUDGET_ENV = "HIDDEN_SUBNET_MEMORY_GB"
DEFAULT_MEMORY_BUDGET_GB = 4.0
MAX_HEADER_BYTES = 16 * 1024 * 1024
# safetensors dtype -> numpy dtype string (what _digest hashes)
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "|i1",
           "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "|u1", "BOOL": "|b1"}

FORMAT = "hidden-subnet"
FORMAT_VERSION = 1
SUFFIX = paths.SUBNET_SUFFIX
PACKED_KINDS = ("mask", "sign")  # packed in 1 bit in a file without a `packed` header
WHOLE_KINDS = ("param", "buffer")  # a named parameter or buffer stored whole (not a layer's state)
KIND_PATTERN = re.compile(r"[a-z][a-z_]{0,31}")  # a method's state kinds: mask, sign, logits, values, index, ...
MAX_PACKED_BITS = 16


class Packed(NamedTuple):
    """Unsigned integers to store in `bits` bits each (e.g. an index among K values in
    ceil(log2 K) bits)."""

    values: np.ndarray
    bits: int


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

    @property
    def packed(self) -> dict[str, int]:
        """tensor name -> bits per entry of its packed tensors."""
        return packed_bits(self.metadata, self.tensors)

    def unpacked(self, name: str) -> np.ndarray:
        """One tensor as the method stored it: a packed one unpacked to its layer's shape
        (bool for 1 bit, int64 for more), any other as it is."""
        value = self.tensors[name]
        bits = self.packed.get(name)
        if bits is None:
            return value
        layer = name.partition("/")[2]
        return unpack_bits(value, self.shapes[layer]) if bits == 1 else unpack_uints(value, self.shapes[layer], bits)

    def layers(self, kind: str) -> dict[str, np.ndarray]:
        """{layer name: tensor} of one kind; packed kinds come back unpacked (bool arrays for
        1 bit, int64 for more)."""
        prefix = kind + "/"
        order = {layer: i for i, layer in enumerate(self.shapes)}  # the network's order (safetensors sorts names)
        names = sorted((n for n in self.tensors if n.startswith(prefix)), key=lambda n: (order.get(n[len(prefix):], len(order)), n))
        out = {}
        for name in names:
            out[name[len(prefix):]] = self.unpacked(name)
        return out


def packed_bits(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> dict[str, int]:
    """tensor name -> bits per entry, from the `packed` header (mask/ and sign/ in 1 bit
    when a file has none)."""
    if "packed" in metadata:
        return dict(json.loads(metadata["packed"]))
    return {name: 1 for name in tensors if name.partition("/")[0] in PACKED_KINDS}


def pack_bits(bits: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(bits, dtype=bool).reshape(-1), bitorder="little")


def unpack_bits(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    return np.unpackbits(packed, count=count, bitorder="little").astype(bool).reshape(shape)


def pack_uints(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integers below 2**bits, `bits` bits each (least significant first), packed
    like pack_bits: n entries take ceil(n * bits / 8) bytes."""
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= 2**bits):
        raise ValueError(f"values outside [0, 2**{bits}) cannot be packed in {bits} bits")
    planes = (flat[:, None] >> np.arange(bits)) & 1
    return pack_bits(planes.astype(bool))


def unpack_uints(packed: np.ndarray, shape: tuple[int, ...], bits: int) -> np.ndarray:
    count = math.prod(shape)
    planes = np.unpackbits(packed, count=count * bits, bitorder="little").reshape(count, bits).astype(np.int64)
    return (planes << np.arange(bits)).sum(axis=1).reshape(shape)


def packed_size(shape: tuple[int, ...], bits: int) -> int:
    return (math.prod(shape) * bits + 7) // 8


def _digest(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in metadata.items() if k != "sha256"}, sort_keys=True).encode())
    for name in sorted(tensors):
        value = np.asarray(tensors[name], order="C")
        h.update(f"\n{name}|{value.dtype.str}|{list(value.shape)}\n".encode())
        h.update(value.reshape(-1).view(np.uint8))  # the bytes, without a copy of them
    return h.hexdigest()


def write_subnet_file(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write atomically (a reader or a crash never sees half a file); returns the path."""
    from safetensors.numpy import save_file

    bad = [n for n in tensors if not _known_kind(n.split("/", 1)[0])]
    if bad:
        raise ValueError(f"tensor names must start with a kind ({', '.join(WHOLE_KINDS)} or a lowercase word): {bad}")
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


def memory_budget_bytes() -> int:
    """The subnet memory budget in bytes ($HIDDEN_SUBNET_MEMORY_GB, default 4 GiB)."""
    text = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if not text:
        return int(DEFAULT_MEMORY_BUDGET_GB * 2**30)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError([f"{MEMORY_BUDGET_ENV}: {text!r} is not a positive number of GiB (e.g. 4 or 0.5)"])
    return int(value * 2**30)


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _check_header(path: str) -> None:
    """Bounded checks before safetensors reads anything: the header's length, its tensors'
    dtypes, shapes and offsets against the file's size, their total against the memory
    budget, and the sha256 over the file's bytes (streamed, 8 MiB at a time), so an edited,
    truncated or oversized file is refused without loading its tensors."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SubnetFormatError(path, f"not a readable safetensors file (truncated or corrupt?): {size} bytes")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise SubnetFormatError(path, f"not a readable safetensors file (truncated or corrupt?): header of {n:,} bytes "
                                          f"in a file of {size:,} (headers are read up to {MAX_HEADER_BYTES:,})")
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError) as err:
            raise SubnetFormatError(path, f"not a readable safetensors file (truncated or corrupt?): header: {err}") from None
        if not isinstance(header, dict):
            raise SubnetFormatError(path, "not a readable safetensors file (truncated or corrupt?): header is not an object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise SubnetFormatError(path, "not a readable safetensors file (truncated or corrupt?): metadata is not text")
        if metadata.get("format") != FORMAT:
            return  # read_subnet_file names the format problem
        total, spans = 0, {}
        for name, entry in header.items():
            try:
                dtype, shape, (start, end) = _DTYPES[entry["dtype"]], [int(d) for d in entry["shape"]], entry["data_offsets"]
                count = math.prod(shape)
            except (KeyError, TypeError, ValueError) as err:
                raise SubnetFormatError(path, f"tensor {name!r}: unreadable header entry ({brief_error(err)})") from None
            if min(shape, default=0) < 0 or not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
                raise SubnetFormatError(path, f"tensor {name!r}: negative shape or offsets in the header")
            if end - start != count * np.dtype(dtype).itemsize:
                raise SubnetFormatError(path, f"tensor {name!r}: {end - start:,} bytes for shape {shape} of {entry['dtype']}")
            total += end - start
            spans[name] = (dtype, shape, start, end)
        budget = memory_budget_bytes()
        if total > budget:
            raise SubnetFormatError(path, f"its tensors need {_gb(total)} ({total:,} bytes), more than the memory budget of {_gb(budget)} "
                                          f"(set {MEMORY_BUDGET_ENV} to raise it)")
        if 8 + n + total != size:
            raise SubnetFormatError(path, f"not a readable safetensors file (truncated or corrupt?): header declares {8 + n + total:,} bytes, file has {size:,}")
        h = hashlib.sha256()
        h.update(json.dumps({k: v for k, v in metadata.items() if k != "sha256"}, sort_keys=True).encode())
        for name in sorted(spans):
            dtype, shape, start, end = spans[name]
            h.update(f"\n{name}|{dtype}|{shape}\n".encode())
            f.seek(8 + n + start)
            left = end - start
            while left:
                chunk = f.read(min(left, 8 << 20))
                if not chunk:
                    raise SubnetFormatError(path, "not a readable safetensors file (truncated or corrupt?)")
                h.update(chunk)
                left -= len(chunk)
    if metadata.get("sha256") != h.hexdigest():
        raise SubnetFormatError(path, "sha256 does not match the contents: the file was edited or damaged after it was written")


def _known_kind(kind: str) -> bool:
    return kind in WHOLE_KINDS or KIND_PATTERN.fullmatch(kind) is not None


def brief_error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:100]


def read_subnet_file(path: str | os.PathLike[str]) -> SubnetFile:
    """Read and verify a file; any problem is a SubnetFormatError naming the file. The
    header, sizes, memory budget and sha256 are checked (`_check_header`) before a tensor is
    loaded."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SubnetFormatError(path, "no such file")
    try:
        _check_header(path)
    except OSError as err:
        raise SubnetFormatError(path, f"cannot be read: {err.strerror or err}") from None
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
    # the sha256 was checked on the file's bytes by _check_header, before loading
    try:
        config = make_config(json.loads(metadata["config"]))
        shapes = {k: tuple(v) for k, v in json.loads(metadata.get("shapes") or "{}").items()}
    except (KeyError, ValueError, TypeError) as err:
        raise SubnetFormatError(path, f"metadata 'config'/'shapes' unreadable: {err}") from None
    if metadata.get("trial_id") != config.trial_id:
        raise SubnetFormatError(path, f"trial_id {metadata.get('trial_id')!r} does not match its config (whose trial_id is {config.trial_id})")
    try:
        packed = packed_bits(metadata, tensors)
        assert isinstance(packed, dict) and all(isinstance(b, int) and not isinstance(b, bool) for b in packed.values())
    except (ValueError, TypeError, AssertionError):
        raise SubnetFormatError(path, f"metadata 'packed' is not a map of tensor names to bits per entry: {metadata.get('packed', '')[:80]!r}") from None
    for name in tensors:
        kind = name.partition("/")[0]
        if not _known_kind(kind):
            raise SubnetFormatError(path, f"tensor {name!r}: unknown kind {kind!r}; allowed: {', '.join(WHOLE_KINDS)} or a method's state kind (a lowercase word)")
    for name, bits in packed.items():
        kind, _, layer = name.partition("/")
        if name not in tensors or kind in WHOLE_KINDS:
            raise SubnetFormatError(path, f"metadata 'packed' names {name!r}, which is no packed layer tensor of the file")
        if not 1 <= bits <= MAX_PACKED_BITS:
            raise SubnetFormatError(path, f"tensor {name!r}: {bits} bits per entry; allowed: 1 to {MAX_PACKED_BITS}")
        if layer not in shapes:
            raise SubnetFormatError(path, f"tensor {name!r} has no shape in the header")
        value = tensors[name]
        expected = packed_size(shapes[layer], bits)
        if value.dtype != np.uint8 or value.shape != (expected,):
            raise SubnetFormatError(path, f"tensor {name!r}: {value.dtype}{list(value.shape)} does not hold the header's "
                                          f"shape {list(shapes[layer])} ({expected} packed bytes expected)")
    return SubnetFile(path=path, config=config, tensors=tensors, metadata=metadata, shapes=shapes)


def update_metadata(source: str | os.PathLike[str], target: str | os.PathLike[str], **updates: Any) -> Path:
    """Copy a verified file to `target` with metadata entries added or replaced (export)."""
    f = read_subnet_file(source)
    values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in updates.items() if v is not None}
    return write_subnet_file(target, f.tensors, {**f.metadata, **values})
