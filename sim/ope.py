"""`python -m sim.ope`: estimate a candidate recommender's value from a log served by another policy.

The command reads one arm's decisions from the log (`abtest.decisions`), rebuilds each
request as the service saw it (the listener, the session so far, the request's seed), asks the
candidate (registry name + artifact, built as the service builds it) what it would have served,
fits a reward model on the log, and prints every estimator of `abtest.ope` beside the logging
policy's own value and the estimated effect. It lives on the simulator's floor because running
a candidate needs `recommenders`, which `abtest` never imports; the estimators themselves are
`abtest.ope`'s pure functions.

The candidate is evaluated as a deterministic policy (its answer has probability 1): a
stochastic candidate is refused. Requests are rebuilt without their day (every track counts as
released), so a world with later releases is evaluated as if all were out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from abtest.decisions import DecisionColumns, session_events
from abtest.errors import AbtestError
from abtest.log import EventLog
from abtest.ope import DEFAULT_TAU, ESTIMATORS, OpeEstimate, estimate, fit_reward_model, relative_effect, session_estimate
from contracts.catalog import Catalog
from contracts.columns import Columns
from contracts.config import ConfigError
from contracts.seeds import request_seed
from recommenders.base import Recommender, Request

BATCH = 1024  # requests asked of the candidate at once
SHRINK = 5.0  # pseudo-decisions of prior in the track and artist mean rewards of the reward model


def decision_requests(events: pd.DataFrame, service_seed: int) -> tuple[pd.DataFrame, list[Request]]:
    """(the decision rows, their requests as the service built them), from `session_events`' rows."""
    users = events[Columns.USER].to_numpy()
    sessions = events[Columns.SESSION].to_numpy()
    tracks = events[Columns.TRACK].to_numpy()
    times = events[Columns.TIME].to_numpy(dtype=np.float64)
    ts_ms = events[Columns.TS].astype("datetime64[ms]").astype("int64").to_numpy()
    decision = events[DecisionColumns.DECISION].to_numpy()
    requests: list[Request] = []
    history: list[int] = []
    listened: list[float] = []
    for i in range(len(events)):
        if i == 0 or users[i] != users[i - 1] or sessions[i] != sessions[i - 1]:
            history, listened = [], []
        history.append(int(tracks[i]))
        listened.append(float(times[i]))
        if decision[i]:
            seed = request_seed(service_seed, int(sessions[i]), int(ts_ms[i]))
            requests.append(Request(int(users[i]), int(tracks[i]), float(times[i]), tuple(history), tuple(listened), seed, None))
    return events[decision].reset_index(drop=True), requests


def candidate_tracks(candidate: Recommender, name: str, requests: Sequence[Request]) -> np.ndarray:
    """(n,) the candidate's track per request; `ConfigError` when it answers stochastically."""
    out = np.empty(len(requests), dtype=np.int64)
    for start in range(0, len(requests), BATCH):
        answers = candidate.recommend_batch(requests[start : start + BATCH])
        for k, answer in enumerate(answers):
            if answer.propensity is not None and answer.propensity < 1.0:
                raise ConfigError(f"candidate {name!r} answered with propensity {answer.propensity}: only deterministic candidates can be evaluated")
            out[start + k] = int(answer.track)
    return out


def _loo_mean(keys: np.ndarray, rewards: np.ndarray, query: np.ndarray, own: np.ndarray, prior: float) -> np.ndarray:
    """Shrunk mean reward of each `query` key over the logged decisions, leaving out the row's own
    decision where `own` (the query is the logged key), so the model never sees the reward it predicts."""
    frame = pd.DataFrame({"k": keys, "r": rewards}).groupby("k")["r"].agg(["sum", "count"])
    sums = frame["sum"].reindex(query).fillna(0.0).to_numpy() - np.where(own, rewards, 0.0)
    counts = frame["count"].reindex(query).fillna(0.0).to_numpy() - own.astype(float)
    return (sums + SHRINK * prior) / (counts + SHRINK)


