"""What `--address` says when nothing answers there (hidden_core/cluster.py)."""

import socket

import pytest

from hidden_core.cluster import ClusterError, check_cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_loopback_address_is_named_as_given():
    """Ray dials a loopback address as the node's IP (192.0.2.2 on the reporter's machine);
    the error named only that one, which the user never typed."""
    port = _free_port()
    with pytest.raises(ClusterError) as err:
        check_cluster(f"127.0.0.1:{port}", timeout=2)
    assert f"cannot reach a Ray cluster at 127.0.0.1:{port}" in str(err.value)
