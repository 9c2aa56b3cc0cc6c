"""`make bench`'s vectorized-seeds module cannot rot: its run() works in its tiny mode (a
step or two of tiny models; the numbers mean nothing and nothing here is timed)."""

import pytest
import torch

from benchmarks import bench_vectorized

pytestmark = pytest.mark.slow  # every test here runs real commands or benchmarks (tens of seconds): not the unit loop


@pytest.fixture(autouse=True)
def _threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_vectorized_tiny():
    rows = bench_vectorized.run("cpu", quick=True, tiny=True)
    assert rows
    for r in rows:
        assert set(r) == {"name", "value", "unit", "target", "met"}
        assert (r["met"] is None) == (r["target"] == "")
    names = " ".join(r["name"] for r in rows)
    for part in ("vectorized / one seed per trial", "peak RSS", "on the path / dense today", "Conv4 width", "both vectorized"):
        assert part in names


@pytest.mark.slow
def test_bench_vectorized_sweep_tiny():
    """The sweep part (two real sweeps on an embedded Ray) runs and says what it measured."""
    rows = bench_vectorized.sweep(device=torch.device("cpu"), seeds=2, epochs=1, rounds=1, widths=(1.0,))
    names = [r["name"] for r in rows]
    assert any("one trial per seed: trials/hour" in n for n in names) and any("vectorized cells: trials/hour" in n for n in names)
    assert rows[-1]["unit"] == "x" and rows[-1]["value"] > 0
