"""`hidden train`, `hidden inspect` and `hidden data download`.

Flags are generated from the TrialConfig and RunOptions fields, so every config field has a
flag and a new field gets one for free. Values go through the same pydantic validation as
a YAML file: one error path for every way in.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hidden_core import strict_json
from hidden_core.config import (
    DATASETS,
    RunOptions,
    TrialConfig,
    from_command_line,
    make_config,
    make_run_options,
)
from hidden_core.errors import ConfigError
from hidden_core.strict_yaml import load_yaml_file

MODEL_FIELDS = ("dataset", "model", "method", "width", "depth", "mlp_units", "mlp_layer_units", "norm", "keep_fraction", "weight_dist", "scale_fan", "seed", "train_output_layer", "supermask_init_keep")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one network", description="Train one network with any method on any supported data set.")
    p.add_argument("--config", metavar="FILE.yaml", help="trial config file (TrialConfig and RunOptions keys); flags override it")
    _add_field_flags(p, TrialConfig)
    _add_field_flags(p, RunOptions)
    p.add_argument("--json", action="store_true", help="print the final result as one JSON object on the last line of stdout")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    p.set_defaults(func=run_train)

    p = sub.add_parser("inspect", help="parameter counts of a model, as JSON (loads no data)", description="Build a trial's network (no data, no training) and print its parameter counts as JSON.")
    p.add_argument("--config", metavar="FILE.yaml", help="trial config file; flags override it")
    _add_field_flags(p, TrialConfig, only=MODEL_FIELDS)
    p.add_argument("--json", action="store_true", help="accepted for symmetry with train: inspect always prints one JSON object")
    p.set_defaults(func=run_inspect)

    p = sub.add_parser("data", help="data set utilities")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d = data_sub.add_parser("download", help="download a torchvision data set into --data-root")
    d.add_argument("dataset", help=f"one of {', '.join(n for n in DATASETS)}")
    d.add_argument("--data-root", help="target folder (default $HIDDEN_DATA_ROOT or ~/.cache/hidden/data)")
    d.set_defaults(func=run_download)


def _add_field_flags(parser: argparse.ArgumentParser, model: type[BaseModel], only: tuple[str, ...] | None = None) -> None:
    group = parser.add_argument_group(f"{model.__name__} fields")
    for name, info in model.model_fields.items():
        if only is not None and name not in only:
            continue
        flag = "--" + name.replace("_", "-")
        choices = _literal_values(info.annotation)
        notes = [f"one of: {', '.join(choices)}"] if choices else []
        if info.default is not None:  # None: the description says what unset means
            notes.append(f"default: {info.default}")
        help_text = (info.description or name.replace("_", " ")) + (f" ({'; '.join(notes)})" if notes else "")
        if _is_bool(info.annotation):
            group.add_argument(flag, dest=name, nargs="?", const="true", default=argparse.SUPPRESS, metavar="BOOL", help=help_text)
        else:
            group.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)


def _literal_values(annotation: Any) -> list[str]:
    values: list[str] = []
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            values += [str(v) for v in typing.get_args(arg)]
    return values


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or bool in typing.get_args(annotation)


def configs_from_args(args: argparse.Namespace) -> tuple[TrialConfig, RunOptions]:
    file_values: dict[str, Any] = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError([f"config: {path} does not exist"])
        loaded = load_yaml_file(path, "config") or {}
        if not isinstance(loaded, dict):
            raise ConfigError([f"config: {path} must hold a mapping of config fields"])
        file_values = loaded
    flags = {k: from_command_line(TrialConfig if k in TrialConfig.model_fields else RunOptions, k, v) for k, v in vars(args).items() if k in TrialConfig.model_fields or k in RunOptions.model_fields}
    given = {**file_values, **flags}
    run_values = {k: given.pop(k) for k in list(given) if k in RunOptions.model_fields}
    problems: list[str] = []
    config = run = None
    try:
        config = make_config(given)
    except ConfigError as err:
        problems += err.problems
    try:
        run = make_run_options(run_values)
    except ConfigError as err:
        problems += err.problems
    if problems:
        raise ConfigError(problems)
    return config, run


def run_train(args: argparse.Namespace) -> int:
    config, run = configs_from_args(args)
    # Imported here: `hidden --help` and the results commands stay fast and torch-free.
    from hidden_core.data import check_data_available
    from hidden_core.footprint import require_device

    require_device(run.device)
    from hidden_core.training import CheckpointMismatch
    from hidden_core.trial import train

    check_data_available(config, run)

    def progress(record) -> None:
        # lottery_ticket: every row of the trial is numbered; say which training it is
        where = "" if record.level is None else f"level {record.level:>2} {record.branch:<12} density {record.density:.3f}  "
        epoch = record.epoch if record.level is None else record.level_epoch
        print(
            f"{where}epoch {epoch:>3}/{config.epochs}  loss {record.train_loss:.4f}  train {record.train_acc:.3f}  "
            f"val {record.val_acc:.3f}  test {record.test_acc:.3f}  lr {record.lr:.3g}  {record.seconds:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    print(f"trial {config.trial_id}: {config.method} {config.model} depth {config.depth} width {config.width:g} on {config.dataset}", file=sys.stderr)
    if run.checkpoint_dir:
        run = _trial_checkpoint_dir(run, config.trial_id)
    try:
        result = train(config, run, on_epoch=None if args.quiet else progress)
    except CheckpointMismatch as err:
        raise ConfigError([f"checkpoint_dir: {err}"]) from err
    summary = {"trial_id": config.trial_id, **result.to_dict()}
    warning = _health_warning(result)
    if args.json:
        if warning:
            print(warning, file=sys.stderr)  # stdout keeps its one JSON line
        print(strict_json.dumps(summary))
    else:
        print(f"{result.status}: test {result.test_acc:.4f}  val {result.val_acc:.4f}  best val {result.best_val_acc:.4f} (epoch {result.best_epoch})  "
              f"{result.params_learned:,} learned of {result.params_total:,}  changed {result.changed_fraction:.3f}  {result.train_seconds:.1f}s")
        if warning:
            print(warning)
    return 0


def _health_warning(result) -> str | None:
    """One line naming the health flags the trial raised (None when healthy or unknown)."""
    from hidden_core.health import parse_flags

    flags = parse_flags(result.health_flags)
    if not flags:
        return None
    return (f"warning: unhealthy training ({', '.join(flags)}): train acc {result.train_acc:.3f}, "
            f"dead units up to {result.dead_units_max:.0%} of a layer, first-epoch loss peak {result.early_loss_peak:.1f}x ln(classes) "
            "(thresholds: docs/methods.md, Training health)")


def _trial_checkpoint_dir(run: RunOptions, trial_id: str) -> RunOptions:
    """--checkpoint-dir D keeps each trial in D/<trial_id>/: one folder serves many configs,
    and a changed config never resumes another's checkpoint (it starts in its own folder)."""
    from hidden_core.training import checkpoint_history

    folder = os.path.join(run.checkpoint_dir, trial_id)
    done = checkpoint_history(folder)
    if done:
        print(f"resuming trial {trial_id} from its checkpoint in {folder} (epoch {len(done)} done)", file=sys.stderr)
    return run.model_copy(update={"checkpoint_dir": folder})


def run_inspect(args: argparse.Namespace) -> int:
    config, _ = configs_from_args(args)
    from hidden_core.methods import build_model

    model = build_model(config)
    print(strict_json.dumps({"trial_id": config.trial_id, "model": config.model, "depth": config.depth, "width": config.width, **model.statistics()}))
    return 0


def run_download(args: argparse.Namespace) -> int:
    if args.dataset not in DATASETS:
        raise ConfigError([f"dataset: {args.dataset!r} is not allowed; expected one of {', '.join(DATASETS)}"])
    from hidden_core.data import data_root, download

    root = download(args.dataset, data_root(make_run_options(data_root=args.data_root)))
    print(f"{args.dataset} is in {root}")
    return 0
