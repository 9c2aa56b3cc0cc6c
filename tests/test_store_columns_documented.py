"""Every column a reader of the store gets is documented in results/README.md
(hidden_core/store/schema.py's schemas against the README's tables)."""

import re
from pathlib import Path

import pytest

from hidden_core.store import CONTROL_SCHEMA, EPOCH_SCHEMA, TRIAL_READ_SCHEMA

README = Path(__file__).resolve().parents[1] / "results" / "README.md"


def documented(section: str) -> set[str]:
    """Column names in the first cell of the table rows of README's `## <section>` part."""
    text = README.read_text()
    start = text.index(f"\n## {section}")
    end = text.find("\n## ", start + 1)
    names = set()
    for line in text[start: end if end != -1 else None].splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 2:
            names |= set(re.findall(r"`([a-z_0-9]+)`", cells[1]))
    return names


@pytest.mark.parametrize(("section", "schema"), [("trials", TRIAL_READ_SCHEMA), ("epochs", EPOCH_SCHEMA), ("controls", CONTROL_SCHEMA)])
def test_every_column_is_documented(section, schema):
    # a method's own options are documented on its registry line (`hidden methods` prints
    # them; the README says so), so a method commit touches no README
    from hidden_core.catalog import OPTIONS

    by_catalog = {name for name, (_, option) in OPTIONS.items() if option.description.strip()} if section == "trials" else set()
    missing = [name for name in schema.names if name not in documented(section) | by_catalog]
    assert not missing, f"results/README.md, ## {section}: no row for {missing}"
