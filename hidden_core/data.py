"""Data sets as whole tensors, and batching/augmentation done on the training device.

`load_data` returns CPU tensors (picklable: a sweep puts each distinct split once into Ray's
object store). `DeviceData` moves them to the training device once; shuffling, batching,
uint8 -> normalized float, random crop and flip then run there in whole batches, with no
per-sample DataLoader in the hot loop (the airbench approach).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from hidden_core.config import DATASET_INFO, RunOptions, TrialConfig
from hidden_core.errors import ConfigError

# Standard per-channel statistics of the training sets (pixels in [0, 1]).
PIXEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "synthetic_cifar10": ((0.516, 0.519, 0.500), (0.214, 0.215, 0.212)),  # measured; tests/test_synthetic_data.py checks
}
TORCHVISION_CLASS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CROP_PADDING = 4


@dataclass
class DataSplits:
    """Train/validation/test tensors on the CPU. Images stored as uint8 carry pixel_mean and
    pixel_std and are normalized on the device, batch by batch (4x less memory to move)."""

    key: tuple
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None


def default_data_root() -> Path:
    return Path(os.environ.get("HIDDEN_DATA_ROOT", Path.home() / ".cache" / "hidden" / "data"))


def data_root(run: RunOptions) -> Path:
    return Path(run.data_root).expanduser() if run.data_root else default_data_root()


def check_data_available(config: TrialConfig, run: RunOptions) -> None:
    """Fail before any work when a torchvision data set cannot be found or fetched."""
    if not DATASET_INFO[config.dataset].torchvision:
        return
    root = data_root(run)
    if run.data_root and not root.is_dir():
        raise ConfigError([f"data_root: {root} does not exist; create it, or leave --data-root out to use {default_data_root()}"])
    if not run.download and not _torchvision_files_present(config.dataset, root):
        raise ConfigError([f"data_root: {config.dataset} is not in {root} and download is off; {download_hint(config.dataset, root)}"])


def download_hint(dataset: str, root: Path) -> str:
    return f"fetch it with `hidden data download {dataset} --data-root {root}` on a machine with internet access and copy {root} here"


def load_data(config: TrialConfig, run: RunOptions | None = None) -> DataSplits:
    run = run or RunOptions()
    check_data_available(config, run)
    root = str(data_root(run)) if DATASET_INFO[config.dataset].torchvision else ""
    # download means nothing for a data set generated offline: it must not split the cache (an
    # evaluator with download off would make MNIST-1D again, 6-13 s a process)
    return _load_cached(config.dataset, config.val_fraction, config.split_seed, root, run.download if root else False)


@functools.lru_cache(maxsize=4)
def _load_cached(dataset: str, val_fraction: float, split_seed: int, root: str, download: bool) -> DataSplits:
    x_train, y_train, x_test, y_test = _LOADERS[dataset](root, download) if root else _LOADERS[dataset]()
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(len(y_train), generator=generator)
    n_val = round(len(y_train) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    stats = PIXEL_STATS.get(dataset, (None, None))
    return DataSplits(
        key=(dataset, val_fraction, split_seed),
        x_train=x_train[train].contiguous(),
        y_train=y_train[train].contiguous(),
        x_val=x_train[val].contiguous(),
        y_val=y_train[val].contiguous(),
        x_test=x_test,
        y_test=y_test,
        num_classes=DATASET_INFO[dataset].num_classes,
        pixel_mean=stats[0],
        pixel_std=stats[1],
    )


def _mnist1d() -> tuple[torch.Tensor, ...]:
    """MNIST-1D as published (mnist1d.data.make_dataset with its default arguments), kept
    under the data root once generated (`generated_arrays`): generating it costs 2.3 s of CPU
    in every process that loads it (each sweep's driver, each `hidden train`), reading it back
    about 10 ms. The key is mnist1d's version (which fixes its default arguments): reading
    the file back imports neither mnist1d.data nor scipy (about 1 s of a driver's CPU, beside
    Ray's start, measured on this 2-core machine)."""
    from importlib.metadata import version

    def generate() -> dict[str, np.ndarray]:
        from mnist1d.data import get_dataset_args, make_dataset

        # make_dataset reseeds numpy's global RNG; keep the caller's state intact.
        state = np.random.get_state()
        try:
            data = make_dataset(get_dataset_args())  # the published data set, generated offline
        finally:
            np.random.set_state(state)
        return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}

    data = generated_arrays("mnist1d", f"{version('mnist1d')}-defaults", generate)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32).unsqueeze(1)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.int64)  # noqa: E731
    return as_x(data["x"]), as_y(data["y"]), as_x(data["x_test"]), as_y(data["y_test"])


