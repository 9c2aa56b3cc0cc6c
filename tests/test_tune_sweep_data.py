"""hidden_core/tune/sweep_data.py: the driver's data of a sweep. data_key is the key the
trainable looks its splits up by (DataSplits.key); check_data refuses a missing torchvision
data set before anything starts (once per data set); load_data loads each distinct
(dataset, val_fraction, split_seed) once and hands it back under that key."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hidden_core import data as data_module
from hidden_core.config import RunOptions, make_config
from hidden_core.errors import ConfigError
from hidden_core.tune.sweep_data import check_data, data_key, load_data

RUN = RunOptions(device="cpu").model_dump(mode="json")


def test_data_key_is_the_key_of_the_splits_it_names():
    """The trainable finds its data by data_key(config) among load_data's keys: they must be
    the key DataSplits carries, with the config's own types normalized (1 == 1.0)."""
    config = make_config(dataset="digits", val_fraction=0.2, split_seed=3)
    assert data_key(config.model_dump()) == ("digits", 0.2, 3)
    assert data_key({"dataset": "digits", "val_fraction": 1 / 5, "split_seed": "3"}) == ("digits", 0.2, 3)
    assert data_module.load_data(config).key == data_key(config.model_dump())


def test_load_data_loads_each_distinct_key_once(monkeypatch):
    """Seeds, widths and methods share one split; another val_fraction or split_seed is its own."""
    loads = []
    real = data_module.load_data
    monkeypatch.setattr(data_module, "load_data", lambda config, run=None: loads.append(data_key(config.model_dump())) or real(config, run))
    configs = [make_config(dataset="digits", method=m, seed=s, width=w) for m in ("dense", "edge_popup") for s in (0, 1) for w in (0.5, 1.0)]
    configs += [make_config(dataset="digits", split_seed=1), make_config(dataset="digits", val_fraction=0.2)]
    out = load_data(configs, RUN)
    assert sorted(out) == sorted({data_key(c.model_dump()) for c in configs}) and len(out) == 3
    assert sorted(loads) == sorted(out)  # once per key, not once per trial
    for key, splits in out.items():
        assert splits.key == key


def test_check_data_refuses_a_missing_torchvision_data_set_before_loading(tmp_path, monkeypatch):
    """Download off and no files: a ConfigError naming data_root, raised by the check alone
    (nothing is loaded); offline data sets (digits) pass without looking at a folder."""
    run = RunOptions(device="cpu", download=False, data_root=str(tmp_path)).model_dump(mode="json")
    monkeypatch.setattr(data_module, "_load_cached", lambda *a: pytest.fail("check_data must not load data"))
    check_data([make_config(dataset="digits")], run)
    with pytest.raises(ConfigError) as err:
        check_data([make_config(dataset="digits"), make_config(dataset="cifar10", model="convnet")], run)
    assert any(p.startswith("data_root: cifar10 is not in") for p in err.value.problems), err.value.problems


def test_check_data_asks_once_per_data_set(monkeypatch):
    """Once per torchvision data set; data sets generated offline need no look."""
    asked = []
    monkeypatch.setattr(data_module, "check_data_available", lambda config, run: asked.append(config.dataset))
    configs = [make_config(dataset="cifar10", model="convnet", seed=s) for s in range(3)] + [make_config(dataset="digits")]
    check_data(configs + [make_config(dataset="cifar100", model="convnet"), make_config(dataset="mnist1d")], RUN)
    assert asked == ["cifar10", "cifar100"]


def test_check_data_of_generated_data_sets_does_not_import_torch():
    """The driver checks the data before Ray starts, in its main thread: importing torch there
    (hidden_core.data, seconds) held Ray's start back, while the data thread that loads the
    splits imports it anyway, in parallel with Ray's start (runner._run)."""
    code = textwrap.dedent(
        """
        import sys
        from hidden_core.config import RunOptions, make_config
        from hidden_core.tune.sweep_data import check_data

        check_data([make_config(dataset="mnist1d"), make_config(dataset="digits")], RunOptions(device="cpu").model_dump(mode="json"))
        print("torch imported:", "torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torch imported: False" in out.stdout
