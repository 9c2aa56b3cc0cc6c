"""The trial-record vocabulary: one place for the words a trial's record is written in.

Training produces epoch records and a result, the Tune side turns them into reports and
store rows, the store validates and dedupes rows by status, and the analysis reads them.
All of them import these names instead of spelling the lists out again.

Imports nothing of the project, Ray or torch: every layer can use it.
"""

from __future__ import annotations

from hidden_core.catalog import CATALOG

# -- trial statuses ------------------------------------------------------------------------
COMPLETED = "completed"  # ran every epoch
PRUNED = "pruned"  # stopped by its cell's pruner
DIVERGED = "diverged"  # its training loss went non-finite
FAILED = "failed"  # raised, or its worker was lost more often than max_failures
STATUSES: tuple[str, ...] = (COMPLETED, PRUNED, FAILED, DIVERGED)  # the order of status columns
# A final trial is never re-run; a failed one is, on the next run. A failed row never
# supersedes a final row of the same trial (store dedupe).
FINAL_STATUSES: frozenset[str] = frozenset({COMPLETED, PRUNED, DIVERGED})
# Statuses the analysis fits: pruned and failed trials stopped early, and a diverged trial's
# accuracy describes a broken run (one diverged point moved a fitted e_inf by orders of
# magnitude); the analysis counts those rows in its report instead.
ANALYZED_STATUSES: tuple[str, ...] = (COMPLETED,)

# -- per-epoch fields (training.EpochRecord, the store's epochs table) ----------------------
# The metric names every layer writes (a row's column, a report's field, a result's field);
# spelled here only (tests/test_records.py fails on one of them written as a literal elsewhere).
VAL_ACC = "val_acc"
TEST_ACC = "test_acc"
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
EPOCH_MEASURES: tuple[str, ...] = (TRAIN_LOSS, TRAIN_ACC, VAL_ACC, TEST_ACC, "lr", "seconds")
# lottery_ticket only (None otherwise): which training of the trial an epoch belongs to, the
# epoch of that training's schedule, and the density of its mask (docs/lottery.md)
DENSITY = "density"  # the fraction of weights a trial's network uses (a lottery level's mask density)
LEVEL_FIELDS: tuple[str, ...] = ("level", "branch", "level_epoch", DENSITY)
EPOCH = "epoch"  # an epoch row's number, from 1
EPOCH_FIELDS: tuple[str, ...] = (EPOCH, *EPOCH_MEASURES, *LEVEL_FIELDS)
# Epoch rows that describe the trial itself (every method's rows, branch None, and a lottery
# ticket's own levels), not a lottery control branch: what pruning compares and a pruned
# trial's row summarises.
# The branch column's values: a lottery level trains its ticket, scores the supermask (its
# mask on the initial weights) and, with lottery_controls, trains reinit and random_prune.
TICKET, SUPERMASK, REINIT, RANDOM_PRUNE = "ticket", "supermask", "reinit", "random_prune"
BRANCHES: tuple[str, ...] = (TICKET, SUPERMASK, REINIT, RANDOM_PRUNE)  # the order a level trains them
TRIAL_BRANCHES: tuple[str | None, ...] = (None, TICKET)

