"""torch.optim's SGD and Adam, step for step, without importing torch._dynamo.

Every torch.optim optimizer imports torch._dynamo (the torch.compile machinery) the first
time it is built or stepped: ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` are wrapped in ``torch._disable_dynamo``, which imports it on the first
call, and each ``step`` in ``_use_grad_for_differentiable``, which imports it on every call
for two ``torch._dynamo.graph_break()`` calls (no-ops outside a compiled region). In a fresh
process that import costs 1.5-2.3 s of CPU (measured on this 2-core machine, torch 2.14):
each sweep's trial workers paid it in their first trial, for code a trial never compiles.

`SGD` and `Adam` here are subclasses of torch's that call the very same functions with those
wrappers peeled off (``inspect.unwrap``): the same update, the same state, the same
state_dict (a checkpoint moves between the two either way), isinstance of torch's classes
(LR schedulers and checkpoints take them as they are), and Optimizer's own step hooks and
profiler labels (added by ``Optimizer.__init__`` to any subclass). tests/test_eager_optim.py
checks them bit for bit against torch.optim and that no torch._dynamo is imported.

`make` returns torch's own class whenever torch._dynamo is imported already (a trial that
uses torch.compile, or anything else that paid for it): nothing left to save, and torch's
exact code path.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import torch

_DYNAMO = "torch._dynamo"
# Optimizer's methods that torch wraps in torch._disable_dynamo (imports torch._dynamo on the first call)
_DISABLE_DYNAMO_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _eager_step(torch_class: type[torch.optim.Optimizer]) -> Callable[..., Any]:
    # through Optimizer.profile_hook_step (once a torch instance was built) and
    # _use_grad_for_differentiable, down to the class's own step
    raw = inspect.unwrap(torch_class.step)

    def step(self: torch.optim.Optimizer, closure: Callable[[], Any] | None = None) -> Any:
        # what _use_grad_for_differentiable does, less its graph breaks (no-ops outside
        # torch.compile) and so their torch._dynamo import
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return raw(self, closure)
        finally:
            torch.set_grad_enabled(previous)

    step.__doc__ = raw.__doc__
    return step


def _eager(torch_class: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of `torch_class` whose step and _DISABLE_DYNAMO_WRAPPED methods are torch's
    own functions without their torch._dynamo wrappers."""
    members: dict[str, Any] = {name: inspect.unwrap(getattr(torch.optim.Optimizer, name)) for name in _DISABLE_DYNAMO_WRAPPED}
    members.update(step=_eager_step(torch_class), __module__=__name__,
                   __doc__=f"torch.optim.{torch_class.__name__} without the torch._dynamo import (module docstring).")
    return type(torch_class.__name__, (torch_class,), members)


SGD = _eager(torch.optim.SGD)
Adam = _eager(torch.optim.Adam)


_EAGER: dict[type[torch.optim.Optimizer], type[torch.optim.Optimizer]] = {torch.optim.SGD: SGD, torch.optim.Adam: Adam}


def make(torch_class: type[torch.optim.Optimizer], params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """`torch_class(params, **kwargs)`, as its eager twin here while torch._dynamo is not
    imported (module docstring)."""
    cls = torch_class if _DYNAMO in sys.modules else _EAGER.get(torch_class, torch_class)
    return cls(params, **kwargs)
