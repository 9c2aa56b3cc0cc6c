"""Training health: the flags a trial's recorded numbers raise, and their thresholds.

A pure function of four numbers the trial row holds (records.HEALTH_MEASURES plus
train_loss and the number of classes), so the analysis recomputes and explains a flag from
the trials table alone. Training (hidden_core/training.py) measures the numbers; this module
only judges them. Imports nothing of torch or Ray (the store and the analysis use it).

The measures (docs/methods.md, results/README.md):
- early_loss_peak: the largest minibatch training loss of the first epoch, over ln(classes)
  (1 = a network that predicts uniformly; the healthy trials measured peak at 1.0-5.5).
- dead_units_max: over the network's ReLU layers, the largest fraction of units (a Linear
  layer's features, a conv layer's channels) whose ReLU output is zero on every example of
  the held batch (training.HEALTH_BATCH examples) at the end of training, with the
  method's effective weights, in eval mode. A conv channel is dead when it is zero at every
  position of every example.
- train_acc: the final epoch's training accuracy (as trained: train mode, augmented).

Thresholds, and why (measured on MNIST-1D; the table is in docs/methods.md "Training health"):
- DEAD_UNITS_MAX 0.5: the dense 1-D Conv2 with Adam 0.003 (the recipe of issue 20's broken
  baseline) ends with 95% (width 2) to 100% (width 4) of a layer dead; the healthy trials
  measured (the same Conv2 at lr 0.003/width, widths 0.25 and 1, edge-popup, the MLPs) at
  most 40%. No bias and no normalization means a dead unit never comes back, so a layer
  more than half dead has lost most of its capacity.
- LOSS_STUCK_TOLERANCE 0.05 and TRAIN_CHANCE_FACTOR 1.5: a network whose layers all died
  outputs zero logits: loss exactly ln(classes), accuracy one class's share. The slowest
  healthy learner measured (a supermask MLP, 10 epochs: train acc 0.18, loss 0.94
  ln(classes)) stays just outside both: they catch a training that has not measurably
  moved from chance, nothing slower.
- LOSS_SPIKE_PEAK 10: the broken width-4 baseline peaks at 20-36x ln(classes), healthy
  trials at up to 5.5x (edge-popup's signed constants, the Conv2 at its fair lr). A spike
  alone need not fail a trial (the broken width 2 peaks at 8.6x and is caught by
  DEAD_UNITS), hence the high bar: it says the first steps were far too large, which is
  what kills units.

Unknown is not healthy: a measure that was not recorded (a pruned or failed trial, a row
written before these columns existed: null in the store) gives `None`, never "".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hidden_core import records  # its column names (DEAD_UNITS_MAX here is the threshold)

DEAD_UNITS = "dead_units"  # some layer's dead fraction above DEAD_UNITS_MAX
LOSS_STUCK = "loss_stuck"  # final training loss within LOSS_STUCK_TOLERANCE of ln(classes)
TRAIN_CHANCE = "train_chance"  # final train accuracy at most TRAIN_CHANCE_FACTOR / classes
LOSS_SPIKE = "loss_spike"  # early_loss_peak above LOSS_SPIKE_PEAK
FLAGS: tuple[str, ...] = (DEAD_UNITS, LOSS_SPIKE, LOSS_STUCK, TRAIN_CHANCE)  # sorted

DEAD_UNITS_MAX = 0.5
LOSS_STUCK_TOLERANCE = 0.05
TRAIN_CHANCE_FACTOR = 1.5
LOSS_SPIKE_PEAK = 10.0

HEALTHY = ""  # the health_flags of a trial that raised none


def _known(value: Any) -> bool:
    return value is not None and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def flag_list(*, early_loss_peak: float | None, dead_units_max: float | None, train_loss: float | None,
              train_acc: float | None, classes: int) -> list[str] | None:
    """The flags these numbers raise, sorted; None when one of them is unknown (None, NaN
    or infinite: a diverged trial's loss is non-finite, and its status says so already)."""
    values = (early_loss_peak, dead_units_max, train_loss, train_acc)
    if not all(_known(v) for v in values) or classes < 2:
        return None
    chance_loss = math.log(classes)
    raised = []
    if dead_units_max > DEAD_UNITS_MAX:
        raised.append(DEAD_UNITS)
    if early_loss_peak > LOSS_SPIKE_PEAK:
        raised.append(LOSS_SPIKE)
    if abs(train_loss / chance_loss - 1.0) <= LOSS_STUCK_TOLERANCE:
        raised.append(LOSS_STUCK)
    if train_acc <= TRAIN_CHANCE_FACTOR / classes:
        raised.append(TRAIN_CHANCE)
    return sorted(raised)


def health_flags(*, early_loss_peak: float | None, dead_units_max: float | None, train_loss: float | None,
                 train_acc: float | None, classes: int) -> str | None:
    """The trials column health_flags: "" when healthy, else the sorted flag names joined
    by commas; None when unknown (flag_list)."""
    raised = flag_list(early_loss_peak=early_loss_peak, dead_units_max=dead_units_max, train_loss=train_loss,
                       train_acc=train_acc, classes=classes)
    return None if raised is None else ",".join(raised)


def row_health_flags(row: Mapping[str, Any]) -> str | None:
    """health_flags recomputed from a trials row (its dataset gives the classes)."""
    from hidden_core.config import DATASET_INFO

    info = DATASET_INFO.get(row.get("dataset"))
    if info is None:
        return None
    return health_flags(early_loss_peak=row.get(records.EARLY_LOSS_PEAK), dead_units_max=row.get(records.DEAD_UNITS_MAX),
                        train_loss=row.get(records.TRAIN_LOSS), train_acc=row.get(records.TRAIN_ACC), classes=info.num_classes)


def parse_flags(value: str | None) -> list[str] | None:
    """A health_flags value as a list: [] healthy, None unknown (null in the store)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return [f.strip() for f in value.split(",") if f.strip()]
