"""The subnet file's on-disk details (hidden_core/subnet/fileformat.py)."""

import os
import stat

import numpy as np
import pytest
from safetensors import safe_open

from hidden_core.subnet.fileformat import write_subnet_file


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_subnet_file_follows_the_umask_as_the_parquet_files_do(tmp_path, umask):
    """mkstemp's 0600 kept a shared store's colleagues from reading the subnet files."""
    old = os.umask(umask)
    try:
        path = write_subnet_file(tmp_path / "subnets" / "t.safetensors", {"mask/fc": np.ones(3, dtype=np.uint8)}, {"k": "v"})
        with open(tmp_path / "beside.parquet", "wb"):  # how pyarrow creates a Parquet file
            pass
    finally:
        os.umask(old)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "beside.parquet").stat().st_mode)
    with safe_open(str(path), "np") as f:  # a whole, readable file
        assert f.metadata()["k"] == "v"
    assert [p.name for p in path.parent.iterdir()] == ["t.safetensors"]  # no temporary left


def test_the_documented_file_sizes_are_what_a_trial_writes(tmp_path):
    """docs/subnetworks.md once gave 3,395 B for the MLP edge_popup file a trial wrote at
    4,011 B (3,883 B since the header holds only its own method's options). Header digits
    vary a little with the metrics and provenance: 2% tolerance."""
    import re
    from pathlib import Path

    from hidden_core.config import make_config, make_run_options
    from hidden_core.methods import build_model
    from hidden_core.subnet.state import save_subnet
    from hidden_core.trial import train

    table = (Path(__file__).resolve().parents[1] / "docs" / "subnetworks.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| edge_popup, free_prune, sign_flip |"))
    conv4_doc, mlp_doc = (int(re.search(r"([\d,]+) B", cell).group(1).replace(",", "")) for cell in row.split("|")[2:4])

    mlp = tmp_path / "mlp.safetensors"
    result = train(make_config(method="edge_popup", dataset="mnist1d", epochs=1), make_run_options(save_subnet=str(mlp)))
    conv4 = make_config(method="edge_popup", model="convnet", depth=4, dataset="cifar10")
    conv4_file = save_subnet(tmp_path / "conv4.safetensors", build_model(conv4), conv4, result=result)
    assert abs(mlp.stat().st_size - mlp_doc) <= 0.02 * mlp_doc, (mlp.stat().st_size, mlp_doc)
    assert abs(conv4_file.stat().st_size - conv4_doc) <= 0.02 * conv4_doc, (conv4_file.stat().st_size, conv4_doc)


def test_the_header_config_holds_only_its_own_methods_options_and_rebuilds_the_same_trial():
    from hidden_core.catalog import OPTIONS
    from hidden_core.config import make_config
    from hidden_core.subnet.state import header_config

    config = make_config(method="lottery_ticket", prune_rate=0.3)
    header = header_config(config)
    assert {k for k in header if k in OPTIONS} == {k for k, (m, _) in OPTIONS.items() if m == "lottery_ticket"}
    assert make_config(header) == config and make_config(header).trial_id == config.trial_id
