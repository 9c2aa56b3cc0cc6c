"""The method catalog (hidden_core/catalog.py): one registry line per method, torch-free, the
only place outside a method's own file that knows a method by name."""

import ast
import importlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ast_scan import docstring_ids

from hidden_core.catalog import CATALOG, METHODS, OPTIONS, REFERENCE, methods_where
from hidden_core.config import ConfigError, make_config
from hidden_core.records import BRANCHES
from hidden_core.subnet.fileformat import pack_uints, packed_size, unpack_uints

ROOT = Path(__file__).resolve().parents[1]
# Where a method may be named: its own file, its registry line, and reproduce.py, whose
# claims are declared specs (like sweeps/*.yaml) about named methods.
ALLOWED = {"hidden_core/catalog.py", "hidden_core/reproduce.py"}



def method_names_outside_the_catalog() -> list[str]:
    found = []
    for path in sorted((ROOT / "hidden_core").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("hidden_core/methods/") or rel in ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        docs = docstring_ids(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in METHODS and id(node) not in docs:
                if rel == "hidden_core/records.py" and node.value in BRANCHES:
                    continue  # the lottery branch "supermask" (the epochs table's branch column), not the method
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    return found


def test_no_module_keeps_a_table_or_an_if_chain_keyed_by_a_method_name():
    assert method_names_outside_the_catalog() == []


def test_the_scan_finds_a_method_name_in_code():
    tree = ast.parse('if config.method == "edge_popup":\n    pass\n"""a docstring naming edge_popup is fine"""')
    names = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in METHODS and id(n) not in docstring_ids(tree)]
    assert names == ["edge_popup"]


@pytest.mark.parametrize("name", METHODS)
def test_every_registry_line_names_a_file_whose_method_is_it(name):
    info = CATALOG[name]
    cls = importlib.import_module(info.module).METHOD
    assert cls.name == name and info.module == f"hidden_core.methods.{name}"


def test_the_catalog_and_the_config_import_no_torch():
    code = "import sys, hidden_core.catalog, hidden_core.config, hidden_core.records; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_catalog_facts_drive_the_tables_that_used_to_be_written_by_hand():
    assert REFERENCE == "dense"
    assert set(methods_where(controls="mask")) >= {"edge_popup", "free_prune", "supermask"}  # and the newer mask methods
    assert methods_where(runner="levels") == ("lottery_ticket",)
    assert set(OPTIONS) >= {"prune_rate", "rewind_epoch", "supermask_eval", "train_output_layer"}


def test_an_option_is_a_validated_config_field_that_only_its_method_reads():
    with pytest.raises(ConfigError, match=r"prune_rate: 1\.0 is not in \(0, 1\)"):
        make_config(method="lottery_ticket", prune_rate=1.0)
    with pytest.raises(ConfigError, match=r"rewind_epoch: 3 is not in \[0, epochs\)"):
        make_config(method="lottery_ticket", rewind_epoch=3, epochs=3)
    with pytest.raises(ConfigError, match="supermask_eval"):
        make_config(method="supermask", supermask_eval="always")
    # a method that does not read an option: reset before hashing, one trial
    assert make_config(method="dense", prune_rate=0.5).trial_id == make_config(method="dense").trial_id
    assert make_config(method="lottery_ticket", prune_rate=0.5).trial_id != make_config(method="lottery_ticket").trial_id


@pytest.mark.parametrize("k", [2, 3, 8, 16, 1000])
def test_indices_among_k_values_pack_in_ceil_log2_k_bits_each(k):
    bits = math.ceil(math.log2(k))
    values = np.random.default_rng(k).integers(0, k, size=(7, 13))
    packed = pack_uints(values, bits)
    assert packed.dtype == np.uint8 and packed.size == packed_size(values.shape, bits) == math.ceil(values.size * bits / 8)
    assert np.array_equal(unpack_uints(packed, values.shape, bits), values)
    with pytest.raises(ValueError, match="cannot be packed"):
        pack_uints(np.array([2**bits]), bits)


def test_a_method_with_step_hooks_never_trains_vectorized(monkeypatch):
    """train_seeds does not call after_step/after_epoch/optimized: a method that overrides
    one must say vectorizes=False on its registry line, and train_seeds refuses it."""
    from hidden_core.methods.edge_popup import EdgePopup
    from hidden_core.vectorized import check_cell

    check_cell(make_config(method="edge_popup"), [0, 1])
    monkeypatch.setattr(EdgePopup, "after_step", lambda self, model, step: None, raising=False)
    with pytest.raises(ValueError, match="overrides after_step.*vectorizes=False"):
        check_cell(make_config(method="edge_popup"), [0, 1])
    with pytest.raises(ValueError, match="lottery_ticket does not vectorize"):
        check_cell(make_config(method="lottery_ticket"), [0, 1])


def test_hidden_methods_lists_every_method_and_option(capsys):
    import json

    from hidden_core.cli import main

    assert main(["methods", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in records] == list(METHODS)
    options = {o["option"]: o for r in records for o in r["options"]}
    assert set(options) == set(OPTIONS)
    assert options["prune_rate"]["allowed"] == "(0, 1)" and options["prune_scope"]["type"] == "layer | global"
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert all(f"{m}: " in text for m in METHODS)


def test_controls_do_not_apply_where_a_method_trained_its_kept_weights():
    """Gem-Miner's fine-tuning trains the kept weights (its line's trains_weights_when): a
    random or shuffled mask, or fresh weights, would not test the mask, so such a trial has
    no controls; without fine-tuning it has mask controls."""
    from hidden_core.catalog import controls_of

    assert controls_of("gem_miner", {}) == "mask"
    assert controls_of("gem_miner", {"gem_miner_finetune_epochs": 0}) == "mask"
    assert controls_of("gem_miner", {"gem_miner_finetune_epochs": 3}) is None
    assert controls_of("edge_popup", {"gem_miner_finetune_epochs": 3}) == "mask"
    assert controls_of("dense", {}) is None
