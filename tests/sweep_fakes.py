"""Train functions the sweep tests pass as `train_fn`. Ray workers cannot import the tests
folder: register this module with cloudpickle.register_pickle_by_value before passing."""

from __future__ import annotations

from typing import Any


def failing_train(config: Any, run: Any, *, data: Any = None, on_epoch: Any = None) -> Any:
    """The core train, except that dense width-1 seed-1 trials raise after one epoch."""
    from hidden_core.tune.trainable import core_train

    if config.method == "dense" and config.width == 1.0 and config.seed == 1:
        def boom(record: Any) -> None:
            if on_epoch is not None:
                on_epoch(record)
            raise RuntimeError(f"injected failure in trial {config.trial_id} after epoch {record.epoch}")

        return core_train()(config, run, data=data, on_epoch=boom)
    return core_train()(config, run, data=data, on_epoch=on_epoch)
