"""The one exception type of `abtest`: bad input that the user can fix (the CLI shows its message)."""

from __future__ import annotations


class AbtestError(ValueError):
    """A log, experiment, treatment or parameter that cannot be analysed; the message says why and what to do."""
