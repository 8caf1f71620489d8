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
from recommenders.base import NO_DAY, NotFittedError, Recommendation, Request, RequestBatch, Trainable
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
        users = np.asarray([request.user for request in requests], dtype=np.int64)
        days = np.asarray([-1 if request.day is None else request.day for request in requests], dtype=np.int64)
        return cls._of_sessions(users, np.asarray(tracks, dtype=np.int64), np.asarray(times, dtype=np.float32), lengths, days, history, n_tracks)

    @classmethod
    def from_batch(cls, batch: RequestBatch, history: int, n_tracks: int) -> Context:
        """`from_requests` of the requests in `batch`, without a Python object per request."""
        lengths = np.diff(batch.offsets)
        size = len(batch)
        ends = batch.offsets[1:] - 1
        last = batch.history[np.maximum(ends, 0)] if len(batch.history) else np.full(size, -1, dtype=np.int64)
        grow = (lengths == 0) | (last != batch.tracks)  # a session that does not end with the track just played gets it
        # Times missing for a history (NaN in the batch) count as heard in full, as in `from_requests`.
        heard = np.where(np.isnan(batch.history_times), 1.0, batch.history_times)
        sessions = lengths + grow
        starts = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(sessions, out=starts[1:])
        tracks = np.empty(int(starts[-1]), dtype=np.int64)
        times = np.empty(int(starts[-1]), dtype=np.float64)
        moved = np.arange(len(batch.history)) + np.repeat(starts[:-1] - batch.offsets[:-1], lengths)
        tracks[moved], times[moved] = batch.history, heard
        newest = starts[1:] - 1  # the track just played: appended, or the history's last with this request's time
        tracks[newest[grow]] = batch.tracks[grow]
        times[newest] = batch.times
        days = np.where(batch.days == NO_DAY, -1, batch.days)
        return cls._of_sessions(batch.users.astype(np.int64), tracks, times.astype(np.float32), sessions, days, history, n_tracks)

    @classmethod
    def _of_sessions(
        cls, users: np.ndarray, played: np.ndarray, listened: np.ndarray, lengths: np.ndarray, days: np.ndarray, history: int, n_tracks: int
    ) -> Context:
        """The arrays from every request's session (its tracks and times one after another, `lengths` each)."""
        batch = len(users)
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
        return cls(users=users, recent=recent, recent_times=recent_times, first=first, played_rows=rows, played_tracks=played, days=days)

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


