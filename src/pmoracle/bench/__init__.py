"""Benchmarks, run as commands and never as timed tests: each figure is printed with its limit or with a peer
measured in the same run."""

from __future__ import annotations

from pmoracle.errors import InputError


def parse_int_list(text: str, option: str, low: int, high: int, what: str) -> tuple[int, ...]:
    """Return the integers of a comma-separated option value such as ``--nodes 4,7``.

    Errors:
        InputError(``option``) for a malformed list, an empty one, or a value outside [low, high].
    """
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(option, f"expected comma-separated integers, got {text!r}") from None
    if not values or any(not low <= n <= high for n in values):
        raise InputError(option, f"{what} must be in [{low}, {high}], got {text!r}")
    return values
