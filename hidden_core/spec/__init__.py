"""Sweep specs: one YAML file -> a validated, frozen SweepSpec -> the planned trials.

A spec names a sweep and says what to cross::

    name: quickstart
    base:   {dataset: mnist1d, model: mlp, epochs: 20}      # any TrialConfig field
    grid:                                                  # lists, crossed fully
      method: [dense, {method: edge_popup, optimizer: adam, lr: 0.003}]
      width: [0.25, 1, 4]
      seed: [0, 1]
    search:                                                # optional, Optuna distributions
      lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
    samples_per_cell: 8
    pruner: {type: median, n_startup_trials: 3}            # pruning on val_acc
    resources: {cpu: 1, gpu: 0.25}                         # per trial; fractions share a device
    max_concurrent: 8                                      # default: as many as the cluster holds
    max_failures: 1                                        # retries after a lost worker/node
    report_every_s: 1.0                                    # see below
    vectorize: auto                                        # seeds | none | auto: see below
    run: {amp: true}                                       # RunOptions (not device/threads)
    loggers: [mlflow, tensorboard, wandb]                  # trackers: spec/loggers.py, tune/trackers.py

A grid value may be a mapping: it sets its axis' field and may set companion fields with it
(``{method: edge_popup, lr: 0.003}``), which is how one sweep gives each method its own
optimizer settings without crossing them.

Identity: every trial's config is normalized (options its method or weight distribution
does not read are reset, so ``dense`` crossed with five k values is one trial) and named by
``TrialConfig.trial_id``. A *cell* is a grid point without its seed and without searched
parameters; ``cell_id`` hashes that, and pruning compares a trial only with its own cell.

With ``search``, every grid point (seed included) gets ``samples_per_cell`` sampled trials;
the points of one cell (its seeds) share one Optuna study.

``report_every_s``: a trial reports to Tune (metrics of every epoch since its last report)
at most this often, and after its last epoch; 0 reports every epoch. Pruning decides at
reports, so 0 gives the finest pruning on short epochs, while the default spares sub-second
epochs a driver round trip each. Checkpoints have their own cadence, the run option
``checkpoint_every_s`` (``run: {checkpoint_every_s: 0}`` for every epoch; default 30 s, every
epoch with a pruner).

``vectorize``: ``seeds`` trains the seeds of one grid cell (trials equal but for ``seed``)
as one Tune trial running ``hidden_core.vectorized.train_seeds``; every seed stays its own
trial to every reader (its row, epochs, checkpoint, subnet file, pruning decision).
``none``: one Tune trial per seed. ``auto`` (the default): ``seeds`` for MLP cells (where it
was measured to win; benchmarks/bench_vectorized.py) of a sweep without a pruner (seeds
trained together finish together, so a median or percentile pruner would stop none),
``none`` otherwise. Cells it cannot
vectorize (a lottery ticket, ``search``, ``compile``, ``loggers``: a tracker run per seed,
one seed left) run one trial per seed either way; ``--dry-run`` lists which trials run
together. Not part of any trial's identity.

Validation reports every problem at once (up to ``MAX_PROBLEMS``), each with its path in the
file (``grid.keep_fraction[2]: 1.5 is not in (0, 1]``), as a ``ConfigError``. This package
imports neither torch nor Ray nor Optuna, nor anything of hidden_core.tune.

Strict and bounded, so that a bad spec is refused in well under a second and a megabyte,
before anything is written or started:

- the file itself: size, encoding, aliases, nesting and duplicate keys (``strict_yaml``);
- values: strict types and finite, bounded numbers (``config.BOUNDS`` for trial fields, the
  ``Field`` bounds below for the spec's own keys, each with its reason);
- expansion: the planned-trial count is the product of the grid's list lengths (times
  ``samples_per_cell`` with a search), computed before any trial is built, and refused above
  ``max_trials`` (default ``DEFAULT_MAX_TRIALS``; raise it in the spec or with
  ``hidden sweep run --max-trials``). 10,000 is far above every sweep in sweeps/ (at most a
  few hundred) and a sweep of 10,000 ten-second trials is already 28 CPU-hours; planning
  costs about 50 us per trial (about 12 us where a grid cell has many seeds: one config
  validated per cell, ``plan.expand``) and 2.6 KB, so the cap keeps a typo (10,000 seeds x
  1,000 split seeds) from eating the driver's memory.

One job per module: ``model`` (SweepSpec and its parts: every key declared once), ``validate``
(file or mapping -> SweepSpec, every problem at its path), ``plan`` (expansion, trial and cell
identity), ``problems`` (how a problem is worded), ``loggers`` (the trackers a spec may name),
``storage`` (an Optuna storage URL), ``resources`` (does a trial fit the cluster),
``lookup`` (a spec file by name). The names below are the public surface.
"""

from __future__ import annotations

from hidden_core.paths import SWEEP_NAME
from hidden_core.spec.lookup import find_spec_file, spec_candidates
from hidden_core.spec.model import (
    DEFAULT_MAX_TRIALS,
    MAX_CHOICES,
    MAX_CONTROL_DRAWS,
    MAX_MAX_TRIALS,
    MIN_SHARE,
    PRUNERS,
    RUNNER_SET_RUN_OPTIONS,
    CategoricalParam,
    FloatParam,
    IntParam,
    PrunerSpec,
    Resources,
    SearchParam,
    SubnetControls,
    SweepSpec,
)
from hidden_core.spec.plan import (
    MAX_COMBINATION_PROBLEMS,
    Plan,
    PlannedTrial,
    SearchPoint,
    cell_id,
    planned_upper_bound,
    unused_fields,
)
from hidden_core.spec.resources import check_resources
from hidden_core.spec.storage import storage_url_problems
from hidden_core.spec.validate import MAX_PROBLEMS, TRIAL_FIELDS, load_spec, parse_spec

__all__ = [
    "CategoricalParam",
    "DEFAULT_MAX_TRIALS",
    "FloatParam",
    "IntParam",
    "MAX_CHOICES",
    "MAX_COMBINATION_PROBLEMS",
    "MAX_CONTROL_DRAWS",
    "MAX_MAX_TRIALS",
    "MAX_PROBLEMS",
    "MIN_SHARE",
    "PRUNERS",
    "Plan",
    "PlannedTrial",
    "PrunerSpec",
    "RUNNER_SET_RUN_OPTIONS",
    "Resources",
    "SWEEP_NAME",
    "SearchParam",
    "SearchPoint",
    "SubnetControls",
    "SweepSpec",
    "TRIAL_FIELDS",
    "cell_id",
    "check_resources",
    "find_spec_file",
    "load_spec",
    "parse_spec",
    "planned_upper_bound",
    "spec_candidates",
    "storage_url_problems",
    "unused_fields",
]
