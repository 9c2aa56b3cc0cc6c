"""Data pipeline: images per second delivered to the model, with augmentation.

    python -m benchmarks.bench_data [--device cpu|cuda] [--quick] [--threads N]

Ours: hidden_core.data.DeviceData with the whole (CIFAR-shaped, uint8) training set on the
device; shuffling, random crop (padding 4) + horizontal flip and normalization done there
in whole batches. The reference: torchvision's DataLoader over the same in-memory arrays
(HWC uint8, as torchvision.datasets.CIFAR10 keeps them), with per-sample
RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, batch 128, with 0
workers and with one worker per core (persistent; its prefetched batches slightly favour
it). On CUDA the reference's batches are moved to the device (pinned memory), as a training
loop must. The faster reference is the one compared with. No disk is touched.

`run(device, quick, tiny=False)` returns report rows for benchmarks.run_all.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch

from benchmarks.common import (
    format_rows,
    info,
    interleaved,
    median,
    paired_ratio,
    row,
    set_threads,
    synchronizer,
)
from hidden_core.data import PIXEL_STATS, DataSplits, DeviceData

NOTES = """\
- Ours runs in the training process on one intra-op thread; the 2-worker torchvision loader
  uses both cores (and is the slower one whenever other jobs hold a core).
- random_crop_flip was 3.3 ms per batch of 128 (indexing with four broadcast index tensors);
  one gather over the flattened padded images with a per-pixel index shared by the
  channels makes it 0.5 ms, with the same output for the same random draws. Ours went from
  about 19,000 to 24,000-31,000 images/s on this machine (the rest: row gather, uint8 ->
  float, normalize, shuffling).
"""

TARGET = 3.0
BATCH = 128


def cifar_shaped(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images, HWC (torchvision's in-memory CIFAR layout), and labels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def ours(images: np.ndarray, labels: np.ndarray, device: torch.device) -> Callable[[int], None]:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # NCHW, as load_data gives it
    y = torch.from_numpy(labels).long()
    empty_x, empty_y = x[:0], y[:0]
    mean, std = PIXEL_STATS["cifar10"]
    splits = DataSplits(("bench",), x, y, empty_x, empty_y, empty_x, empty_y, 10, mean, std)
    loader = DeviceData(splits, device, augment=True)
    return _puller(lambda: loader.train_batches(BATCH))


class _InMemoryCIFAR(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10.__getitem__ without the files."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels.tolist(), transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def torchvision_loader(images: np.ndarray, labels: np.ndarray, device: torch.device, workers: int) -> Callable[[int], None]:
    from torchvision import transforms

    mean, std = PIXEL_STATS["cifar10"]
    transform = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        _InMemoryCIFAR(images, labels, transform), batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0, pin_memory=cuda
    )

    def epoch() -> Iterator:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return _puller(epoch)


def _puller(new_epoch: Callable[[], Iterator]) -> Callable[[int], None]:
    """pull(n): take n batches, starting new epochs as needed; touch each batch's data."""
    state = {"it": new_epoch()}

    def pull(n: int) -> None:
        for _ in range(n):
            try:
                x, y = next(state["it"])
            except StopIteration:
                state["it"] = new_epoch()
                x, y = next(state["it"])
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)

    return pull


def run(device: str = "cpu", quick: bool = False, tiny: bool = False) -> list[dict]:
    dev = torch.device(device)
    n_images, batches, rounds = (512, 2, 1) if tiny else (10_000, 10, 5) if quick else (50_000, 25, 9)
    images, labels = cifar_shaped(n_images)
    workers = 0 if tiny else min(os.cpu_count() or 1, 8)
    pulls = {"ours": ours(images, labels, dev), "torchvision (0 workers)": torchvision_loader(images, labels, dev, 0)}
    if workers:
        pulls[f"torchvision ({workers} workers)"] = torchvision_loader(images, labels, dev, workers)
    candidates = {name: (lambda p=pull: p(batches)) for name, pull in pulls.items()}
    times = interleaved(candidates, warmup=1, rounds=rounds, budget_s=None, sync=synchronizer(dev))
    rate = {name: BATCH * batches / median(t) for name, t in times.items()}
    reference = max((n for n in rate if n != "ours"), key=rate.get)
    speedup = paired_ratio(times, reference, "ours")
    rows = [info(f"data: {name} images/s (median)", round(r), "img/s") for name, r in rate.items()]
    rows.append(row(f"data: ours / {reference}, images/s delivered ({dev.type})", round(speedup, 2), "x", f">= {TARGET:g}x", speedup >= TARGET))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_threads(args.threads)
    rows = run(args.device, args.quick, args.tiny)
    print(format_rows(rows))
    return 0 if all(r["met"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
