"""An allowed interval of a numeric field and why it ends where it ends. Its own module
because both the trial config and the method catalog declare bounds (and the catalog may not
import the config, which is built from it)."""

from __future__ import annotations

from typing import NamedTuple

SEED_LIMIT = 2**63  # seeds are stored in int64 Parquet columns and fed to numpy/torch generators
MAX_EPOCHS = 100_000


def number_text(v: float) -> str:
    return "2**63" if v == SEED_LIMIT else f"{v:g}" if isinstance(v, float) else str(v)


class Bound(NamedTuple):
    """An allowed interval of a numeric field, and why it ends where it ends."""

    low: float
    high: float
    low_open: bool
    high_open: bool
    why: str

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{number_text(self.low)}, {number_text(self.high)}{')' if self.high_open else ']'}"

    def holds(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below
