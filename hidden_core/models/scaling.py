"""Width multiplier to layer size."""


def scaled(base: int, width: float) -> int:
    """Units/channels at a width multiplier: rounded, at least 1."""
    return max(1, round(base * width))
