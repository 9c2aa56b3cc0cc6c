"""A vectorized cell's trainable (hidden_core/tune/cells.py) without Ray: the per-seed
pruning decisions the driver hands back through each seed's checkpoint folder, and a cell
resumed after a driver that was killed right after deciding to prune a seed."""

from __future__ import annotations

import json

import pytest
from ray import tune

from hidden_core.config import RunOptions, make_config
from hidden_core.data import load_data
from hidden_core.records import REPORT_EPOCH, REPORT_FINAL
from hidden_core.tune import report_codec
from hidden_core.tune.cells import cell_trainable, is_pruned, write_prune_decision
from hidden_core.vectorized import train_seeds

RUN = RunOptions(device="cpu", threads=1, checkpoint_every_s=0)  # every epoch, as a sweep with a pruner runs (spec.run_options)


def _cell(tmp_path, seeds):
    config = make_config(method="edge_popup", model="mlp", mlp_units=16, epochs=3, batch_size=512)
    entries = [{"seed": s, "trial_id": config.model_copy(update={"seed": s}).trial_id, "checkpoint_dir": str(tmp_path / f"ck{s}"),
                "subnet_path": str(tmp_path / f"{s}.safetensors")} for s in seeds]
    trial = {"trial": config.model_dump(mode="json"), "run": RUN.model_dump(mode="json"), "seeds": entries, "report_every_s": 0}
    return config, entries, trial


def _run(monkeypatch, trial, data, decide=lambda report: None):
    reports = []

    def report(metrics):  # the driver: it sees the report, may decide, then the trial goes on
        # its fields as the driver reads them (report_codec: all but kind and val_acc in one JSON payload)
        metrics = {**json.loads(metrics[report_codec.PAYLOAD]), **{k: v for k, v in metrics.items() if k != report_codec.PAYLOAD}}
        reports.append(metrics)
        decide(metrics)

    monkeypatch.setattr(tune, "report", report)
    cell_trainable(trial, data, {"node": "here"}, str)
    return reports


def test_a_pruned_seed_stops_the_others_go_on(tmp_path, monkeypatch):
    config, entries, trial = _cell(tmp_path, [0, 1, 2])
    data = load_data(config, RUN)

    def prune_seed_1_at_epoch_1(report):
        if report["kind"] == REPORT_EPOCH and report["epoch"] == 1:
            write_prune_decision(entries[1]["checkpoint_dir"], 1)

    reports = _run(monkeypatch, trial, data, prune_seed_1_at_epoch_1)
    assert [r["kind"] for r in reports] == [REPORT_EPOCH, REPORT_EPOCH, REPORT_EPOCH, REPORT_FINAL]
    ids = [e["trial_id"] for e in entries]
    assert [sorted(r["seeds"]) for r in reports[:3]] == [sorted(ids), sorted([ids[0], ids[2]]), sorted([ids[0], ids[2]])]
    final = reports[-1]["seeds"]
    assert final[ids[1]]["status"] == "pruned" and [row["epoch"] for row in final[ids[1]]["epochs"]] == [1]
    assert final[ids[0]]["status"] == final[ids[2]]["status"] == "completed"
    # each seed as if alone: the cell's results equal train_seeds of the others
    alone = train_seeds(config, [0, 2], RUN, data=data)
    assert [final[ids[0]]["epochs_run"], final[ids[2]]["epochs_run"]] == [r.epochs_run for r in alone] == [3, 3]
    # files: the ended seeds' subnets; the pruned seed's is made later from its checkpoint
    assert (tmp_path / "0.safetensors").exists() and (tmp_path / "2.safetensors").exists() and not (tmp_path / "1.safetensors").exists()
    assert (tmp_path / "ck1" / "checkpoint.pt").exists() and is_pruned(entries[1]["checkpoint_dir"])