def reward_features(decisions: pd.DataFrame, requests: Sequence[Request], tracks: np.ndarray, catalog: Catalog) -> np.ndarray:
    """(n, 7) features of serving `tracks` in each decision's context: constant, same artist as the
    track just played, share of the session by that artist, the fraction just listened, and the
    listener's, the track's and the artist's shrunk mean logged reward (leaving out the decision's own)."""
    rewards = decisions[DecisionColumns.REWARD].to_numpy(dtype=np.float64)
    logged = decisions[Columns.RECOMMENDATION].to_numpy(dtype=np.int64)
    users = decisions[Columns.USER].to_numpy()
    prior = float(rewards.mean())
    artist = catalog.artist
    same = np.array([artist[t] == artist[r.track] for t, r in zip(tracks, requests, strict=True)], dtype=float)
    share = np.array([np.mean(artist[np.asarray(r.history)] == artist[t]) for t, r in zip(tracks, requests, strict=True)])
    played = np.array([r.time for r in requests])
    own = tracks == logged
    user_mean = _loo_mean(users, rewards, users, np.ones(len(users), bool), prior)
    track_mean = _loo_mean(logged, rewards, tracks, own, prior)
    artist_mean = _loo_mean(artist[logged], rewards, artist[tracks], own, prior)
    return np.column_stack([np.ones(len(tracks)), same, share, played, user_mean, track_mean, artist_mean])


@dataclass(frozen=True)
class CandidateReport:
    """A candidate's off-policy estimates against the logging policy's own value.

    Attributes:
        candidate: the candidate's registry name.
        decisions: the estimators' results per decision (mean listen fraction per step).
        sessions: per-decision importance sampling per session (time per session).
        logging_decision: the logging policy's mean listen fraction per decision (on-policy).
        logging_session: its mean time per session.
        agreement: share of decisions on which the candidate would have served the logged track.
    """

    candidate: str
    decisions: list[OpeEstimate]
    sessions: list[OpeEstimate]
    logging_decision: float
    logging_session: float
    agreement: float

    def to_dicts(self) -> list[dict[str, Any]]:
        """One row per estimate: level, estimator, value, interval, effect against the logging policy in %."""
        rows = []
        for level, results, base in (("decision", self.decisions, self.logging_decision), ("session", self.sessions, self.logging_session)):
            for result in results:
                effect, low, high = relative_effect(result, base)
                rows.append({"candidate": self.candidate, "level": level, **result._asdict(), "logging": base, "effect": effect, "effect_lower": low, "effect_upper": high})
        return rows

    def to_string(self) -> str:
        lines = [
            f"candidate {self.candidate!r}: serves the logged track on {self.agreement:.1%} of the decisions",
            f"{'level':9} {'estimator':10} {'value':>8} {'95% interval':>19} {'effect vs logging':>28}",
        ]
        for row in self.to_dicts():
            lines.append(
                f"{row['level']:9} {row['estimator']:10} {row['value']:8.4f} [{row['lower']:8.4f}, {row['upper']:8.4f}] "
                f"{row['effect']:+8.1f}% [{row['effect_lower']:+7.1f}, {row['effect_upper']:+7.1f}]"
            )
        lines.append(f"logging policy: {self.logging_decision:.4f} per decision, {self.logging_session:.4f} per session")
        return "\n".join(lines)


