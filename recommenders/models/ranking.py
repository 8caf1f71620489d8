"""Scoring contract of the learned models, shared by serving and offline evaluation.

A `Ranker` scores candidate tracks for a batch of requests (`score`) and returns its top-k
tracks (`rank`), never a track already played in the request's session. `CatalogScorer`
implements both for anything that scores the whole catalog (subclasses fill in `_score_all`);
`ScoringRecommender` adds the plugin's `recommend` / `recommend_batch`. Everything here is numpy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from contracts.catalog import Catalog
from recommenders.base import NotFittedError, Recommendation, Request, Trainable
from recommenders.models.candidates import InvertedFile, Scan, Workspace, default_lists

CHUNK = 256  # requests scored at once: bounds memory at CHUNK x n_tracks floats
CANDIDATE_CHUNK = 1024  # requests served at once by the candidate stage (memory: CANDIDATE_CHUNK x scanned tracks)
DENSE_UNRELEASED = 64  # more tracks than this unreleased on a request's day: mask them over the scan, not pair by pair
PAD = -1  # padding of track arrays


@cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """Run numpy's BLAS on one thread inside the block.

    Serving multiplies small matrices per request; a multi-threaded BLAS gains nothing there and,
    on a busy machine, its threads wait for cores and turn a 0.2 ms product into tens of ms.
    The service runs many requests in parallel instead.
    """
    return _blas_controller().limit(limits=1, user_api="blas")


@runtime_checkable
class Ranker(Protocol):
    """Anything offline evaluation can rank with."""

    def score(self, requests: Sequence[Request], candidates: np.ndarray) -> np.ndarray:
        """(B, C) scores of `candidates` (B, C track ids) for each request; higher is better."""
        ...

    def rank(self, requests: Sequence[Request], k: int) -> np.ndarray:
        """(B, k) track ids, best first, none of them already played in the request's session."""
        ...


@dataclass(frozen=True)
class Context:
    """A batch of requests as arrays; track ids outside the catalog are dropped.

    Attributes:
        users: (B,) int64 external user ids.
        recent: (B, L) int64 the session's last L tracks, newest first, `PAD` where shorter.
        recent_times: (B, L) float32 fractions listened for `recent`, 0 at padding.
        first: (B,) int64 the session's first track (the listener's own choice), `PAD` if unknown.
        played_rows, played_tracks: (P,) int64 every (request, track) pair played in the session.
        days: (B,) int64 the request's simulated day, -1 when it did not say (every track released).
    """

    users: np.ndarray
    recent: np.ndarray
    recent_times: np.ndarray
    first: np.ndarray
    played_rows: np.ndarray
    played_tracks: np.ndarray
    days: np.ndarray

    @classmethod
    def from_requests(cls, requests: Sequence[Request], history: int, n_tracks: int) -> Context:
        """Arrays for `requests`, keeping the last `history` tracks of each session."""
        batch = len(requests)
        tracks: list[int] = []
        times: list[float] = []
        lengths = np.empty(batch, dtype=np.int64)
        for row, request in enumerate(requests):  # plain tuples here, one numpy conversion below
            session, heard = request.history, request.times
            if session:
                if len(heard) != len(session):
                    heard = (1.0,) * len(session)
                if session[-1] != request.track:  # a history that does not end with the current track
                    session, heard = (*session, request.track), (*heard, request.time)
                else:
                    heard = (*heard[:-1], request.time)
            else:
                session, heard = (request.track,), (request.time,)
            tracks.extend(session)
            times.extend(heard)
            lengths[row] = len(session)
        played = np.asarray(tracks, dtype=np.int64)
        listened = np.asarray(times, dtype=np.float32)
        rows = np.repeat(np.arange(batch, dtype=np.int64), lengths)
        valid = (played >= 0) & (played < n_tracks)
        played, listened, rows = played[valid], np.clip(listened[valid], 0.0, 1.0), rows[valid]
        counts = np.bincount(rows, minlength=batch)
        starts = np.cumsum(counts) - counts
        back = counts[rows] - 1 - (np.arange(len(rows)) - starts[rows])  # 0 for a session's newest track
        keep = back < history
        recent = np.full((batch, history), PAD, dtype=np.int64)
        recent_times = np.zeros((batch, history), dtype=np.float32)
        recent[rows[keep], back[keep]] = played[keep]
        recent_times[rows[keep], back[keep]] = listened[keep]
        first = np.full(batch, PAD, dtype=np.int64)
        first[counts > 0] = played[starts[counts > 0]]
        return cls(
            users=np.asarray([request.user for request in requests], dtype=np.int64),
            recent=recent,
            recent_times=recent_times,
            first=first,
            played_rows=rows,
            played_tracks=played,
            days=np.asarray([-1 if request.day is None else request.day for request in requests], dtype=np.int64),
        )

    def subset(self, rows: np.ndarray) -> Context:
        """The requests at `rows` (ascending) as a `Context` of their own."""
        keep = np.isin(self.played_rows, rows)
        return Context(
            users=self.users[rows],
            recent=self.recent[rows],
            recent_times=self.recent_times[rows],
            first=self.first[rows],
            played_rows=np.searchsorted(rows, self.played_rows[keep]),
            played_tracks=self.played_tracks[keep],
            days=self.days[rows],
        )


