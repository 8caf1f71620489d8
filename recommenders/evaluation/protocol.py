"""The offline protocol: rank a held-out liked track of a later session, no leakage.

The log is split by simulated time: a model is trained on the sessions up to a point (the
artifact records the last session start it saw), and tested on the sessions that started
after it. For each test session one playback is held out: a liked track (listened at least
`like_threshold`) at position >= 1 that the listener had not heard in the training period nor
earlier in the session. The request is the session up to the track before it, exactly what
the service would have been asked.

Two views of each case:

- sampled: the held-out track among `negatives` tracks the listener never heard (neither in
  training nor in the test session), drawn uniformly; MRR and Hit@1/5/10 of the ranker's
  order of these candidates (ties broken at random: candidates are shuffled first);
- full catalog: the ranker's top k of the whole catalog (never a track already played in the
  session) against every track liked from the held-out position to the end of the session;
  Recall@k and NDCG@k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommenders import metrics
from recommenders.base import Request
from recommenders.models.ranking import Ranker
from recommenders.models.sessions import SessionLog, sample_excluding

NEGATIVES = 50
HIT_KS = (1, 5, 10)


class EvaluationError(ValueError):
    """No test cases, or a ranker that cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class Cases:
    """Test cases, one per test session with an eligible held-out like.

    Attributes:
        requests: the request of each case (the session up to the held-out track).
        positives: (n,) int64 the held-out liked track.
        negatives: (n, m) int64 unheard tracks sampled for the sampled view.
        relevant: per case, the tracks liked from the held-out position to the session's end.
    """

    requests: list[Request]
    positives: np.ndarray
    negatives: np.ndarray
    relevant: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.requests)


def _keys(user: np.ndarray, track: np.ndarray, n_tracks: int) -> np.ndarray:
    return user.astype(np.int64) * n_tracks + track.astype(np.int64)


def build_cases(train: SessionLog, test: SessionLog, n_tracks: int, like_threshold: float, negatives: int = NEGATIVES, seed: int = 0) -> Cases:
    """Cases from the `test` sessions, with "heard" taken from `train`; deterministic for a seed."""
    if negatives < 1:
        raise ValueError(f"negatives == {negatives}, must be >= 1")
    rng = np.random.default_rng(seed)
    heard = np.unique(_keys(train.user, train.track, n_tracks))
    liked = test.liked(like_threshold)
    requests: list[Request] = []
    positives: list[int] = []
    negative_rows: list[np.ndarray] = []
    relevant: list[np.ndarray] = []
    for session in range(test.n_sessions):
        start, stop = test.offsets[session], test.offsets[session + 1]
        user = int(test.user[start])
        tracks, times = test.track[start:stop], test.time[start:stop]
        known = np.isin(_keys(np.full(len(tracks), user), tracks, n_tracks), heard)
        first = np.zeros(len(tracks), dtype=bool)
        first[np.unique(tracks, return_index=True)[1]] = True
        eligible = np.flatnonzero(liked[start:stop] & first & ~known & (np.arange(len(tracks)) >= 1))
        if len(eligible) == 0:
            continue
        p = int(rng.choice(eligible))
        lo, hi = np.searchsorted(heard, [user * n_tracks, (user + 1) * n_tracks])
        excluded = np.union1d(tracks, heard[lo:hi] - user * n_tracks)
        if n_tracks - len(excluded) < negatives:
            continue
        negative_rows.append(sample_excluding(rng, n_tracks, excluded, negatives))
        requests.append(
            Request(user=user, track=int(tracks[p - 1]), time=float(times[p - 1]), history=tuple(int(t) for t in tracks[:p]),
                    times=tuple(float(t) for t in times[:p]), seed=seed)
        )
        positives.append(int(tracks[p]))
        later = tracks[p:][liked[start:stop][p:]]
        relevant.append(np.setdiff1d(later, tracks[:p]))
    return Cases(
        requests=requests,
        positives=np.asarray(positives, dtype=np.int64),
        negatives=np.asarray(negative_rows, dtype=np.int64).reshape(len(requests), negatives),
        relevant=relevant,
    )


def evaluate(ranker: Ranker, cases: Cases, k: int = 10, seed: int = 0) -> dict[str, float]:
    """MRR, Hit@1/5/10 (sampled view) and Recall@k, NDCG@k (full catalog) of `ranker` on `cases`."""
    if len(cases) == 0:
        raise EvaluationError("no test cases: the test sessions have no liked track the listener had not heard before")
    if not isinstance(ranker, Ranker):
        raise EvaluationError(f"{type(ranker).__name__} cannot be evaluated offline: it has no score(requests, candidates) and rank(requests, k)")
    rng = np.random.default_rng(seed)
    candidates = np.concatenate([cases.positives[:, None], cases.negatives], axis=1)
    candidates = rng.permuted(candidates, axis=1)
    scores = np.asarray(ranker.score(cases.requests, candidates), dtype=np.float64)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    ranked = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable"), axis=1)
    result = {"cases": float(len(cases)), "mrr": metrics.mrr(ranked, cases.positives)}
    for hit_k in HIT_KS:
        result[f"hit@{hit_k}"] = metrics.hit_rate(ranked, cases.positives, hit_k)
    top = ranker.rank(cases.requests, k)
    with_relevant = [i for i, items in enumerate(cases.relevant) if len(items)]
    result[f"recall@{k}"] = metrics.recall(top[with_relevant], [cases.relevant[i] for i in with_relevant], k)
    result[f"ndcg@{k}"] = metrics.ndcg(top[with_relevant], [cases.relevant[i] for i in with_relevant], k)
    return result
