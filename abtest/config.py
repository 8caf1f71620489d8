"""Statistical defaults of `abtest`, kept in one place.

Functions and metric classes take `None` for these parameters and resolve them here, as
tea-tasting's `config.py` does, so a user can change a default once for a whole analysis:

>>> from abtest.config import config_context, get_config
>>> with config_context(alpha=0.01):
...     get_config("alpha")
0.01
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from abtest.errors import AbtestError

RELATIVE_METHODS = ("fieller", "delta")
ESTIMANDS = ("user-mean", "ratio-of-sums")
CORRECTIONS = ("holm", "bonferroni", "fdr_bh", "none")

_DEFAULTS: dict[str, Any] = {
    "alpha": 0.05,  # two-sided significance level; the intervals are (1 - alpha) confidence intervals
    "relative": "fieller",  # how the relative interval accounts for the control mean's uncertainty
    "estimand": "user-mean",  # per-user values averaged over users (the course's definition)
    "correction": "holm",  # family-wise correction over every metric x treatment of a report
    "srm_alpha": 0.001,  # sample-ratio-mismatch warning threshold (chi-square p-value)
    "power": 0.8,  # target power for `abtest power`
}
_config: dict[str, Any] = dict(_DEFAULTS)


def check_option(name: str, value: Any) -> Any:
    """Validate one option's value; the error names the option and the rule it broke."""
    if name not in _DEFAULTS:
        raise AbtestError(f"unknown option {name!r}; known options: {', '.join(sorted(_DEFAULTS))}")
    if name in ("alpha", "srm_alpha", "power"):
        if not isinstance(value, int | float) or not 0 < value < 1:
            raise AbtestError(f"{name} == {value!r}, must be a number with 0 < {name} < 1")
        return float(value)
    allowed = {"relative": RELATIVE_METHODS, "estimand": ESTIMANDS, "correction": CORRECTIONS}[name]
    if value not in allowed:
        raise AbtestError(f"{name} == {value!r}, must be one of {', '.join(allowed)}")
    return value


def get_config(name: str) -> Any:
    """The current value of one option."""
    if name not in _config:
        raise AbtestError(f"unknown option {name!r}; known options: {', '.join(sorted(_config))}")
    return _config[name]


def resolve(name: str, value: Any) -> Any:
    """`value` checked, or the configured default when `value` is None."""
    return get_config(name) if value is None else check_option(name, value)


def set_config(**options: Any) -> None:
    """Change defaults for the rest of the process."""
    checked = {name: check_option(name, value) for name, value in options.items()}
    _config.update(checked)


@contextlib.contextmanager
def config_context(**options: Any) -> Iterator[None]:
    """Change defaults inside a `with` block only."""
    saved = dict(_config)
    set_config(**options)
    try:
        yield
    finally:
        _config.clear()
        _config.update(saved)