def test_resume_after_a_driver_killed_right_after_a_prune_decision(tmp_path, monkeypatch):
    config, entries, trial = _cell(tmp_path, [0, 1])
    data = load_data(config, RUN)

    class Killed(BaseException):  # like the SIGKILL of a driver: nothing in the trial handles it
        pass

    def killed_after_epoch_1(report):
        if report["kind"] == REPORT_EPOCH:
            write_prune_decision(entries[0]["checkpoint_dir"], 1)  # decided, then the driver died
            raise Killed

    with pytest.raises(Killed):
        _run(monkeypatch, trial, data, killed_after_epoch_1)
    reports = _run(monkeypatch, trial, data)
    ids = [e["trial_id"] for e in entries]
    assert all(ids[0] not in r["seeds"] for r in reports if r["kind"] == REPORT_EPOCH)  # not trained, not reported again
    first = reports[0]
    assert first["epoch"] == 2 and [row["epoch"] for row in first["seeds"][ids[1]]["epochs"]] == [1, 2]  # epoch 1 re-sent
    assert first["seeds"][ids[1]]["resumed_from"] == 1
    final = reports[-1]["seeds"]
    assert final[ids[0]]["status"] == "pruned" and [row["epoch"] for row in final[ids[0]]["epochs"]] == [1]
    assert final[ids[1]]["status"] == "completed" and final[ids[1]]["epochs_run"] == 3
    (reference,) = train_seeds(config, [1], RUN, data=data)
    assert [row["train_loss"] for row in final[ids[1]]["epochs"]] == pytest.approx([r.train_loss for r in reference.history], abs=1e-5)


@pytest.mark.parametrize(("every_s", "report_every_s", "saved_epochs"), [
    (0.0, 3600.0, [1, 2, 3]),  # every epoch (as a pruner asks) though the cell reports only at its end
    (3600.0, 0.0, [3]),  # the default cadence's point: not at every report, only after the last epoch
])
def test_checkpoints_follow_the_run_option_checkpoint_every_s_not_the_reports(tmp_path, monkeypatch, every_s, report_every_s, saved_epochs):
    """A vectorized cell checkpoints on `checkpoint_every_s`, as a trial alone does
    (training.train), whatever `report_every_s` says."""
    from hidden_core.vectorized import SeedStack

    config, entries, trial = _cell(tmp_path, [0, 1])
    trial = {**trial, "run": {**trial["run"], "checkpoint_every_s": every_s}, "report_every_s": report_every_s}
    saved: list[int] = []
    original = SeedStack.save_checkpoint

    def counting(self, index, seed, folder, device):
        saved.append(len(seed.history))
        return original(self, index, seed, folder, device)

    monkeypatch.setattr(SeedStack, "save_checkpoint", counting)
    _run(monkeypatch, trial, load_data(config, RUN))
    assert saved == [e for e in saved_epochs for _ in entries]


def test_a_cells_ended_seeds_carry_their_controls_scored_as_the_pass_scores_them(tmp_path, monkeypatch):
    """With a controls plan (controls_pass.worker_plan), each seed that ended scores its
    controls in the cell's worker from its own subnet file: the rows the pass after the
    trials computes (seeded by trial and draw); a pruned seed carries none (the pass scores
    it once the driver has made its file)."""
    from hidden_core.subnet.controls import method_draws
    from hidden_core.subnet.fileformat import read_subnet_file
    from hidden_core.tune.controls_pass import ControlsWork, score_trial

    config, entries, trial = _cell(tmp_path, [0, 1, 2])
    trial["controls"] = {"draws": 2, "device": "cpu"}
    data = load_data(config, RUN)

    def prune_seed_1_at_epoch_1(report):
        if report["kind"] == REPORT_EPOCH and report["epoch"] == 1:
            write_prune_decision(entries[1]["checkpoint_dir"], 1)

    final = _run(monkeypatch, trial, data, prune_seed_1_at_epoch_1)[-1]["seeds"]
    assert report_codec.CONTROLS not in final[entries[1]["trial_id"]]
    for entry in (entries[0], entries[2]):
        carried = report_codec.controls_in(final[entry["trial_id"]])
        assert carried["problem"] is None and carried["device"] == "cpu" and carried["seconds"] > 0
        path = entry["subnet_path"]
        # the pass's way: the stored file read again, the data loaded by the evaluator itself
        alone = score_trial(ControlsWork(entry["trial_id"], "", "edge_popup", method_draws("edge_popup", 2)), path,
                            lambda path=path: read_subnet_file(path), "cpu", None)
        assert carried["rows"] == alone.rows and len(alone.rows) == 7  # found + 3 controls x 2 draws
