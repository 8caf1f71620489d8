"""Checks of recommender parameters that come from YAML: wrong values get a message naming them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """`value` as an int, or ValueError "name == value, must be ..." (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} == {value!r}, must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} == {value!r}, must be >= {minimum}")
    return value


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    """`value` as a float within [low, high], or ValueError naming the parameter and the rule."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} == {value!r}, must be a number")
    if low is not None and value < low:
        raise ValueError(f"{name} == {value!r}, must be >= {low}")
    if high is not None and value > high:
        raise ValueError(f"{name} == {value!r}, must be <= {high}")
    return float(value)


def check_choice(name: str, value: Any, choices: Collection[str]) -> str:
    """`value` if it is one of `choices`, or ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} == {value!r}, must be one of {', '.join(repr(c) for c in choices)}")
    return value
