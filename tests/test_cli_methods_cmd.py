"""hidden_core/cli/methods_cmd.py: `hidden methods` prints the method catalog
(hidden_core/catalog.py) as JSON or as a table: one record per registry line, in the
catalog's order, with each method's own options (type, default, allowed interval, meaning)
read from that line; and it does so without importing torch, like the catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hidden_core.catalog import CATALOG, LEARNS
from hidden_core.cli import main
from hidden_core.cli.methods_cmd import catalog_records, option_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hidden(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_is_one_record_per_registry_line_with_its_facts(capsys):
    code, out, _ = _hidden(capsys, "methods", "--json")
    assert code == 0
    records = json.loads(out)
    assert [r["method"] for r in records] == list(CATALOG)
    for r in records:
        info = CATALOG[r["method"]]
        assert (r["summary"], r["learns"], r["controls"], r["runner"], r["vectorizes"]) == (info.summary, info.learns, info.controls, info.runner, info.vectorizes)
        assert r["learns_meaning"] == LEARNS[info.learns] and r["reads"] == list(info.reads)
        assert [o["option"] for o in r["options"]] == list(info.options)
        for o in r["options"]:
            assert o["default"] == info.options[o["option"]].default and o["meaning"] == info.options[o["option"]].description


def test_an_option_record_names_its_type_default_and_bound():
    """A Literal option lists its values; a bounded number shows its interval as the spec's
    error messages do (Bound's text); an unbounded one shows no interval."""
    options = {name: option for info in CATALOG.values() for name, option in info.options.items()}
    literal = option_record("gem_miner_regularizer", options["gem_miner_regularizer"])
    assert literal == {"option": "gem_miner_regularizer", "type": "L2 | L1", "default": "L2", "allowed": None,
                       "meaning": options["gem_miner_regularizer"].description}
    bounded = option_record("gem_miner_lambda", options["gem_miner_lambda"])
    assert bounded["type"] == "float" and bounded["default"] == 1e-4 and bounded["allowed"] == str(options["gem_miner_lambda"].bound) == "[0, 1]"
    flag = option_record("train_output_layer", options["train_output_layer"])
    assert flag["type"] == "bool" and flag["allowed"] is None


def test_the_table_shows_every_method_and_option(capsys):
    code, out, _ = _hidden(capsys, "methods")
    assert code == 0
    lines = out.splitlines()
    for r in catalog_records():
        assert f"{r['method']}: {r['summary']}" in lines
        assert f"  learns: {r['learns']} ({r['learns_meaning']}); controls: {r['controls'] or 'none'}; runner: {r['runner']}" in lines
        for o in r["options"]:
            assert any(line.startswith(f"  {o['option']} ({o['type']}, default {o['default']!r}") for line in lines), o["option"]
    assert "  reads: keep_fraction, scale_fan" in lines  # edge_popup's shared fields
    dense = lines.index(f"dense: {CATALOG['dense'].summary}")
    assert not lines[dense + 2].startswith("  reads:")  # a method that reads no shared field has no reads line


def test_it_imports_no_torch():
    """The catalog is torch-free so that `hidden methods` answers in a blink; a torch import
    creeping into the command (or the catalog) fails here."""
    script = ("import sys; from hidden_core.cli.methods_cmd import catalog_records; catalog_records(); "
              "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert out.stdout.strip() == "False"
