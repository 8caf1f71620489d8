"""Experiment assignment: which treatment a user gets, as a pure function of (experiment, user).

The service assigns with it, `abtest` re-derives splits with it and the simulator labels its
summary with it, so the three always agree.
"""

from __future__ import annotations

import mmh3


def assign(experiment: str, user: int, n_treatments: int) -> int:
    """The treatment index of `user` in `experiment`: a pure function, stable across processes.

    Hash: MurmurHash3 x86 32-bit (seed 0, unsigned) of the UTF-8 string "{experiment}:{user}";
    split: that hash modulo `n_treatments`, so every treatment gets an equal share of users.
    Salting with the experiment's name makes the splits of different experiments independent.
    """
    return mmh3.hash(f"{experiment}:{user}", signed=False) % n_treatments


def treatment_label(index: int) -> str:
    """ "C" for the control (index 0), "T{i}" for treatment i."""
    return "C" if index == 0 else f"T{index}"