def best_per_row(rows: np.ndarray, values: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch,) the highest of `values` per row and (batch,) its index (the first on ties); -inf and -1 for a
    row without values. `rows` is ascending."""
    best = np.full(batch, -np.inf, dtype=np.float32)
    at = np.full(batch, -1, dtype=np.int64)
    if len(rows):
        starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
        highest = np.maximum.reduceat(values, starts)
        segment = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(rows))))
        hits = np.flatnonzero(values == highest[segment])
        firsts = hits[np.concatenate([[True], segment[hits][1:] != segment[hits][:-1]])] if len(hits) else hits
        best[rows[starts]] = highest
        at[rows[starts[segment[firsts]]]] = firsts
    return best, at


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
    always consider (`_forced`, e.g. boosted ones; `_forced_artists`, every track of an artist)
    are scored exactly beside the scan. A request whose scanned tracks are all excluded is served
    by exact scoring.
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

    def _forced_artists(self, context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, artists, bonus): distinct (request, artist) pairs, by row then artist, every track of which is a
        candidate whatever the scan finds, and what the model adds to those tracks' query . item (none by default).

        Unlike `_forced` pairs, only each pair's best tracks reach the ranking (`_artist_candidates`):
        the bonus and the artist penalty are the same for all of an artist's tracks.
        """
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)

    def _exclusive(self, context: Context, rows: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """(F,) bool: the forced (row, track) pairs that, where one of a row's is live (not -inf after the
        rules), are that row's only candidates (none by default)."""
        return np.zeros(len(rows), dtype=bool)

    def _build_index(self) -> None:
        """Build the inverted file when the candidate stage is on (called once the model is fitted or loaded)."""
        self._index = None
        if self.candidates == "ivf":
            order = np.argsort(self.catalog.artist, kind="stable").astype(np.int64)
            self._artist_index = (order, np.searchsorted(self.catalog.artist[order], np.arange(self.catalog.n_artists + 1)).astype(np.int64))
            items = self._item_vectors()
            self._index = InvertedFile(items, self.n_lists or default_lists(len(items)))
            self._index.label(self.catalog.artist)
            self._artist_items = None
            forces = type(self)._forced is not CatalogScorer._forced or type(self)._forced_artists is not CatalogScorer._forced_artists
            if forces:  # a model with forced candidates scores them by artist
                self._artist_items = np.ascontiguousarray(items[order])
                self._artist_place = np.empty(len(order), dtype=np.int64)
                self._artist_place[order] = np.arange(len(order))
                self._artist_release = self.catalog.release_day[order]
            self._workspace = Workspace()

    def _artist_rules(self, context: Context, forced_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, artists, amount): the (request, artist) pairs, by row then artist, whose every track the rules
        lower: the artist penalty per earlier play, inf for the forced artists (`forced_keys`,
        row * n_artists + artist, ascending), whose tracks are ranked beside the scan."""
        n_artists = self.catalog.n_artists
        keys, penalty = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self.artist_penalty > 0:
            pair_rows, artists, plays = played_artists(context, self.catalog.artist)
            keys, penalty = pair_rows * n_artists + artists, (self.artist_penalty * plays).astype(np.float32, copy=False)
        if len(forced_keys):
            every = np.union1d(keys, forced_keys)
            penalty = lookup(keys, penalty, every)
            penalty[lookup(forced_keys, np.ones(len(forced_keys), bool), every)] = np.inf
            keys = every
        return keys // n_artists, keys % n_artists, penalty

    def _rule_pairs(self, context: Context, scan: Scan, forced_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, tracks, amount) the serving rules subtract: the artist penalty, then inf for unreleased and played tracks.

        The tracks of the forced (request, artist) pairs (`forced_keys`, row * n_artists + artist,
        ascending) get inf as well: they are ranked beside the scan (`_artist_candidates`).
        """
        assert self._index is not None, "the serving rules of a scan need the inverted file"
        rows, tracks, amounts = [], [], []
        pair_rows, artists, penalty = self._artist_rules(context, forced_keys)
        if len(pair_rows):
            order, offsets = self._artist_index
            counts = offsets[artists + 1] - offsets[artists]
            firsts = np.repeat(offsets[artists] - (np.cumsum(counts) - counts), counts)
            rows.append(np.repeat(pair_rows, counts))
            tracks.append(order[firsts + np.arange(int(counts.sum()))])
            amounts.append(np.repeat(penalty, counts))
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

    def _artist_candidates(
        self, context: Context, queries: np.ndarray, rows: np.ndarray, artists: np.ndarray, bonus: np.ndarray, skip_rows: np.ndarray, skip_tracks: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, tracks, scores) of the k best tracks of each forced (row, artist) pair (`_forced_artists`), by row then track.

        Each artist costs one (its rows) x (its tracks) product over the item vectors kept in
        artist order. The scores are exact and carry the serving rules (the pair's bonus, minus its
        artist penalty; -inf for played and unreleased tracks and for the `skip` pairs, which are
        scored as `_forced` pairs); ties go to the lower track id, as in the ranking of all of the
        pair's tracks, and a pair left with no live track gives none. The other tracks of a pair
        are below k of its own, so they could never reach a row's k best.
        """
        assert self._artist_items is not None, "forced candidates need the item vectors in artist order (_build_index)"
        order, offsets = self._artist_index
        n_artists, n_tracks = self.catalog.n_artists, self.catalog.n_tracks
        # Stable, so each artist's pairs keep their row order; 16-bit keys sort by radix.
        by_artist = np.argsort(artists.astype(np.uint16 if n_artists <= 1 << 16 else np.int64), kind="stable")
        pair_rows, pair_artists, pair_bonus = rows[by_artist], artists[by_artist], bonus[by_artist]
        sizes = offsets[pair_artists + 1] - offsets[pair_artists]
        starts = np.zeros(len(sizes) + 1, dtype=np.int64)  # pair i's scores: flat[starts[i]:starts[i + 1]], its artist's tracks in order
        np.cumsum(sizes, out=starts[1:])
        flat = np.empty(int(starts[-1]), dtype=np.float32)
        bounds = np.concatenate([[0], np.flatnonzero(pair_artists[1:] != pair_artists[:-1]) + 1, [len(pair_artists)]])
        for first, last in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            artist = int(pair_artists[first])
            out = flat[starts[first] : starts[last]].reshape(last - first, sizes[first])
            np.matmul(queries[pair_rows[first:last]], self._artist_items[offsets[artist] : offsets[artist + 1]].T, out=out)
        flat += np.repeat(pair_bonus, sizes)
        if self.artist_penalty > 0:
            played_rows, played, plays = played_artists(context, self.catalog.artist)
            flat -= np.repeat(lookup(played_rows * n_artists + played, self.artist_penalty * plays, pair_rows * n_artists + pair_artists), sizes)
        days = context.days[pair_rows]
        if np.any(days >= 0):
            element_days = np.repeat(days, sizes)
            places = np.arange(len(flat)) + np.repeat(offsets[pair_artists] - starts[:-1], sizes)  # each score's track in artist order
            flat[(element_days >= 0) & (self._artist_release[places] > element_days)] = -np.inf
        pair_of = np.empty(len(by_artist), dtype=np.int64)  # pairs in (row, artist) order -> their place in `flat`'s order
        pair_of[by_artist] = np.arange(len(by_artist))
        for out_rows, out_tracks in ((context.played_rows, context.played_tracks), (skip_rows, skip_tracks)):
            out_artists = self.catalog.artist[out_tracks]
            found = lookup(rows * n_artists + artists, np.arange(1, len(rows) + 1), out_rows * n_artists + out_artists) - 1
            inside = found >= 0
            pair = pair_of[found[inside]]
            flat[starts[pair] + self._artist_place[out_tracks[inside]] - offsets[out_artists[inside]]] = -np.inf
        segment = np.repeat(np.arange(len(sizes)), sizes)
        if k == 1:
            best = flat == np.repeat(np.maximum.reduceat(flat, starts[:-1]), sizes) if len(flat) else np.zeros(0, bool)
            hits = np.flatnonzero(best)
            chosen = hits[np.concatenate([[True], segment[hits][1:] != segment[hits][:-1]])] if len(hits) else hits
        else:
            ranked = np.lexsort((-flat, segment))  # stable: ties keep the lower track first
            chosen = ranked[np.arange(len(flat)) - starts[segment] < k]
        chosen = chosen[np.isfinite(flat[chosen])]
        pair = segment[chosen]
        out_rows = pair_rows[pair]
        out_tracks = order[offsets[pair_artists[pair]] + chosen - starts[pair]]
        by_row = np.argsort(out_rows * n_tracks + out_tracks)
        return out_rows[by_row], out_tracks[by_row], flat[chosen][by_row]

    def _forced_scores(self, context: Context, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, tracks, scores, artist keys): the forced pairs with their exact scores after the serving rules,
        by row then track (the `_forced` pairs and the k best tracks of each `_forced_artists` pair), and
        the row * n_artists + artist of the forced artists, ascending."""
        forced_rows, forced_tracks, bonus = self._forced(context)
        exact = np.zeros(0, np.float32)
        if len(forced_rows):
            exact = bonus + self._forced_products(queries, forced_rows, forced_tracks)
            days = context.days[forced_rows]
            exact[(days >= 0) & (self.catalog.release_day[forced_tracks] > days)] = -np.inf
            exact -= self._forced_rule_amounts(context, forced_rows, forced_tracks)
        artist_rows, artists, artist_bonus = self._forced_artists(context)
        if len(artist_rows):  # each forced artist's best tracks join the forced pairs, by row then track
            best_rows, best_tracks, best_scores = self._artist_candidates(context, queries, artist_rows, artists, artist_bonus, forced_rows, forced_tracks, k)
            merged = np.argsort(np.concatenate([forced_rows, best_rows]) * self.catalog.n_tracks + np.concatenate([forced_tracks, best_tracks]), kind="stable")
            forced_rows = np.concatenate([forced_rows, best_rows])[merged]
            forced_tracks = np.concatenate([forced_tracks, best_tracks])[merged]
            exact = np.concatenate([exact, best_scores])[merged]
        return forced_rows, forced_tracks, exact, artist_rows * self.catalog.n_artists + artists

    def _candidate_serving(self, context: Context, k: int) -> np.ndarray:
        """(B, k) tracks ranked from the candidate stage, best first (-1 where a row has fewer candidates)."""
        assert self._index is not None
        index = self._index
        batch = len(context.users)
        queries = self._query_vectors(context)
        forced_rows, forced_tracks, exact, artist_keys = self._forced_scores(context, queries, k)
        if k == 1:
            return self._best_candidates(context, queries, forced_rows, forced_tracks, exact, artist_keys)[:, None]
        counts = np.bincount(forced_rows, minlength=batch)
        scan = index.scan(queries, self.n_probe, extra=int(counts.max()) if len(forced_rows) else 0, workspace=self._workspace)
        width = scan.width * scan.cells.shape[1]  # forced candidates sit in the columns after it
        rows, rule_tracks, amounts = self._rule_pairs(context, scan, artist_keys)
        scores = scan.scores
        if len(forced_rows):
            columns = index.locate(scan, forced_rows, forced_tracks)
            scores[forced_rows[columns >= 0], columns[columns >= 0]] = -np.inf  # scored once, below
            forced_columns = width + np.arange(len(forced_rows)) - (np.cumsum(counts) - counts)[forced_rows]
            scores[forced_rows, forced_columns] = exact
            exclusive = self._exclusive(context, forced_rows, forced_tracks)
            if exclusive.any():  # a row with a live exclusive pair keeps only those
                live = np.zeros(batch, dtype=bool)
                live[forced_rows[exclusive & np.isfinite(exact)]] = True
                keep = np.zeros(scores.shape, dtype=bool)
                keep[forced_rows[exclusive], forced_columns[exclusive]] = True
                scores[live[:, None] & ~keep] = -np.inf
        columns = index.locate(scan, rows, rule_tracks)
        hit = columns >= 0
        scores[rows[hit], columns[hit]] -= amounts[hit]  # a forced track's scanned copy is -inf and stays so
        best = top_k(scores, k)
        out = np.full((batch, k), -1, dtype=np.int64)  # a scan narrower than k leaves the rest -1
        live = np.isfinite(np.take_along_axis(scores, best, axis=1))
        rows, ranks = np.nonzero(live & (best < width))
        out[rows, ranks] = index.tracks_at(scan, rows, best[rows, ranks])
        if len(forced_rows):
            rows, ranks = np.nonzero(live & (best >= width))  # a live forced column: the row's (column - width)-th forced pair
            out[rows, ranks] = forced_tracks[(np.cumsum(counts) - counts)[rows] + best[rows, ranks] - width]
        return out

    def _best_candidates(
        self, context: Context, queries: np.ndarray, forced_rows: np.ndarray, forced_tracks: np.ndarray, exact: np.ndarray, artist_keys: np.ndarray
    ) -> np.ndarray:
        """(B,) the best candidate of each row (-1 where none is live): `_candidate_serving` at k = 1, ties included,
        without the (B, scanned tracks) score matrix (`InvertedFile.best`)."""
        assert self._index is not None
        batch = len(context.users)
        # The played tracks are out, and so is a forced track's scanned copy (its exact score is among the forced ones).
        rows, tracks = np.concatenate([context.played_rows, forced_rows]), np.concatenate([context.played_tracks, forced_tracks])
        amounts = np.full(len(rows), np.inf, np.float32)
        labelled = self._artist_rules(context, artist_keys)
        value, best = self._index.best(queries, self.n_probe, rows, tracks, amounts, self.catalog.release_day, context.days, labelled)
        if len(forced_rows):
            exclusive = self._exclusive(context, forced_rows, forced_tracks)
            forced_value, at = best_per_row(forced_rows, exact, batch)
            won = forced_value > value  # a forced column comes after the scanned ones: it wins ties never
            best[won] = forced_tracks[at[won]]
            if exclusive.any():  # a row with a live exclusive pair keeps only those
                exclusive_value, at = best_per_row(forced_rows, np.where(exclusive, exact, -np.inf).astype(np.float32), batch)
                live = np.isfinite(exclusive_value)
                best[live] = forced_tracks[at[live]]
        return best

    def _check_fitted(self) -> None:
        """Hook for trainable subclasses."""

    _artist_index: tuple[np.ndarray, np.ndarray]  # (tracks by artist, offsets of each artist), for the candidate stage

    def _contexts(self, requests: Sequence[Request] | RequestBatch, chunk: int = CHUNK) -> Iterator[tuple[int, Context]]:
        for start in range(0, len(requests), chunk):
            if isinstance(requests, RequestBatch):
                part = requests.take(np.arange(start, min(start + chunk, len(requests)), dtype=np.int64))
                yield start, Context.from_batch(part, self.history_length, self.catalog.n_tracks)
            else:
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

    def rank(self, requests: Sequence[Request] | RequestBatch, k: int) -> np.ndarray:
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
    """A trainable recommender served by ranking the whole catalog (see `CatalogScorer`); columnar: the
    service's `RequestBatch` is ranked as arrays, without a `Request` or a `Recommendation` per request."""

    columnar = True

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(self.name)

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Recommendation]:
        """The best unplayed track for each request (a deterministic choice: propensity 1), in vectorised chunks."""
        if not requests:
            return []
        return [Recommendation(int(track), 1.0) for track in self.rank(requests, 1)[:, 0]]

    def _recommend_columns(self, batch: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        """`_recommend_batch` as (tracks, propensities 1.0) arrays."""
        if not len(batch):
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return self.rank(batch, 1)[:, 0], np.ones(len(batch), dtype=np.float64)

    def _recommend(self, request: Request) -> Recommendation:
        return self._recommend_batch([request])[0]
