"""hidden_core/errors.py: the error toolkit every layer raises with, apart from the trial config."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hidden_core.config as config
from hidden_core import errors
from hidden_core.errors import ConfigError, brief, clip, suggestion


def test_the_config_module_re_exports_the_same_objects():
    # older `from hidden_core.config import ConfigError` imports must catch what errors raises
    for name in ("ConfigError", "clip", "brief", "suggestion", "error_message", "SYNONYMS"):
        assert getattr(config, name) is getattr(errors, name), name
    with pytest.raises(config.ConfigError):
        raise ConfigError(["x: bad"])


def test_config_error_keeps_every_problem_line():
    err = ConfigError(["a: one", "b: two"])
    assert err.problems == ["a: one", "b: two"] and str(err) == "a: one\nb: two"
    assert isinstance(err, ValueError)


def test_messages_never_repeat_a_huge_value():
    assert clip("x" * 1000, 10) == "xxxxxxxxxx... (1,000 characters)"
    assert brief("short") == "'short'"
    assert suggestion("learning_rate", ["lr", "prune_rate"]) == " (did you mean 'lr'?)"
    assert suggestion("x" * 101, ["x"]) == ""


def test_errors_imports_no_pydantic_torch_or_ray():
    code = ("import sys, hidden_core.errors; bad = [m for m in sys.modules if m.split('.')[0] in ('pydantic', 'torch', 'ray')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
