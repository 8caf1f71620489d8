"""`dssm`'s user-tower first layer read from per-track tables instead of one dense product per request.

The first layer is linear, and its input is the user's embedding, four weighted sums of track
features (the liked and skipped means of the history, the last track, the session's first) and
one number. So `W x + b = U[user] + sum over blocks k and tracks t of w_kt (W_k f_t) + w_time x_time + b`,
with `W_k` the columns of block k. Precomputing `W_k f_t` for every track and block (and
`W_u e_u` for every user) turns a request's (hidden x input) product into a sum of a few dozen
table rows: a sparse (B, 4N) x (4N, hidden) product per batch. The results are those of the
dense product up to float32 rounding (the terms are added in another order).

Memory: 4 x n_tracks x hidden float32 (the demo's DSSM: 4 x 50,000 x 1,090, 872 MB), and one
dense product over the catalog at load.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

BUILD_CHUNK = 8192  # tracks per product while building the tables: bounds the temporaries
BLOCKS = 4  # track-feature blocks of the input: liked mean, skipped mean, last track, first track


class TrackTables:
    """The first layer `x @ weight.T + bias` of an input laid out as [user embedding, 4 track-feature blocks, 1 value].

    Args:
        weight: (hidden, user_dim + 4 F + 1) float32, the layer's weight.
        bias: (hidden,) float32.
        features: (N, F) float32, every catalog track's features.
        users: (n_users, user_dim) float32, the user embedding table.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, features: np.ndarray, users: np.ndarray) -> None:
        n_tracks, width = features.shape
        user_dim = users.shape[1]
        if weight.shape[1] != user_dim + BLOCKS * width + 1:
            raise ValueError(f"weight has {weight.shape[1]} inputs, the layout needs {user_dim} + {BLOCKS} x {width} + 1")
        self.n_tracks = n_tracks
        self._rows = np.empty((BLOCKS * n_tracks, weight.shape[0]), dtype=np.float32)
        for block in range(BLOCKS):
            columns = np.ascontiguousarray(weight[:, user_dim + block * width : user_dim + (block + 1) * width].T)
            for start in range(0, n_tracks, BUILD_CHUNK):
                stop = min(start + BUILD_CHUNK, n_tracks)
                np.matmul(features[start:stop], columns, out=self._rows[block * n_tracks + start : block * n_tracks + stop])
        self._users = (users @ weight[:, :user_dim].T).astype(np.float32)
        self._value = np.ascontiguousarray(weight[:, -1], dtype=np.float32)
        self._bias = np.asarray(bias, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables."""
        return int(self._rows.nbytes + self._users.nbytes)

    def __call__(self, users: np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray]], value: np.ndarray) -> np.ndarray:
        """(B, hidden) float32 first-layer outputs.

        `users` (B,) rows of the user table; `blocks` the four (tracks, weights) pairs, each
        (B, L_k), in input order: block k's input is sum_j weights[:, j] * features[tracks[:, j]];
        `value` (B,) the last input.
        """
        if len(blocks) != BLOCKS:
            raise ValueError(f"{len(blocks)} blocks given, the layer has {BLOCKS}")
        batch = len(users)
        columns = np.concatenate([tracks + block * self.n_tracks for block, (tracks, _) in enumerate(blocks)], axis=1)
        weights = np.concatenate([weights for _, weights in blocks], axis=1).astype(np.float32, copy=False)
        keep = weights != 0  # a zero weight adds nothing: skip its row
        pointers = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
        sums = scipy.sparse.csr_matrix((weights[keep], columns[keep], pointers), shape=(batch, len(self._rows))) @ self._rows
        out = np.asarray(sums, dtype=np.float32)
        out += self._users[users]
        out += value[:, None].astype(np.float32) * self._value
        out += self._bias
        return out