def evaluate(
    events: pd.DataFrame, catalog: Catalog, candidate: Recommender, name: str, *, service_seed: int = 0, tau: float = DEFAULT_TAU, alpha: float | None = None
) -> CandidateReport:
    """Every estimator's value of `candidate` from the logged `events` of one arm (`session_events`)."""
    decisions, requests = decision_requests(events, service_seed)
    if decisions.empty:
        raise AbtestError("no logged decisions with a reward in this arm")
    if decisions[Columns.PROPENSITY].isna().any():
        raise AbtestError(f"{int(decisions[Columns.PROPENSITY].isna().sum())} decisions have no propensity: the logging policy cannot be reweighted")
    chosen = candidate_tracks(candidate, name, requests)
    rewards = decisions[DecisionColumns.REWARD].to_numpy(dtype=np.float64)
    logging = decisions[Columns.PROPENSITY].to_numpy(dtype=np.float64)
    logged = decisions[Columns.RECOMMENDATION].to_numpy(dtype=np.int64)
    users = decisions[Columns.USER].to_numpy()
    target = (chosen == logged).astype(np.float64)
    # Cross-fitting: the reward model predicting a listener's decisions never saw that listener's.
    fold = (users % 2).astype(bool)
    x_logged = reward_features(decisions, requests, logged, catalog)
    x_target = reward_features(decisions, requests, chosen, catalog)
    q_logged, q_target = np.empty(len(rewards)), np.empty(len(rewards))
    coefficients = fit_reward_model(x_logged, rewards, [~fold, fold]) if fold.any() and (~fold).any() else fit_reward_model(x_logged, rewards) * 2
    for mask, beta in ((fold, coefficients[0]), (~fold, coefficients[1])):
        q_logged[mask], q_target[mask] = np.clip(x_logged[mask] @ beta, 0, 1), np.clip(x_target[mask] @ beta, 0, 1)
    per_decision = [
        estimate(e, rewards, logging, target, q_logged=q_logged, q_target=q_target, clusters=users, tau=tau, alpha=alpha) for e in ESTIMATORS
    ]
    first = events[events[DecisionColumns.STEP] == 0][Columns.TIME].to_numpy(dtype=np.float64)
    baseline = float(first.mean()) if len(first) else 0.0
    session_ids = decisions[Columns.USER].astype(str).to_numpy() + ":" + decisions[Columns.SESSION].astype(str).to_numpy()
    steps = decisions.groupby([Columns.USER, Columns.SESSION]).cumcount().to_numpy()
    per_session = [session_estimate(e, rewards, logging, target, session_ids, steps, users, baseline=baseline, alpha=alpha) for e in ("pdis", "wpdis")]
    session_time = events.groupby([Columns.USER, Columns.SESSION])[Columns.TIME].sum()
    return CandidateReport(name, per_decision, per_session, float(rewards.mean()), float(session_time.mean()), float(target.mean()))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log", "log_path", type=click.Path(path_type=Path), required=True, help="The event log served by the logging policy.")
@click.option("--world", type=click.Path(file_okay=False, path_type=Path), required=True, help="The world the log was served on.")
@click.option("--recommender", "names", multiple=True, required=True, help="Candidate registry name (repeatable).")
@click.option("--artifact", "artifacts", multiple=True, help="NAME=DIR: the artifact of a candidate (repeatable).")
@click.option("--experiment", default=None, help="Experiment whose arm logged the decisions (default: the serving one).")
@click.option("--treatment", type=click.IntRange(min=0), default=0, show_default=True, help="The logging arm's treatment index.")
@click.option("--service-seed", type=int, default=0, show_default=True, help="The service's seed (`seed` in config/botify.yml), for the request seeds.")
@click.option("--tau", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TAU, show_default=True, help="Switch-DR's weight threshold.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def main(log_path: Path, world: Path, names: tuple[str, ...], artifacts: tuple[str, ...], experiment: str | None, treatment: int,
         service_seed: int, tau: float, fmt: str) -> None:
    """Off-policy estimates of candidate recommenders from the decisions of one logged arm."""
    from recommenders import registry

    paths: dict[str, str] = {}
    for pair in artifacts:
        name, sep, directory = pair.partition("=")
        if not sep or not name or not directory:
            raise click.ClickException(f"--artifact {pair!r} must look like NAME=DIR")
        paths[name] = directory
    try:
        catalog = Catalog(world)
        with EventLog.open(log_path) as log:
            info = log.resolve_experiment(experiment)
            events = session_events(log, info.name, treatment)
        reports = []
        for name in names:
            candidate = registry.make(name, catalog, {}, paths.get(name))
            reports.append(evaluate(events, catalog, candidate, name, service_seed=service_seed, tau=tau))
    except (AbtestError, ConfigError, LookupError, ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    if fmt == "json":
        click.echo(json.dumps([row for report in reports for row in report.to_dicts()], indent=2))
    else:
        click.echo("\n\n".join(report.to_string() for report in reports))


if __name__ == "__main__":
    main()
