"""`make bench` cannot rot: every bench module's run() works in its tiny mode (a step or two
of tiny models; the numbers mean nothing and nothing here is timed), and the driver writes
a results file. The real figures come from `make bench` (benchmarks/RESULTS.md)."""

import pytest
import torch

from benchmarks import bench_data, bench_methods, run_all

pytestmark = pytest.mark.slow  # every test here runs real commands or benchmarks (tens of seconds): not the unit loop


def _check_rows(rows):
    assert rows
    for r in rows:
        assert set(r) == {"name", "value", "unit", "target", "met"}
        assert r["met"] in (True, False, None)
        assert (r["met"] is None) == (r["target"] == "")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_methods_tiny():
    rows = bench_methods.run("cpu", quick=True, tiny=True)
    _check_rows(rows)
    names = " ".join(r["name"] for r in rows)
    for part in ("edge_popup / dense", "reference sort / ours", "threshold on cpu", "scaling", "fraction of peak"):
        assert part in names


def test_reference_selection_keeps_the_same_weights_as_ours():
    """The benchmark's GetSubnet reimplementation is a fair stand-in: same mask as ours
    (k*n is an integer here, so the reference's int((1-k)n) and our round(kn) agree)."""
    step = bench_methods.Step("edge_popup", bench_methods.CONV4, batch=2, device=torch.device("cpu"), width=0.125)
    layers = bench_methods.weight_layers(step.model.net)
    ours = [layer.weight.detach().clone() for layer in layers]
    bench_methods.use_reference_selection(step)
    for layer, mine in zip(layers, ours, strict=True):
        if round(step.config.keep_fraction * mine.numel()) == int(step.config.keep_fraction * mine.numel()):
            assert torch.equal(layer.weight.detach(), mine)


def test_bench_data_tiny():
    rows = bench_data.run("cpu", quick=True, tiny=True)
    _check_rows(rows)
    assert any("ours /" in r["name"] for r in rows)


def test_run_all_tiny_writes_results(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    out.write_text("old\n<!-- device:cuda -->\nkept\n<!-- /device:cuda -->\n")
    run_all.main(["--tiny", "--only", "data,nonexistent", "--out", str(out)])
    text = out.read_text()
    assert "## CPU (tiny)" in text and "torch" in text and "images/s" in text
    assert "skipped: benchmarks/bench_nonexistent.py is not there" in text
    assert "<!-- device:cuda -->\nkept\n<!-- /device:cuda -->" in text  # the other device's section stays
    assert "== summary" in capsys.readouterr().out


# ---- the fast paths the benchmarks led to keep the behaviour bit for bit ----------------
def test_edge_popup_fused_mask_equals_the_plain_formula_on_every_selection():
    from hidden_core.methods import edge_popup

    torch.manual_seed(0)
    weight, scores = torch.randn(16, 8, 3, 3), torch.randn(16, 8, 3, 3, requires_grad=True)
    kept = 500
    saved = dict(edge_popup.SELECTION)
    try:
        for how in edge_popup.THRESHOLDS:
            edge_popup.SELECTION["cpu"] = how
            out = edge_popup._TopKMaskedWeight.apply(weight, scores, kept)
            (grad,) = torch.autograd.grad((out * torch.arange(out.numel()).view_as(out)).sum(), scores)
            plain_scores = scores.detach().clone().requires_grad_(True)
            magnitudes = plain_scores.abs()
            threshold = magnitudes.detach().flatten().sort().values[-kept]
            # the plain formula: straight through the mask, then through abs
            plain = weight * (magnitudes >= threshold) + (magnitudes - magnitudes.detach()) * weight
            (plain_grad,) = torch.autograd.grad((plain * torch.arange(out.numel()).view_as(out)).sum(), plain_scores)
            assert torch.equal(out, weight * (magnitudes.detach() >= threshold)), how
            assert torch.equal(grad, plain_grad), how
            assert (out != 0).sum() == kept
    finally:
        edge_popup.SELECTION.update(saved)


def test_edge_popup_works_on_a_channels_last_model():
    """training puts 2-D conv models in channels_last on CUDA: the scores then are not
    contiguous, and the mask must not depend on the memory format."""
    step = bench_methods.Step("edge_popup", bench_methods.CONV4, batch=2, device=torch.device("cpu"), width=0.125)
    x = step.x
    expected = step.model(x)
    model = step.model.to(memory_format=torch.channels_last)
    assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5)
    for layer in bench_methods.weight_layers(model.net):
        mask = bench_methods.parametrization_of(layer).mask()
        assert mask.sum() == bench_methods.parametrization_of(layer).kept


def test_bench_demo_tiny(ray_root, monkeypatch):
    """The one sweep of this file: bench_demo's tiny grid through common.run_sweep_cli (a real
    `hidden sweep run` process, its Ray start timed, its trial rows read back), FLOPs counted."""
    from benchmarks import bench_demo
    from hidden_core.tune.ray_setup import ROOT_VAR

    monkeypatch.setenv(ROOT_VAR, str(ray_root))  # the child's embedded Ray lives there
    rows = bench_demo.run(tiny=True)
    _check_rows(rows)
    by_name = {r["name"].split("): ", 1)[1]: r for r in rows}
    assert by_name["trials completed / in the store"]["value"] == "4 / 4"
    assert by_name["call wall / (training seconds / cores)"]["met"] in (True, False)
    assert by_name["training FLOPs (FlopCounterMode: train steps + evaluation forwards)"]["value"] > 0
