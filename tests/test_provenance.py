"""hidden_core/provenance.py (git_commit: the commit of the checkout hidden_core runs from,
'-dirty' with local changes to tracked files, None outside a git checkout) and
hidden_core/tune/provenance.py (provenance(): hidden's version, that commit, Ray's version).

git_commit finds its checkout from its own file's location, so each case runs a copy of the
module placed in a throw-away repository (tmp/hidden_core/provenance.py) whose state the
test sets: the answer must follow that repository, not the one the tests run from."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

import hidden_core
from hidden_core import provenance as core_provenance

SOURCE = Path(core_provenance.__file__)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def _module_in(root: Path):
    """The provenance module as a copy at root/hidden_core/provenance.py, imported from there."""
    target = root / "hidden_core" / "provenance.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SOURCE, target)
    spec = importlib.util.spec_from_file_location(f"provenance_copy_{abs(hash(str(root)))}", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "checkout"
    root.mkdir()
    _git(root, "init", "-q")
    module = _module_in(root)
    (root / "tracked.txt").write_text("one\n")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return root, module


def test_a_clean_checkout_gives_its_head_commit(repo):
    root, module = repo
    assert module.git_commit() == _git(root, "rev-parse", "HEAD")
    assert len(module.git_commit()) == 40


def test_a_changed_tracked_file_marks_the_commit_dirty_and_an_untracked_one_does_not(repo):
    root, module = repo
    head = _git(root, "rev-parse", "HEAD")
    (root / "untracked.txt").write_text("new\n")  # --untracked-files=no: a stray file is no change of the code
    assert module.git_commit() == head
    (root / "tracked.txt").write_text("two\n")
    assert module.git_commit() == f"{head}-dirty"


def test_outside_a_git_checkout_it_is_none(tmp_path):
    module = _module_in(tmp_path / "plain")  # no repository above it... unless tmp is inside one
    inside = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True).returncode == 0
    if inside:
        pytest.skip("the temporary folder is inside a git checkout")
    assert module.git_commit() is None


def test_without_a_git_program_it_is_none_not_an_error(repo, monkeypatch):
    _, module = repo
    monkeypatch.setenv("PATH", "/nonexistent")  # git cannot be found: OSError inside, None outside
    assert module.git_commit() is None


def test_the_trial_rows_provenance_names_hidden_this_commit_and_ray():
    import ray

    from hidden_core.tune import provenance as tune_provenance

    assert tune_provenance.git_commit is core_provenance.git_commit  # one function, re-exported
    record = tune_provenance.provenance()
    assert record == {"hidden_version": hidden_core.__version__, "git_commit": core_provenance.git_commit(), "ray_version": ray.__version__}