# -- per-trial metrics (training.TrialResult, the store's trials table) ---------------------
# Training health (hidden_core/health.py judges them; docs/methods.md "Training health"):
# early_loss_peak: the first epoch's largest minibatch loss / ln(classes); dead_units_max: the
# largest fraction of a ReLU layer's units dead on the held batch at the end of training;
# health_flags: "" healthy, else the sorted names of the flags raised (health.FLAGS), comma
# separated. Null (None) for a trial that did not finish (pruned, failed) and in a row
# written before these columns existed: unknown, never healthy by default.
EARLY_LOSS_PEAK = "early_loss_peak"
DEAD_UNITS_MAX = "dead_units_max"
HEALTH_FLAGS = "health_flags"
HEALTH_MEASURES: tuple[str, ...] = (EARLY_LOSS_PEAK, DEAD_UNITS_MAX)  # float columns
HEALTH_FIELDS: tuple[str, ...] = (*HEALTH_MEASURES, HEALTH_FLAGS)
BEST_VAL_ACC = "best_val_acc"
BEST_EPOCH = "best_epoch"
TEST_ACC_AT_BEST_VAL = "test_acc_at_best_val"
EPOCHS_RUN = "epochs_run"
DIVERGED_EPOCH = "diverged_epoch"  # the epoch whose training loss went non-finite (None otherwise)
PARAMS_TOTAL = "params_total"
PARAMS_ACTIVE = "params_active"
PARAMS_LEARNED = "params_learned"
CHANGED_FRACTION = "changed_fraction"
TRAIN_SECONDS = "train_seconds"
SAMPLES_PER_SECOND = "samples_per_second"
DISABLED_FEATURES = "disabled_features"
METRIC_FIELDS: tuple[str, ...] = (
    VAL_ACC, TEST_ACC, BEST_VAL_ACC, BEST_EPOCH, TEST_ACC_AT_BEST_VAL, TRAIN_LOSS, TRAIN_ACC,
    EPOCHS_RUN, DIVERGED_EPOCH, PARAMS_TOTAL, PARAMS_ACTIVE, PARAMS_LEARNED, CHANGED_FRACTION,
    DENSITY, TRAIN_SECONDS, SAMPLES_PER_SECOND, DISABLED_FEATURES, *HEALTH_FIELDS,
)
# Each metric's type, float unless named here: the store's trials columns are made from it and
# training.TrialResult's annotations agree with it (tests/test_store_schema.py).
METRIC_TYPES: dict[str, type] = {name: float for name in METRIC_FIELDS} | {HEALTH_FLAGS: str} | dict.fromkeys(
    (BEST_EPOCH, EPOCHS_RUN, DIVERGED_EPOCH, PARAMS_TOTAL, PARAMS_ACTIVE, PARAMS_LEARNED), int)
# The trials column naming a final trial's subnet file, relative to the results root
# ('<sweep>/subnets/<trial_id>.safetensors', paths.subnet_file_name); null without a file.
SUBNET_FILE = "subnet_file"
# Where a trial's run happened (both the result and the reports carry them).
RUN_INFO_FIELDS: tuple[str, ...] = ("node", "started_at", "device", "torch_version")

# -- the metric that selects and prunes -----------------------------------------------------
SELECTION_METRIC = VAL_ACC  # select on validation; report test
# The one test metric every table, plot and report shows by default: the test accuracy at the
# epoch of best validation accuracy (the final epoch's `test_acc` only when asked for, labelled).
TEST_METRIC = TEST_ACC_AT_BEST_VAL
SELECTION_MODE = "max"

# -- report kinds (trainable -> driver; hidden_core/tune/report_codec.py writes and reads them) --
# Values no other word of the project shares (not the epoch column, the failed status or a
# checkpoint's "final" key), so a literal equal to one is a report kind and nothing else.
REPORT_EPOCH = "epoch_report"  # the latest epoch's metrics, plus every epoch not reported yet
REPORT_FINAL = "final_report"  # train returned: its result and whole history
REPORT_FAILED = "failed_report"  # train raised: the error text and the history so far
REPORT_KINDS: tuple[str, ...] = (REPORT_EPOCH, REPORT_FINAL, REPORT_FAILED)

# -- controls of a found subnetwork (hidden_core/subnet/controls.py; the spec's subnet_controls) --
# Methods whose found state has controls, and the kind of state (mask or signs) they control
# (their registry lines' `controls`, hidden_core/catalog.py).
CONTROLLED_METHODS: dict[str, str] = {name: info.controls for name, info in CATALOG.items() if info.controls}
# The stored subnetwork (its final state) re-evaluated exactly as its controls are (BatchNorm
# statistics re-estimated the same way): the like-for-like reference of the controls.
FOUND = "found"
CONTROLS: tuple[str, ...] = ("random", "shuffled", "fresh", "initial")  # initial: sign_flip only
DRAWN_CONTROLS: tuple[str, ...] = ("random", "shuffled", "fresh")  # drawn `draws` times; found and initial once
CONTROL_MEASURES: tuple[str, ...] = (VAL_ACC, TEST_ACC)


def control_column(control: str, measure: str = TEST_ACC) -> str:
    """The trials column of a control's mean over its draws, e.g. control_random_test_acc."""
    return f"control_{control}_{measure}"


CONTROL_COLUMNS: tuple[str, ...] = tuple(control_column(c, m) for c in (FOUND, *CONTROLS) for m in CONTROL_MEASURES)
CONTROL_DRAWS_COLUMN = "control_draws"  # draws behind each drawn control's mean