def generated_arrays(name: str, key: str, generate: Any) -> dict[str, np.ndarray]:
    """The arrays `generate()` makes, read from ``<data root>/generated/<name>-<key>.npz`` when
    a process made them before (the key names the generator's version and arguments), else
    generated and written there (atomically: a reader never sees half a file). A file that
    cannot be read is made again; a data root that cannot be written only costs the time."""
    import tempfile

    from hidden_core import paths

    path = default_data_root() / paths.GENERATED_DATA_DIR / f"{name}-{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    except Exception:  # not there yet, or damaged (a truncated zip raises BadZipFile): make it again
        pass
    arrays = generate()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # on disk before it is named: a crash leaves the old name or the whole file
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return arrays


def _digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    # scikit-learn's digits has no test split: a fixed 20% (seed 0) is held out as test.
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = round(0.2 * len(y))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return x[train], y[train], x[test], y[test]


SYNTHETIC_SEED = 0  # one fixed data set everywhere, like a real one; splits still follow split_seed
SYNTHETIC_SIZES = (50_000, 10_000)  # CIFAR-10's train and test sizes
CLASS_SIGNAL = 0.35  # class field strength against clutter of strength 1: see _synthetic_cifar10


def _synthetic_cifar10(seed: int = SYNTHETIC_SEED, sizes: tuple[int, int] = SYNTHETIC_SIZES) -> tuple[torch.Tensor, ...]:
    """CIFAR-10-shaped uint8 images (N, 3, 32, 32) with 10 learnable classes, generated from
    `seed` with no download: for GPU throughput runs and tests where no real data can be
    fetched.

    A smooth field is 3x4x4 Gaussian noise upsampled bilinearly to 32x32, made left-right
    symmetric (random flips keep it), with unit pixel variance on average. Each class has one field; an
    image is its class field at strength CLASS_SIGNAL plus a fresh field of its own at
    strength 1 (the clutter, in the same low-frequency space as the class, so no filter
    removes it) plus white pixel noise. The classes overlap on purpose: a linear model
    learns well above chance (1/10) but far from 100%, so accuracy curves keep moving.
    Pixels: 128 + 48 x value, clipped to [0, 255] (PIXEL_STATS holds the resulting mean
    and std)."""
    generator = torch.Generator().manual_seed(seed)
    # bilinear upsampling 4x4 -> 32x32 and the left-right mirror are linear: one 16 x 1024
    # matrix, scaled so a field of N(0, 1) coarse values has unit pixel variance on average
    # (and by the 48 of the pixel scale); class field + clutter field is then one matmul
    basis = F.interpolate(torch.eye(16).view(16, 1, 4, 4), size=(32, 32), mode="bilinear", align_corners=False)
    basis = ((basis + basis.flip(-1)) / 2).view(16, 1024)
    basis = 48 * basis / basis.pow(2).sum(0).mean().sqrt()
    classes = torch.randn(10, 3, 16, generator=generator)
    out: list[torch.Tensor] = []
    for n in sizes:
        labels = torch.randint(0, 10, (n,), generator=generator)
        images = torch.empty(n, 3, 32, 32, dtype=torch.uint8)
        for start in range(0, n, 5000):  # in chunks: float copies of 60k images would be 700 MB
            y = labels[start : start + 5000]
            coarse = torch.randn(len(y), 3, 16, generator=generator).add_(classes[y], alpha=CLASS_SIGNAL)
            value = torch.randn(len(y), 3, 1024, generator=generator).mul_(48 * 0.5)  # white noise
            value.add_(coarse @ basis).add_(128.5).clamp_(0, 255)  # +0.5: the uint8 cast truncates
            images[start : start + len(y)] = value.view(len(y), 3, 32, 32).to(torch.uint8)
        out += [images, labels]
    return out[0], out[1], out[2], out[3]


