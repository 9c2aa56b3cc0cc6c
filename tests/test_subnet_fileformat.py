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
