"""`dssm`'s user-tower first layer read from per-track table rows instead of one dense product per request.

The first layer is linear, and its input is the user's embedding, four weighted sums of track
features (the liked and skipped means of the history, the last track, the session's first) and
one number. So `W x + b = W_u e_user + sum over blocks k and tracks t of w_kt (W_k f_t) + w_time x_time + b`,
with `W_k` the columns of block k. With the rows `W_k f_t` (and `W_u e_u`) at hand, a request's
(hidden x input) product becomes a sum of a few dozen rows: a sparse (B, rows) x (rows, hidden)
product per batch. The results are those of the dense product up to float32 rounding (the terms
are added in another order).

A row is computed the first time a request needs it and kept in a cache bounded in bytes; when
the cache is full, the rows least recently used make room. Only the tracks that appear in
sessions ever get rows, so the cache stays small where the full table (5 x n_tracks x hidden
floats with the users': 880 MB for the demo's DSSM, 17 GB at 10^6 tracks) would not fit.
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse

BLOCKS = 4  # track-feature blocks of the input: liked mean, skipped mean, last track, first track
FILL_ROWS = 64  # rows computed per product when filling the cache: a fixed shape, so a row's bits never depend on the batch
MIB = 1 << 20


class TrackTables:
    """The first layer `x @ weight.T + bias` of an input laid out as [user embedding, 4 track-feature blocks, 1 value].

    Rows are keyed `block * N + track` for the four track blocks and `4 N + user` for the user
    embedding; each is computed on first use and cached (at most `max_bytes` of rows, least
    recently used out first). Calls from several threads are serialised.

    Args:
        weight: (hidden, user_dim + 4 F + 1) float32, the layer's weight.
        bias: (hidden,) float32.
        features: (N, F) float32, every catalog track's features.
        users: (n_users, user_dim) float32, the user embedding table.
        max_bytes: the cache's bound; None keeps every row the catalog and the users can need.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, features: np.ndarray, users: np.ndarray, max_bytes: int | None = None) -> None:
        n_tracks, width = features.shape
        user_dim = users.shape[1]
        if weight.shape[1] != user_dim + BLOCKS * width + 1:
            raise ValueError(f"weight has {weight.shape[1]} inputs, the layout needs {user_dim} + {BLOCKS} x {width} + 1")
        hidden = weight.shape[0]
        self.n_tracks = n_tracks
        self._sources = (features, users)
        self._columns = [np.ascontiguousarray(weight[:, user_dim + block * width : user_dim + (block + 1) * width].T) for block in range(BLOCKS)]
        self._columns.append(np.ascontiguousarray(weight[:, :user_dim].T))
        n_keys = BLOCKS * n_tracks + len(users)
        row_bytes = hidden * np.dtype(np.float32).itemsize
        self.capacity = n_keys if max_bytes is None else max(1, min(n_keys, max_bytes // row_bytes))
        self._rows = np.empty((self.capacity, hidden), dtype=np.float32)  # pages are touched as rows fill them
        self._slot = np.full(n_keys, -1, dtype=np.int64)  # each key's row in `_rows`, -1 when not cached
        self._key = np.full(self.capacity, -1, dtype=np.int64)  # the key each row holds
        self._used = np.zeros(self.capacity, dtype=np.int64)  # the call that last read each row
        self._filled = 0
        self._calls = 0
        self._lock = threading.Lock()
        self._value = np.ascontiguousarray(weight[:, -1], dtype=np.float32)
        self._bias = np.asarray(bias, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes of the rows cached now (at most the bound)."""
        return int(self._filled * self._rows.shape[1] * self._rows.itemsize)

    def __call__(self, users: np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray]], value: np.ndarray) -> np.ndarray:
        """(B, hidden) float32 first-layer outputs.

        `users` (B,) rows of the user table; `blocks` the four (tracks, weights) pairs, each
        (B, L_k), in input order: block k's input is sum_j weights[:, j] * features[tracks[:, j]];
        `value` (B,) the last input.
        """
        if len(blocks) != BLOCKS:
            raise ValueError(f"{len(blocks)} blocks given, the layer has {BLOCKS}")
        batch = len(users)
        user_keys = (np.asarray(users, dtype=np.int64) + BLOCKS * self.n_tracks)[:, None]
        keys = np.concatenate([user_keys, *(tracks + block * self.n_tracks for block, (tracks, _) in enumerate(blocks))], axis=1)
        weights = np.concatenate([np.ones((batch, 1), np.float32), *(weights for _, weights in blocks)], axis=1).astype(np.float32, copy=False)
        keep = weights != 0  # a zero weight adds nothing: skip its row
        pointers = np.zeros(batch + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=pointers[1:])
        keys, weights = keys[keep], weights[keep]
        with self._lock:
            rows, columns = self._gather(keys)
            sums = scipy.sparse.csr_matrix((weights, columns, pointers), shape=(batch, len(rows))) @ rows
        out = np.asarray(sums, dtype=np.float32)
        out += value[:, None].astype(np.float32) * self._value
        out += self._bias
        return out

    def _gather(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, where each of `keys` is among them): the cache, with every key's row filled in.

        A batch that needs more rows than the cache holds gets its own rows, uncached.
        """
        needed = np.unique(keys)
        if len(needed) > self.capacity:
            return self._compute(needed), np.searchsorted(needed, keys)
        self._calls += 1
        slots = self._slot[needed]
        self._used[slots[slots >= 0]] = self._calls  # the rows this call reads are not evicted below
        missing = needed[slots < 0]
        if len(missing):
            fresh = np.arange(self._filled, min(self._filled + len(missing), self.capacity))
            self._filled += len(fresh)
            self._used[fresh] = self._calls
            if len(fresh) < len(missing):  # full: the least recently used rows make room
                stale = np.argpartition(self._used, len(missing) - len(fresh) - 1)[: len(missing) - len(fresh)]
                self._slot[self._key[stale]] = -1
                fresh = np.concatenate([fresh, stale])
            self._rows[fresh] = self._compute(missing)
            self._slot[missing], self._key[fresh], self._used[fresh] = fresh, missing, self._calls
        return self._rows, self._slot[keys]

    def _compute(self, keys: np.ndarray) -> np.ndarray:
        """(len(keys), hidden) float32 rows of ascending `keys`, one product per block in chunks of `FILL_ROWS`."""
        out = np.empty((len(keys), self._rows.shape[1]), dtype=np.float32)
        block_of = np.minimum(keys // self.n_tracks, BLOCKS)
        for block in np.unique(block_of).tolist():
            places = np.flatnonzero(block_of == block)
            source = self._sources[block == BLOCKS]
            ids = keys[places] - block * self.n_tracks
            for start in range(0, len(ids), FILL_ROWS):
                chunk = ids[start : start + FILL_ROWS]
                padded = np.concatenate([chunk, np.full(FILL_ROWS - len(chunk), chunk[-1])])
                out[places[start : start + len(chunk)]] = (source[padded] @ self._columns[block])[: len(chunk)]
        return out
