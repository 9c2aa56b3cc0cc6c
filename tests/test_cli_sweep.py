"""`hidden sweep run` and its --dry-run agree on what this machine refuses (cli/sweep_cmd.py)."""

import pytest

from hidden_core.cli import main
from hidden_core.tune import ray_setup

GPU_SPEC = "name: g\nbase: {epochs: 1, width: 0.25}\ngrid: {seed: [0, 1]}\nresources: {cpu: 1, gpu: 0.25}\n"


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(ray_setup, "local_nodes", lambda gpu_wanted: [{"CPU": 2.0, "GPU": 0.0}])


def test_dry_run_refuses_a_gpu_spec_on_a_machine_without_one_as_the_run_does(tmp_path, capsys, no_gpu):
    spec = tmp_path / "g.yaml"
    spec.write_text(GPU_SPEC)
    results = tmp_path / "results"
    assert main(["sweep", "run", str(spec), "--dry-run", "--results", str(results)]) == 2
    dry = capsys.readouterr()
    assert "trials planned" in dry.out  # the plan is still shown
    assert "resources.gpu: 0.25 GPUs per trial, but this machine" in dry.err
    assert main(["sweep", "run", str(spec), "--results", str(results), "--quiet"]) == 2  # refused before Ray starts
    run = capsys.readouterr()
    assert run.err == dry.err
    assert not (results / "g").exists()


def test_with_an_address_the_dry_run_leaves_the_check_to_the_cluster(tmp_path, capsys, no_gpu):
    spec = tmp_path / "g.yaml"
    spec.write_text(GPU_SPEC)
    assert main(["sweep", "run", str(spec), "--dry-run", "--address", "auto", "--results", str(tmp_path / "r")]) == 0
    assert main(["sweep", "run", str(spec), "--dry-run", "--skip-resource-check", "--results", str(tmp_path / "r")]) == 0