def played_artists(context: Context, artist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, artists, plays): each (request, artist) pair played in the request's session, and how
    often (float32), in row-then-artist order."""
    artists = artist[context.played_tracks]
    width = int(artists.max()) + 1 if len(artists) else 1  # the played artists' range, not the catalog's: no pass over every track
    # One int64 key per pair, row-major: a 1-D unique sorts numbers, `unique(axis=1)` sorts records, several times slower.
    keys, plays = np.unique(context.played_rows * width + artists, return_counts=True)
    return keys // width, keys % width, plays.astype(np.float32)


def lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[i] where keys[i] == wanted (keys ascending and distinct), 0 where `wanted` is not a key."""
    if not len(keys):
        return np.zeros(len(wanted), dtype=values.dtype)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, values[at], values.dtype.type(0))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(B, k) column indices of the k highest scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    if k == 1:
        return np.argmax(scores, axis=1)[:, None]
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    return np.take_along_axis(part, order, axis=1)


class CatalogScorer:
    """A `Ranker` for anything that can score every catalog track; subclasses fill in `_score_all`.

    Needs the attributes `catalog` and `history_length` (session tracks kept in a `Context`).
    Serving ranks by `_serving_scores`: the model's scores lowered by `artist_penalty` for each
    earlier play of a track's artist in the session, and -inf for tracks already played or not
    yet released on the request's `day`.

    Candidate stage (`candidates == "ivf"`): a model whose score is an inner product of a query
    vector and an item vector (`_item_vectors`, `_query_vectors`) can rank from an inverted file
    instead (`candidates.InvertedFile`): each request scans its `n_probe` best cells of
    `n_lists` and the same serving rules pick the best scanned track. Tracks the model must
    always consider (`_forced`, e.g. boosted ones) are scored exactly beside the scan. A request
    whose scanned tracks are all excluded is served by exact scoring.
    """

    catalog: Catalog
    history_length: int = 10
    artist_penalty: float = 0.0
    candidates: str = "exact"
    n_lists: int = 0
    n_probe: int = 1
    _index: InvertedFile | None = None
    _workspace: Workspace | None = None
    _artist_items: np.ndarray | None = None  # item vectors in artist order, for a model with forced candidates
    _artist_place: np.ndarray  # each track's row in `_artist_items`

    def _score_all(self, context: Context) -> np.ndarray:
        """(B, n_tracks) float32 model scores for the batch."""
        raise NotImplementedError

    def _serving_scores(self, context: Context) -> np.ndarray:
        # Each rule touches only the tracks it concerns (the few unreleased ones, the session's
        # artists' tracks): dense (B, n_tracks) masks cost more than the model's own scoring.
        scores = self._score_all(context)
        for row in np.flatnonzero(context.days >= 0):
            scores[row, self.catalog.released_after(int(context.days[row]))] = -np.inf
        if self.artist_penalty > 0:
            for row, artist, plays in zip(*played_artists(context, self.catalog.artist), strict=True):
                scores[row, self.catalog.tracks_of_artist(artist)] -= self.artist_penalty * plays
        scores[context.played_rows, context.played_tracks] = -np.inf
        return scores

    # Candidate stage ---------------------------------------------------------------------------

    def _item_vectors(self) -> np.ndarray:
        """(n_tracks, D) item side of the model's score: score = query . item (+ the bonus of `_forced` tracks)."""
        raise NotImplementedError(f"{type(self).__name__} has no candidate stage")

    def _query_vectors(self, context: Context) -> np.ndarray:
        """(B, D) query side of the model's score for a batch."""
        raise NotImplementedError(f"{type(self).__name__} has no candidate stage")

    def _forced(self, context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, tracks, bonus): distinct pairs, by row then track, that are candidates whatever the
        scan finds, and what the model adds to their query . item (none by default)."""
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)

    def _restrict(self, context: Context, scores: np.ndarray, forced_rows: np.ndarray, forced_tracks: np.ndarray, forced_columns: np.ndarray) -> None:
        """Hook: change the candidate scores after the serving rules (in place); nothing by default."""

    def _build_index(self) -> None:
        """Build the inverted file when the candidate stage is on (called once the model is fitted or loaded)."""
        self._index = None
        if self.candidates == "ivf":
            order = np.argsort(self.catalog.artist, kind="stable").astype(np.int64)
            self._artist_index = (order, np.searchsorted(self.catalog.artist[order], np.arange(self.catalog.n_artists + 1)).astype(np.int64))
            items = self._item_vectors()
            self._index = InvertedFile(items, self.n_lists or default_lists(len(items)))
            self._artist_items = None
            if type(self)._forced is not CatalogScorer._forced:  # a model with forced candidates scores them by artist
                self._artist_items = np.ascontiguousarray(items[order])
                self._artist_place = np.empty(len(order), dtype=np.int64)
                self._artist_place[order] = np.arange(len(order))
            self._workspace = Workspace()

    def _rule_pairs(self, context: Context, scan: Scan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, tracks, amount) the serving rules subtract: the artist penalty, then inf for unreleased and played tracks."""
        assert self._index is not None, "the serving rules of a scan need the inverted file"
        rows, tracks, amounts = [], [], []
        if self.artist_penalty > 0:
            pair_rows, artists, plays = played_artists(context, self.catalog.artist)
            order, offsets = self._artist_index
            counts = offsets[artists + 1] - offsets[artists]
            firsts = np.repeat(offsets[artists] - (np.cumsum(counts) - counts), counts)
            rows.append(np.repeat(pair_rows, counts))
            tracks.append(order[firsts + np.arange(int(counts.sum()))])
            amounts.append(np.repeat(self.artist_penalty * plays, counts))
        for day in np.unique(context.days[context.days >= 0]):
            unreleased = self.catalog.released_after(int(day))
            day_rows = np.flatnonzero(context.days == day)
            if len(unreleased) > DENSE_UNRELEASED:  # many: one comparison over the scanned tracks
                late = self.catalog.release_day[np.maximum(self._index.scanned_tracks(scan, day_rows), 0)] > day
                scan.scores[day_rows] = np.where(late, -np.inf, scan.scores[day_rows])
                unreleased = unreleased[:0]
            rows.append(np.repeat(day_rows, len(unreleased)))
            tracks.append(np.tile(unreleased, len(day_rows)))
            amounts.append(np.full(len(day_rows) * len(unreleased), np.inf, dtype=np.float32))
        rows.append(context.played_rows)
        tracks.append(context.played_tracks)
        amounts.append(np.full(len(context.played_rows), np.inf, dtype=np.float32))
        return np.concatenate(rows), np.concatenate(tracks), np.concatenate(amounts).astype(np.float32)

    def _forced_rule_amounts(self, context: Context, rows: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """(F,) float32 what the serving rules subtract from the forced pairs (distinct, by row then track):
        the artist penalty, inf for played tracks (unreleased ones are -inf already).

        Looked up per (request, artist) and per played track: matching every rule pair against
        the forced pairs costs a search per session-artist track.
        """
        amounts = np.zeros(len(rows), dtype=np.float32)
        if self.artist_penalty > 0:
            pair_rows, artists, plays = played_artists(context, self.catalog.artist)
            n_artists = self.catalog.n_artists
            amounts += lookup(pair_rows * n_artists + artists, self.artist_penalty * plays, rows * n_artists + self.catalog.artist[tracks])
        n_tracks = self.catalog.n_tracks
        played = lookup(rows * n_tracks + tracks, np.arange(1, len(rows) + 1), context.played_rows * n_tracks + context.played_tracks) - 1
        amounts[played[played >= 0]] = np.inf
        return amounts

    def _forced_products(self, queries: np.ndarray, rows: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """(F,) float32 query . item of each forced (row, track) pair (by row), one product per artist of the forced tracks.

        Forced tracks come mostly a whole artist at a time (the session artists' tracks) and the
        item vectors are kept in artist order, so an artist costs one (rows that force any of its
        tracks) x (its tracks) product over vectors stored together, a few hundred products per
        batch. A product per request over its forced tracks' vectors spent most of its time
        gathering them from the whole catalog.
        """
        assert self._artist_items is not None, "forced candidates need the item vectors in artist order (_build_index)"
        _, offsets = self._artist_index
        artists = self.catalog.artist[tracks]
        # Stable, so each artist's pairs keep their row order; 16-bit keys sort by radix.
        by_artist = np.argsort(artists.astype(np.uint16 if self.catalog.n_artists <= 1 << 16 else np.int64), kind="stable")
        artist_sorted, row_sorted = artists[by_artist], rows[by_artist]
        opens = np.ones(len(by_artist), dtype=bool)  # where a new (artist, row) product row begins
        opens[1:] = (artist_sorted[1:] != artist_sorted[:-1]) | (row_sorted[1:] != row_sorted[:-1])
        product_row = np.empty(len(by_artist), dtype=np.int64)
        product_row[by_artist] = np.cumsum(opens) - 1
        row_artist, row_request = artist_sorted[opens], row_sorted[opens]
        bounds = np.concatenate([[0], np.flatnonzero(row_artist[1:] != row_artist[:-1]) + 1, [len(row_artist)]])
        group_artist = row_artist[bounds[:-1]]
        sizes = offsets[group_artist + 1] - offsets[group_artist]
        starts = np.concatenate([[0], np.cumsum(np.diff(bounds) * sizes)])  # each artist's product in `flat`, row-major
        flat = np.empty(int(starts[-1]), dtype=np.float32)
        for group, artist in enumerate(group_artist.tolist()):
            first, last = bounds[group], bounds[group + 1]
            out = flat[starts[group] : starts[group + 1]].reshape(last - first, sizes[group])
            np.matmul(queries[row_request[first:last]], self._artist_items[offsets[artist] : offsets[artist + 1]].T, out=out)
        group_of = np.repeat(np.arange(len(group_artist)), np.diff(bounds))
        row_start = starts[group_of] + (np.arange(len(row_artist)) - bounds[group_of]) * sizes[group_of]
        return flat[row_start[product_row] + self._artist_place[tracks] - offsets[artists]]

    def _candidate_serving(self, context: Context, k: int) -> np.ndarray:
        """(B, k) tracks ranked from the candidate stage, best first (-1 where a row has fewer candidates)."""
        assert self._index is not None
        index = self._index
        batch = len(context.users)
        queries = self._query_vectors(context)
        forced_rows, forced_tracks, bonus = self._forced(context)
        counts = np.bincount(forced_rows, minlength=batch)
        scan = index.scan(queries, self.n_probe, extra=int(counts.max()) if len(forced_rows) else 0, workspace=self._workspace)
        width = scan.width * scan.cells.shape[1]  # forced candidates sit in the columns after it
        rows, rule_tracks, amounts = self._rule_pairs(context, scan)
        scores = scan.scores
        forced_columns = np.zeros(0, np.int64)
        if len(forced_rows):
            columns = index.locate(scan, forced_rows, forced_tracks)
            scores[forced_rows[columns >= 0], columns[columns >= 0]] = -np.inf  # scored once, below
            forced_columns = width + np.arange(len(forced_rows)) - (np.cumsum(counts) - counts)[forced_rows]
            exact = bonus + self._forced_products(queries, forced_rows, forced_tracks)
            days = context.days[forced_rows]
            exact[(days >= 0) & (self.catalog.release_day[forced_tracks] > days)] = -np.inf
            exact -= self._forced_rule_amounts(context, forced_rows, forced_tracks)
            scores[forced_rows, forced_columns] = exact
        columns = index.locate(scan, rows, rule_tracks)
        hit = columns >= 0
        scores[rows[hit], columns[hit]] -= amounts[hit]  # a forced track's scanned copy is -inf and stays so
        self._restrict(context, scores, forced_rows, forced_tracks, forced_columns)
        best = top_k(scores, k)
        out = np.full((batch, k), -1, dtype=np.int64)  # a scan narrower than k leaves the rest -1
        live = np.isfinite(np.take_along_axis(scores, best, axis=1))
        rows, ranks = np.nonzero(live & (best < width))
        out[rows, ranks] = index.tracks_at(scan, rows, best[rows, ranks])
        if len(forced_rows):
            rows, ranks = np.nonzero(live & (best >= width))  # a live forced column: the row's (column - width)-th forced pair
            out[rows, ranks] = forced_tracks[(np.cumsum(counts) - counts)[rows] + best[rows, ranks] - width]
        return out

    def _check_fitted(self) -> None:
        """Hook for trainable subclasses."""

    _artist_index: tuple[np.ndarray, np.ndarray]  # (tracks by artist, offsets of each artist), for the candidate stage

    def _contexts(self, requests: Sequence[Request], chunk: int = CHUNK) -> Iterator[tuple[int, Context]]:
        for start in range(0, len(requests), chunk):
            yield start, Context.from_requests(requests[start : start + chunk], self.history_length, self.catalog.n_tracks)

    def score(self, requests: Sequence[Request], candidates: np.ndarray) -> np.ndarray:
        """(B, C) model scores of `candidates` (B, C external track ids), before serving rules."""
        self._check_fitted()
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or len(candidates) != len(requests):
            raise ValueError(f"candidates must have shape ({len(requests)}, C), got {candidates.shape}")
        if candidates.size and (candidates.min() < 0 or candidates.max() >= self.catalog.n_tracks):
            raise ValueError(f"candidates must be track ids in [0, {self.catalog.n_tracks})")
        out = np.empty(candidates.shape, dtype=np.float32)
        with single_threaded_blas():
            for start, context in self._contexts(requests):
                stop = start + len(context.users)
                out[start:stop] = np.take_along_axis(self._score_all(context), candidates[start:stop], axis=1)
        return out

    def rank(self, requests: Sequence[Request], k: int) -> np.ndarray:
        """(B, k) the k tracks serving would rank first, best first, none already played.

        With the candidate stage on, the k best scanned tracks (requests with fewer than k
        candidates left, or none, are ranked by exact scoring).
        """
        self._check_fitted()
        if k <= 0:
            raise ValueError(f"k == {k}, must be > 0")
        out = np.empty((len(requests), min(k, self.catalog.n_tracks)), dtype=np.int64)
        with single_threaded_blas():
            if self._index is None:
                for start, context in self._contexts(requests):
                    out[start : start + len(context.users)] = top_k(self._serving_scores(context), k)
                return out
            for start, context in self._contexts(requests, CANDIDATE_CHUNK):
                ranked = self._candidate_serving(context, out.shape[1])
                short = np.flatnonzero((ranked < 0).any(axis=1))
                if len(short):  # too few candidates survived the rules: exact scoring for these rows
                    ranked[short] = top_k(self._serving_scores(context.subset(short)), out.shape[1])
                out[start : start + len(context.users)] = ranked
        return out


class ScoringRecommender(CatalogScorer, Trainable):
    """A trainable recommender served by ranking the whole catalog (see `CatalogScorer`)."""

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(self.name)

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        """The best unplayed track for each request (a deterministic choice: propensity 1), in vectorised chunks."""
        if not requests:
            return []
        return [Recommendation(int(track), 1.0) for track in self.rank(requests, 1)[:, 0]]

    def _recommend(self, request: Request) -> Recommendation:
        return self._recommend_batch([request])[0]
