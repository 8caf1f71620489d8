"""The end-of-run table: sessions, mean session time and tracks per session (with standard errors)
per simulated day and treatment."""

from __future__ import annotations

from collections.abc import Sequence

import mmh3
import numpy as np
import pandas as pd

from sim.run.timeline import SessionRecord


def assignment(experiment: str, users: np.ndarray, treatments: int) -> np.ndarray:
    """The service's documented assignment: MurmurHash3 (x86, 32-bit, seed 0) of
    "<experiment>:<user>", unsigned, modulo the number of treatments."""
    return np.array([mmh3.hash(f"{experiment}:{int(u)}", signed=False) % treatments for u in users], dtype=np.int64)


def treatment_labels(description: dict[str, object] | None, users: np.ndarray) -> np.ndarray:
    """Label each user with the serving treatment, from the service's GET / description
    ("C"/"T1"... plus the recommender's name); one label for everyone when there is none."""
    if not description:
        return np.full(len(users), "dummy", dtype=object)
    if "recommender" in description:
        return np.full(len(users), str(description["recommender"]), dtype=object)
    experiments = description.get("experiments") or []
    serving = [e for e in experiments if isinstance(e, dict) and e.get("serving")]  # type: ignore[union-attr]
    if not serving:
        return np.full(len(users), "service", dtype=object)
    experiment = serving[0]
    names = [str(t["recommender"]) if isinstance(t, dict) else str(t) for t in experiment["treatments"]]
    index = assignment(str(experiment["name"]), users, len(names))
    labels = np.array([("C" if i == 0 else f"T{i}") + f" {names[i]}" for i in range(len(names))], dtype=object)
    return labels[index]


def summarize(records: Sequence[SessionRecord], labels: np.ndarray) -> pd.DataFrame:
    """One row per (day, treatment): sessions, mean +- SE of session time and of tracks per session."""
    frame = pd.DataFrame(
        {
            "day": [r.day for r in records],
            "treatment": labels,
            "time": [r.time for r in records],
            "tracks": [r.tracks for r in records],
            "returning": [r.returning for r in records],
        }
    )
    if frame.empty:
        return pd.DataFrame(columns=["day", "treatment", "sessions", "returning", "mean_time", "se_time", "mean_tracks", "se_tracks"])
    grouped = frame.groupby(["day", "treatment"], sort=True)
    table = grouped.agg(
        sessions=("time", "size"),
        returning=("returning", "sum"),
        mean_time=("time", "mean"),
        se_time=("time", "sem"),
        mean_tracks=("tracks", "mean"),
        se_tracks=("tracks", "sem"),
    )
    return table.reset_index()


def render(table: pd.DataFrame) -> str:
    """The summary as aligned text, means shown as `mean +- se`."""
    if table.empty:
        return "no sessions were simulated"
    shown = pd.DataFrame(
        {
            "day": table["day"],
            "treatment": table["treatment"],
            "sessions": table["sessions"],
            "returning": table["returning"],
            "session time": [f"{m:.3f} +- {s:.3f}" for m, s in zip(table["mean_time"], table["se_time"].fillna(0.0))],
            "tracks/session": [f"{m:.2f} +- {s:.2f}" for m, s in zip(table["mean_tracks"], table["se_tracks"].fillna(0.0))],
        }
    )
    return shown.to_string(index=False)
