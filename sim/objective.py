"""The online objective of `recommenders tune`: a candidate's paired, simulated effect on time per session.

`online_effect` simulates one day of listeners twice in process, once served by the candidate
and once by a control recommender, both through botify's own `Service` (`LocalClient`, the
serving path of `botify serve`), with the same seed. Common random numbers (see
`sim.run.timeline`) make the two runs differ only through what was served: the same arrivals,
listeners, interests, first tracks and budget coins. The effect is the one the demo's A/B
report shows for mean time per session, computed on the paired per-listener means:

    effect = mean_u T_u / mean_u C_u - 1,

with T_u (C_u) listener u's mean time per session under the candidate (control), a session's
time counted as the log counts it (the listened fractions plus the self-chosen first track).
A recommender against itself gives exactly 0.

The recommenders package reaches this function through the entry point `online` of the group
`botify_lab.objectives` (pyproject.toml), never by importing `sim`: the floors only look down.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim.config import EnvConfig, load_env_config
from sim.run.replay import simulate
from sim.run.shards import ClientSpec
from sim.run.timeline import SessionRecord

_CONTROL_CACHE: dict[tuple[Any, ...], dict[int, float]] = {}  # the control's per-listener means, reused across trials


def per_listener_means(records: Sequence[SessionRecord]) -> dict[int, float]:
    """Each listener's mean time per session (listened fractions plus the first track's 1.0)."""
    totals: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for record in records:
        total = totals[record.user]
        total[0] += record.time + 1.0
        total[1] += 1.0
    return {user: time / count for user, (time, count) in totals.items()}


def simulation_day(config: EnvConfig, date: dt.date) -> tuple[EnvConfig, int]:
    """(config, day number) that simulate `date`: days count from `config.time.start`; a date before it becomes day 1."""
    if date < config.time.start:
        config = config.model_copy(update={"time": config.time.model_copy(update={"start": date})})
    return config, (date - config.time.start).days + 1


def online_effect(
    world: Path,
    treatment: Mapping[str, Any],
    control: Mapping[str, Any],
    *,
    date: dt.date,
    seed: int,
    episodes: int,
    env: Path | None = None,
) -> dict[str, float]:
    """The paired effect of `treatment` against `control` on mean time per session, simulated on `date`.

    Args:
        world: the world directory.
        treatment, control: recommenders as {"name", "params", "artifact"} (a registry name,
            its serving parameters, its artifact directory or None).
        date: the simulated day (the day after the training log, for held-out sessions).
        seed: the simulation's seed; use another than the log's, so the listeners' draws are fresh.
        episodes: listener arrivals simulated (the same ones under both arms).
        env: the simulator's config file (default: `EnvConfig`'s defaults with `world`).

    Returns:
        "effect" (relative, 0.1 = +10%), "treatment" and "control" (means over listeners of
        their mean time per session), "difference" (mean of the paired differences) and
        "users" (listeners compared).
    """
    base = load_env_config(env) if env is not None else EnvConfig()
    config, day = simulation_day(base.model_copy(update={"world": Path(world)}), date)

    def run(arm: Mapping[str, Any]) -> dict[int, float]:
        spec = ClientSpec("local", name=str(arm["name"]), params=dict(arm.get("params") or {}),
                          artifact=None if arm.get("artifact") is None else str(arm["artifact"]))
        return per_listener_means(simulate(config, seed, [day], episodes, spec))

    key = (str(world), repr(sorted(dict(control).items())), date, seed, episodes, str(env))
    if key not in _CONTROL_CACHE:
        _CONTROL_CACHE[key] = run(control)
    control_means = _CONTROL_CACHE[key]
    treatment_means = run(treatment)
    users = sorted(set(control_means) & set(treatment_means))
    if not users:
        raise ValueError(f"no listener was simulated ({episodes} arrivals on {date})")
    t = np.array([treatment_means[user] for user in users])
    c = np.array([control_means[user] for user in users])
    return {
        "effect": float(t.mean() / c.mean() - 1.0),
        "treatment": float(t.mean()),
        "control": float(c.mean()),
        "difference": float((t - c).mean()),
        "users": float(len(users)),
    }
