"""Memory bounded by the memory budget, not by the input (issue 24, point 6): a subnet
file's header, sizes and sha256 are checked before a tensor is loaded, its declared tensors
and its config's network against HIDDEN_SUBNET_MEMORY_GB before anything is allocated or
built; each refusal is exit 2 with the numbers."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest

from hidden_core.cli import main as cli_main
from hidden_core.config import make_config
from hidden_core.subnet.fileformat import (
    FORMAT,
    MEMORY_BUDGET_ENV,
    read_subnet_file,
    write_subnet_file,
)


def _sparse_file(path, tensor_bytes: int) -> None:
    """A safetensors file with a valid hidden header declaring one uint8 tensor of
    `tensor_bytes` (sparse on disk: nothing is written but the header)."""
    config = make_config(method="edge_popup", seed=0, width=0.3)
    metadata = {"format": FORMAT, "format_version": "1", "config": config.model_dump_json(), "trial_id": config.trial_id,
                "shapes": json.dumps({"net.0": [tensor_bytes * 8]}), "sha256": "0" * 64}
    header = json.dumps({"__metadata__": metadata, "mask/net.0": {"dtype": "U8", "shape": [tensor_bytes], "data_offsets": [0, tensor_bytes]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + tensor_bytes)


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_file_over_the_memory_budget_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    path = tmp_path / "big.safetensors"
    _sparse_file(path, 2 * 2**30)  # 2 GiB declared, valid header
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1")
    from hidden_core.subnet.fileformat import SubnetFormatError

    def read():
        with pytest.raises(SubnetFormatError):
            read_subnet_file(path)

    assert _peak(read) < 1 * 2**20
    assert cli_main(["subnet", "eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert "its tensors need 2.00 GiB (2,147,483,648 bytes), more than the memory budget of 1.00 GiB" in err and MEMORY_BUDGET_ENV in err


def test_a_file_within_budget_with_a_wrong_digest_is_refused_without_loading_it(tmp_path):
    path = tmp_path / "sparse.safetensors"
    _sparse_file(path, 256 * 2**20)
    from hidden_core.subnet.fileformat import SubnetFormatError

    def read():
        with pytest.raises(SubnetFormatError, match="sha256 does not match"):
            read_subnet_file(path)

    assert _peak(read) < 32 * 2**20  # streamed in 8 MiB pieces, never the 256 MiB


@pytest.mark.parametrize("lie", ["short", "long"])
def test_offsets_that_disagree_with_the_file_size_are_refused(tmp_path, lie):
    from hidden_core.subnet.fileformat import SubnetFormatError

    path = tmp_path / "f.safetensors"
    _sparse_file(path, 1024)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size + (-10 if lie == "short" else 10))
    with pytest.raises(SubnetFormatError, match="truncated or corrupt"):
        read_subnet_file(path)


def test_a_forged_config_is_measured_before_the_network_is_built(tmp_path, monkeypatch, capsys):
    config = make_config(method="edge_popup", seed=0, model="mlp", width=64, depth=40)
    path = tmp_path / "forged.safetensors"
    write_subnet_file(path, {"mask/net.0": np.zeros(1, np.uint8)},
                      {"config": config.model_dump_json(), "trial_id": config.trial_id, "method": "edge_popup", "shapes": json.dumps({"net.0": [8]})})
    from hidden_core.subnet.fileformat import SubnetFormatError
    from hidden_core.subnet.state import materialize

    f = read_subnet_file(path)
    with pytest.raises(SubnetFormatError):
        materialize(f)  # imports torch first: measured below, warm
    def build():
        with pytest.raises(SubnetFormatError):
            materialize(f)

    assert _peak(build) < 16 * 2**20  # measured on the meta device: the GiBs are never allocated
    assert cli_main(["subnet", "eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert "parameters, about" in err and "more than the memory budget of 4.00 GiB" in err and "width 64, depth 40" in err


def test_the_budget_variable_is_checked(tmp_path, monkeypatch, capsys):
    path = tmp_path / "f.safetensors"
    _sparse_file(path, 1024)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "lots")
    assert cli_main(["subnet", "eval", str(path)]) == 2
    assert "HIDDEN_SUBNET_MEMORY_GB: 'lots' is not a positive number of GiB" in capsys.readouterr().err
