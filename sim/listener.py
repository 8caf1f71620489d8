"""The listener model: how a simulated listener starts a session, listens, tires and leaves.

This is the course simulator's model, vectorised over many sessions at once ("slots"):

1. A session starts from one of the listener's interests (a point in taste space), chosen
   uniformly; the first track is drawn uniformly among the `interest_neighbours` tracks
   nearest to it.
2. For each recommended track the listener listens the fraction
   `sigmoid((dot(track, interest) - consume_bias) * consume_sharpness)`, times
   `artist_discount_gamma ** (plays of this artist earlier in the session)`, rounded to 2
   decimals. A track already played in the session gets 0.
3. After each listen the session budget drops by one with probability `1 - fraction`; the
   session ends when the budget reaches 0.

Extensions, off by default because they change the course's numbers:

- `popular_start`: the share of sessions that start from a track drawn from the catalog's
  popularity prior (a chart or a shared link) instead of from an interest.
- `interest_drift`: after each listen the session's interest moves towards the track by
  `interest_drift * fraction` of the way, so a session can wander.

Every random draw is a common random number keyed by (listener, episode, purpose, step), see
`sim.streams`. Subclass and override `fraction` or `start` to try another model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from sim import streams
from sim.world import World

if TYPE_CHECKING:
    from sim.config import ListenerOptions


HISTORY_COLUMNS = 32  # the histories' first width; wider only once a session is that long


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return 1.0 / (1.0 + np.exp(-x))


class ListenerModel:
    """State and dynamics of `n_slots` concurrent sessions in one world.

    Public per-slot arrays (length `n_slots`): `user`, `episode`, `step` (responses so far),
    `budget`, `track` (the track just played). `history[slot, :step + 1]` holds the session's
    tracks, first track included, and -1 beyond them; it is widened as sessions grow longer (up to
    `max_steps + 1` columns), so slots are cheap to add and to reset. Interests and behaviour
    parameters are hidden state.
    """

    @classmethod
    def from_options(cls, world: World, n_slots: int, key: int, options: ListenerOptions) -> ListenerModel:
        """A model with the simulator config's listener options (`EnvConfig.listener`)."""
        return cls(world, n_slots, key, max_steps=options.max_session_steps, popular_start=options.popular_start, interest_drift=options.interest_drift)

    def __init__(
        self,
        world: World,
        n_slots: int,
        key: int,
        *,
        max_steps: int = 250,
        popular_start: float = 0.0,
        interest_drift: float = 0.0,
    ) -> None:
        if n_slots < 1:
            raise ValueError(f"n_slots == {n_slots}, must be >= 1")
        if max_steps < 1:
            raise ValueError(f"max_steps == {max_steps}, must be >= 1")
        self.world = world
        self.key = key
        self.max_steps = max_steps
        self.popular_start = popular_start
        self.interest_drift = interest_drift
        self._taste = world.taste
        self._artist = world.catalog.artist
        self._popularity_cdf = np.cumsum(world.catalog.popularity)
        listeners = world.listeners
        self._offsets = np.asarray(listeners.interest_offsets)
        self._interests = listeners.interests
        self._nearest = listeners.interest_nearest
        self._params = listeners

        d = world.taste.shape[1]
        self.user = np.zeros(n_slots, dtype=np.int64)
        self.episode = np.zeros(n_slots, dtype=np.int64)
        self.step = np.zeros(n_slots, dtype=np.int64)
        self.budget = np.zeros(n_slots, dtype=np.int64)
        self.track = np.zeros(n_slots, dtype=np.int64)
        width = min(max_steps + 1, HISTORY_COLUMNS)
        self.history = np.full((n_slots, width), -1, dtype=np.int64)
        self._history_artist = np.full((n_slots, width), -1, dtype=np.int64)
        self._interest = np.zeros((n_slots, d), dtype=np.float64)
        self._bias = np.zeros(n_slots)
        self._sharpness = np.zeros(n_slots)
        self._gamma = np.zeros(n_slots)

    @property
    def n_slots(self) -> int:
        return len(self.user)

    def grow(self, n_slots: int) -> None:
        """Make room for `n_slots` concurrent sessions, keeping the sessions in progress."""
        extra = n_slots - self.n_slots
        if extra <= 0:
            return
        for name in ("user", "episode", "step", "budget", "track", "_bias", "_sharpness", "_gamma"):
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.zeros(extra, dtype=array.dtype)]))
        for name in ("history", "_history_artist"):
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.full((extra, array.shape[1]), -1, dtype=array.dtype)]))
        self._interest = np.concatenate([self._interest, np.zeros((extra, self._interest.shape[1]))])

    @staticmethod
    def fraction(
        dot: np.ndarray,
        bias: np.ndarray,
        sharpness: np.ndarray,
        gamma: np.ndarray,
        artist_plays: np.ndarray,
        repeated: np.ndarray,
    ) -> np.ndarray:
        """The course's listened fraction, rounded to 2 decimals; 0 for a repeated track."""
        listened = sigmoid((dot - bias) * sharpness) * gamma ** artist_plays
        return np.where(repeated, 0.0, np.round(listened, 2))

    def start(self, slots: np.ndarray, users: np.ndarray, episodes: np.ndarray) -> np.ndarray:
        """Begin a session of `users[i]` (episode `episodes[i]`) in `slots[i]`; return first tracks."""
        slots, users, episodes = (np.asarray(a, dtype=np.int64) for a in (slots, users, episodes))
        p = self._params
        draw = self._draws(users, episodes)
        first_interest = self._offsets[users]
        n_interests = self._offsets[users + 1] - first_interest
        interest = first_interest + streams.choice_index(draw(streams.INTEREST), n_interests)
        k = p.interest_neighbours[users]
        pick = streams.choice_index(draw(streams.FIRST_TRACK), k)
        first = self._nearest[interest, pick].astype(np.int64)
        if self.popular_start > 0:
            popular = draw(streams.POPULAR_START) < self.popular_start
            u = draw(streams.POPULAR_TRACK) * self._popularity_cdf[-1]
            charted = np.minimum(np.searchsorted(self._popularity_cdf, u, side="right"), len(self._popularity_cdf) - 1)
            first = np.where(popular, charted, first)

        self.user[slots] = users
        self.episode[slots] = episodes
        self.step[slots] = 0
        self.budget[slots] = p.session_budget[users]
        self.track[slots] = first
        self.history[slots] = -1
        self._history_artist[slots] = -1
        self.history[slots, 0] = first
        self._history_artist[slots, 0] = self._artist[first]
        self._interest[slots] = self._interests[interest]
        self._bias[slots] = p.consume_bias[users]
        self._sharpness[slots] = p.consume_sharpness[users]
        self._gamma[slots] = p.artist_discount_gamma[users]
        return first

    def _draws(self, users: np.ndarray, episodes: np.ndarray) -> Callable[[int], np.ndarray]:
        """Per-session uniforms for a purpose; plain-integer hashing for one session (no numpy overhead)."""
        if len(users) == 1:
            user, episode = int(users[0]), int(episodes[0])
            return lambda purpose: np.array([streams.uniform_scalar(self.key, user, episode, purpose)])
        return lambda purpose: streams.uniform(self.key, users, episodes, purpose)

    def respond(self, actions: np.ndarray, slots: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Slot `slots[i]` (every slot by default) listens to `actions[i]`.

        Returns the fractions listened and whether each of those sessions has ended.
        """
        actions = np.asarray(actions, dtype=np.int64)
        # Slices keep the all-slots case (the vector env's) free of fancy-indexing copies.
        rows: slice | np.ndarray = slice(None) if slots is None else np.asarray(slots, dtype=np.int64)
        pairs = np.arange(self.n_slots) if slots is None else rows
        step = self.step[rows].copy()  # a view when rows is a slice; it is updated below
        width = int(step.max()) + 1
        repeated = (self.history[rows, :width] == actions[:, None]).any(axis=1)
        artists = self._artist[actions]
        artist_plays = (self._history_artist[rows, :width] == artists[:, None]).sum(axis=1)
        interest = self._interest[rows]
        dot = np.einsum("ij,ij->i", self._taste[actions].astype(np.float64), interest)
        fractions = self.fraction(dot, self._bias[rows], self._sharpness[rows], self._gamma[rows], artist_plays, repeated)

        if len(pairs) == 1:  # type: ignore[arg-type]  # the single environment's hot path: skip numpy's per-call overhead
            row = int(pairs[0])  # type: ignore[index]
            coin: float | np.ndarray = streams.uniform_scalar(self.key, int(self.user[row]), int(self.episode[row]), streams.BUDGET, int(step[0]))
        else:
            coin = streams.uniform(self.key, self.user[rows], self.episode[rows], streams.BUDGET, step)
        self.budget[rows] -= coin < 1.0 - fractions
        self.step[rows] = step + 1
        column = np.minimum(step + 1, self.max_steps)
        if len(column) and int(column.max()) >= self.history.shape[1]:
            self._widen(int(column.max()) + 1)
        self.history[pairs, column] = actions
        self._history_artist[pairs, column] = artists
        self.track[rows] = actions
        if self.interest_drift > 0:
            self._interest[rows] = self._drift(interest, actions, fractions)
        return fractions, self.budget[rows] <= 0

    def _widen(self, columns: int) -> None:
        """Give the histories at least `columns` columns (at most `max_steps + 1`), doubling."""
        width = self.history.shape[1]
        while width < columns:
            width *= 2
        extra = min(width, self.max_steps + 1) - self.history.shape[1]
        for name in ("history", "_history_artist"):
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.full((len(array), extra), -1, dtype=array.dtype)], axis=1))

    def _drift(self, interest: np.ndarray, actions: np.ndarray, fractions: np.ndarray) -> np.ndarray:
        scale = np.linalg.norm(interest, axis=1, keepdims=True)
        rate = (self.interest_drift * fractions)[:, None]
        moved = interest + rate * (self._taste[actions] - interest)
        return scale * moved / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)