def _torchvision_files_present(dataset: str, root: Path) -> bool:
    folder = {
        "cifar10": root / "cifar-10-batches-py",
        "cifar100": root / "cifar-100-python",
        "mnist": root / "MNIST" / "raw",
        "fashion_mnist": root / "FashionMNIST" / "raw",
    }[dataset]
    return folder.is_dir() and any(folder.iterdir())


def _torchvision(dataset: str, root: str, download: bool) -> tuple[torch.Tensor, ...]:
    import torchvision
    from filelock import FileLock

    cls = getattr(torchvision.datasets, TORCHVISION_CLASS[dataset])
    Path(root).mkdir(parents=True, exist_ok=True)
    # One download per node even when several trials start at once on it.
    lock = Path(root) / f".{dataset}.lock"
    with FileLock(str(lock)):
        try:
            parts = [cls(root, train=train, download=download) for train in (True, False)]
        except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError/URLError/OSError
            raise ConfigError([f"data_root: cannot load {dataset} from {root} ({err}); {download_hint(dataset, Path(root))}"]) from None
        finally:
            # Removed by its holder, before release, so the data folder holds only the data.
            # Safe: a waiter that then locks the removed file sees it unlinked (st_nlink 0)
            # and locks the path anew (filelock does; checked with three processes on filelock 4.3), so two never overlap.
            lock.unlink(missing_ok=True)
    out = []
    for part in parts:
        x = torch.as_tensor(np.asarray(part.data))
        x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)  # NHWC (CIFAR) / NHW (MNIST) -> NCHW
        out += [x.contiguous(), torch.as_tensor(np.asarray(part.targets), dtype=torch.int64)]
    return out[0], out[1], out[2], out[3]


_LOADERS = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "synthetic_cifar10": _synthetic_cifar10,
    **{name: functools.partial(_torchvision, name) for name in TORCHVISION_CLASS},
}


def download(dataset: str, root: Path) -> Path:
    """Fetch a torchvision data set into root (the `hidden data download` command)."""
    if not DATASET_INFO[dataset].torchvision:
        raise ConfigError([f"dataset: {dataset} is generated offline and needs no download"])
    _torchvision(dataset, str(root), True)
    return root


class DeviceData:
    """The splits on the training device, with batching and augmentation done there."""

    def __init__(self, splits: DataSplits, device: torch.device, augment: bool):
        self.device = device
        self.augment = augment
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        self.x_train, self.y_train = move(splits.x_train), move(splits.y_train)
        self.x_val, self.y_val = move(splits.x_val), move(splits.y_val)
        self.x_test, self.y_test = move(splits.x_test), move(splits.y_test)
        self.mean = self.std = None
        if splits.pixel_mean is not None:
            shape = (1, -1) + (1,) * (splits.x_train.dim() - 2)
            self.mean = torch.tensor(splits.pixel_mean, device=device).view(shape) * 255
            self.std = torch.tensor(splits.pixel_std, device=device).view(shape) * 255

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def train_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled batches (the last one may be smaller); uses the global RNG
        of the device so a restored RNG state replays the same epoch."""
        order = torch.randperm(self.n_train, device=self.device)
        for start in range(0, self.n_train, batch_size):
            idx = order[start : start + batch_size]
            x = self.x_train[idx]
            if self.augment:
                x = random_crop_flip(x, CROP_PADDING)
            yield self._prepare(x), self.y_train[idx]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x_all, y_all = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        for start in range(0, len(y_all), batch_size):
            yield self._prepare(x_all[start : start + batch_size]), y_all[start : start + batch_size]


def random_crop_flip(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-image random crop from a zero-padded copy plus random horizontal flip, for a whole
    NCHW batch at once (torchvision's RandomCrop(padding) + RandomHorizontalFlip, batched).

    One gather along the flattened padded image with an index computed per pixel position
    (shared by the channels): 6x faster on the CPU than indexing with four broadcast index
    tensors, and the same output for the same random draws."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = dx[:, None] + torch.arange(w, device=x.device)
    flip = torch.rand(n, device=x.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]
    index = (rows * (w + 2 * padding) + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)
