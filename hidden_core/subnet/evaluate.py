"""Re-evaluate a stored subnetwork on its validation and test splits, the way training did
(same splits, eval batch size, autocast and memory format on the same device), so the
accuracies match the stored ones exactly."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from hidden_core.config import make_run_options
from hidden_core.data import DataSplits, DeviceData, load_data
from hidden_core.records import TEST_ACC, VAL_ACC
from hidden_core.subnet.fileformat import SubnetFile
from hidden_core.training import evaluate, resolve_device


class Evaluator:
    """The file's data on one device, ready to score any network built from the file."""

    def __init__(self, f: SubnetFile, device: str = "auto", data_root: str | None = None, data: DataSplits | None = None):
        self.file = f
        stored = f.run
        self.run = make_run_options(device=device, data_root=data_root, download=False, **{k: stored[k] for k in ("amp", "channels_last", "eval_batch_size") if k in stored})
        self.device = resolve_device(self.run.device)
        splits = data if data is not None else load_data(f.config, self.run)
        self.loader = DeviceData(splits, self.device, augment=bool(f.config.augment))
        cfg = f.config
        self.channels_last = self.run.channels_last and self.device.type == "cuda" and cfg.model != "mlp" and len(cfg.dataset_info.input_shape) == 3
        self.amp = self.run.amp and self.device.type == "cuda"

    def prepare(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def accuracy(self, model: nn.Module) -> dict[str, float]:
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext()
        val, test = evaluate(self.prepare(model), self.loader, ("val", "test"), self.run.eval_batch_size, self.channels_last, autocast)
        return {VAL_ACC: val, TEST_ACC: test}

    @torch.no_grad()
    def recalibrate_batchnorm(self, model: nn.Module, batch_size: int) -> nn.Module:
        """Re-estimate BatchNorm running statistics on the training split (a control's
        weights differ from the ones the stored statistics were measured on). No-op without
        BatchNorm. Deterministic: the batch order comes from a fixed seed."""
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return model
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the epoch
        model.train()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(0)
            for x, _ in self.loader.train_batches(batch_size):
                model(x)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        return model.eval()
