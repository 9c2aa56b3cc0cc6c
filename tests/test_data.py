"""Data sets: offline ones for real, torchvision ones from small files written here in each
data set's own on-disk format; device-side batching and augmentation."""

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from hidden_core.config import ConfigError, make_config, make_run_options
from hidden_core.data import DeviceData, load_data, random_crop_flip


def test_mnist1d_is_the_published_data_set_with_a_seeded_validation_split():
    splits = load_data(make_config(dataset="mnist1d"))
    assert splits.x_train.shape == (3600, 1, 40) and splits.x_val.shape == (400, 1, 40)
    assert splits.x_test.shape == (1000, 1, 40)
    assert set(splits.y_train.unique().tolist()) == set(range(10))
    other = load_data(make_config(dataset="mnist1d", val_fraction=0.25, split_seed=1))
    assert len(other.y_val) == 1000
    # the split depends on split_seed only, and train/val never overlap
    rows = lambda x: {tuple(r.flatten().tolist()) for r in x}  # noqa: E731
    assert not rows(splits.x_train) & rows(splits.x_val)


def test_digits_has_a_fixed_test_split():
    splits = load_data(make_config(dataset="digits", val_fraction=0.1))
    assert splits.x_train.shape[1:] == (1, 8, 8)
    assert len(splits.y_test) == round(0.2 * 1797)
    assert len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 1797


def _write_cifar(root, name, n_train=20, n_test=10, classes=10):
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        label_key = "labels"
        files = {f"data_batch_{i}": n_train // 5 for i in range(1, 6)} | {"test_batch": n_test}
        meta = ("batches.meta", {"label_names": [f"c{i}" for i in range(classes)]})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        label_key = "fine_labels"
        files = {"train": n_train, "test": n_test}
        meta = ("meta", {"fine_label_names": [f"c{i}" for i in range(classes)]})
    for fname, n in files.items():
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: rng.integers(0, classes, n).tolist()}
        with open(folder / fname, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return folder


def _write_idx(root, folder_name, n_train=12, n_test=6):
    raw = root / folder_name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return images, labels


@pytest.fixture
def no_md5(monkeypatch):
    """The files written here cannot match torchvision's published md5 sums."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_through_torchvision(tmp_path, no_md5, name, classes):
    _write_cifar(tmp_path, name, classes=classes)
    splits = load_data(make_config(dataset=name, val_fraction=0.25), make_run_options(data_root=str(tmp_path), download=False))
    assert splits.x_train.shape == (15, 3, 32, 32) and splits.x_train.dtype == torch.uint8
    assert splits.x_val.shape[0] == 5 and splits.x_test.shape == (10, 3, 32, 32)
    assert splits.num_classes == classes and splits.pixel_mean is not None


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_through_torchvision(tmp_path, name, folder):
    images, labels = _write_idx(tmp_path, folder)
    splits = load_data(make_config(dataset=name, val_fraction=0.0), make_run_options(data_root=str(tmp_path), download=False))
    assert splits.x_test.shape == (6, 1, 28, 28)
    assert torch.equal(splits.x_test[:, 0], torch.as_tensor(images))  # test split kept in file order
    assert torch.equal(splits.y_test, torch.as_tensor(labels, dtype=torch.int64))


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="data_root: .*nope does not exist"):
        load_data(make_config(dataset="cifar10"), make_run_options(data_root=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="hidden data download cifar10"):
        load_data(make_config(dataset="cifar10"), make_run_options(data_root=str(tmp_path), download=False))


def test_random_crop_flip_is_a_shifted_window_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = random_crop_flip(x, 2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_happens_about_half_the_time():
    torch.manual_seed(0)
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(2000, 1, 4, 4).contiguous()
    out = random_crop_flip(x, 0)
    flipped = (out[:, 0, 0, 0] == 3).float().mean().item()
    assert 0.45 < flipped < 0.55


def test_device_data_batches_cover_the_epoch_and_normalize():
    splits = load_data(make_config(dataset="mnist1d"))
    loader = DeviceData(splits, torch.device("cpu"), augment=False)
    seen = torch.cat([y for _, y in loader.train_batches(500)])
    assert len(seen) == loader.n_train and torch.equal(seen.sort().values, splits.y_train.sort().values)


def test_download_leaves_no_lock_file_behind(tmp_path, capsys):
    from hidden_core.cli import main

    _write_idx(tmp_path, "MNIST")  # present: torchvision's download finds it and fetches nothing
    assert main(["data", "download", "mnist", "--data-root", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST"]
    with pytest.raises(ConfigError):  # a failed load removes it too
        load_data(make_config(dataset="fashion_mnist"), make_run_options(data_root=str(tmp_path), download=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST"]


def test_mnist1d_is_generated_once_per_data_root_and_read_back_identical(tmp_path, monkeypatch):
    """Generating MNIST-1D costs 2.3 s of CPU in every process that loads it; the first one
    keeps it under the data root (<root>/generated/, keyed by mnist1d's version and its
    arguments), later ones read the same arrays back. A damaged file is made again; a root
    that cannot be written only costs the time."""
    import mnist1d.data

    from hidden_core import data

    made = []
    generate = mnist1d.data.make_dataset
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: made.append(1) or generate(args))
    monkeypatch.setenv("HIDDEN_DATA_ROOT", str(tmp_path / "root"))
    first = data._mnist1d()
    again = data._mnist1d()
    assert len(made) == 1 and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    (kept,) = (tmp_path / "root" / "generated").iterdir()
    assert kept.name.startswith("mnist1d-") and kept.suffix == ".npz"
    assert [p.name for p in kept.parent.iterdir()] == [kept.name]  # no temporary file left
    whole = kept.read_bytes()
    kept.write_bytes(b"not an npz")
    assert all(torch.equal(a, b) for a, b in zip(data._mnist1d(), first, strict=True)) and len(made) == 2
    kept.write_bytes(whole[: len(whole) // 2])  # truncated (a zip without its end: BadZipFile)
    assert all(torch.equal(a, b) for a, b in zip(data._mnist1d(), first, strict=True)) and len(made) == 3
    assert kept.read_bytes() == whole
    monkeypatch.setenv("HIDDEN_DATA_ROOT", str(kept))  # a file, not a folder: nothing can be written under it
    assert all(torch.equal(a, b) for a, b in zip(data._mnist1d(), first, strict=True)) and len(made) == 4


def test_mnist1d_read_back_imports_neither_mnist1d_data_nor_scipy(tmp_path):
    """A process that finds MNIST-1D kept under the data root never imports the generator
    (mnist1d.data, and scipy with it: about 1 s of CPU in each sweep's driver)."""
    import subprocess
    import sys

    env = {**os.environ, "HIDDEN_DATA_ROOT": str(tmp_path)}
    code = ("import sys; from hidden_core import data; x = data._mnist1d(); "
            "print(len(x[0]), 'mnist1d.data' in sys.modules, 'scipy' in sys.modules)")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert first[0] == again[0] == "4000" and first[1] == "True"  # the first process generated it
    assert again[1:] == ["False", "False"]
