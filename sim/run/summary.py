"""The end-of-run table: sessions, mean session time and tracks per session (with standard errors)
per simulated day and treatment, sessions counted as the log and `abtest` count them
(`contracts.sessions`: the listener's own first track included, as one track listened in full)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts.assignment import assign, treatment_label
from contracts.sessions import logged_time, logged_tracks
from sim.run.timeline import SessionRecord


def treatment_labels(description: dict[str, object] | None, users: np.ndarray) -> np.ndarray:
    """Label each user with the serving treatment, from the service's GET / description
    ("C"/"T1"... plus the recommender's name); one label for everyone when there is none."""
    if not description:
        return np.full(len(users), "dummy", dtype=object)
    if "recommender" in description:
        return np.full(len(users), str(description["recommender"]), dtype=object)
    experiments = description.get("experiments") or []
    serving = [e for e in experiments if isinstance(e, dict) and e.get("serving")]  # type: ignore[attr-defined]
    if not serving:
        return np.full(len(users), "service", dtype=object)
    experiment = serving[0]
    names = [str(t["recommender"]) if isinstance(t, dict) else str(t) for t in experiment["treatments"]]
    index = [assign(str(experiment["name"]), int(user), len(names)) for user in users]
    labels = np.array([f"{treatment_label(i)} {name}" for i, name in enumerate(names)], dtype=object)
    return labels[index]


@dataclass(frozen=True)
class SummaryRow:
    """One (day, treatment) cell of the summary: means with their standard errors."""

    day: int
    treatment: str
    sessions: int
    returning: int
    mean_time: float
    se_time: float
    mean_tracks: float
    se_tracks: float


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return mean, se


def summarize(records: Sequence[SessionRecord], labels: np.ndarray) -> list[SummaryRow]:
    """One row per (day, treatment), sorted: sessions, mean +- SE of session time and of tracks
    per session, as the log counts them (`contracts.sessions`), so that the summary's effects are
    `abtest`'s. Plain numpy: the run's start-up time matters, and pandas costs a quarter second."""
    days = np.array([r.day for r in records], dtype=np.int64)
    times = logged_time(np.array([r.time for r in records], dtype=np.float64))
    tracks = logged_tracks(np.array([r.tracks for r in records], dtype=np.int64)).astype(np.float64)
    returning = np.array([r.returning for r in records], dtype=bool)
    labels = np.asarray(labels, dtype=object)
    rows = []
    for day, label in sorted({(int(d), str(t)) for d, t in zip(days, labels)}):
        mask = (days == day) & (labels == label)
        mean_time, se_time = _mean_se(times[mask])
        mean_tracks, se_tracks = _mean_se(tracks[mask])
        rows.append(SummaryRow(day, label, int(mask.sum()), int(returning[mask].sum()), mean_time, se_time, mean_tracks, se_tracks))
    return rows


def render(rows: Sequence[SummaryRow]) -> str:
    """The summary as aligned text, means shown as `mean +- se`."""
    if not rows:
        return "no sessions were simulated"
    header = ("day", "treatment", "sessions", "returning", "session time", "tracks/session")
    cells = [
        (str(r.day), r.treatment, str(r.sessions), str(r.returning), f"{r.mean_time:.3f} +- {r.se_time:.3f}", f"{r.mean_tracks:.2f} +- {r.se_tracks:.2f}")
        for r in rows
    ]
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) for i in range(len(header))]
    table = "\n".join(" ".join(value.rjust(width) for value, width in zip(line, widths)) for line in [header, *cells])
    return table + "\n(session time and tracks count the listener's own first track as one track listened in full, as abtest does)"
