"""A batch of valid next/last items as columns: the one form `Service.serve_batch` serves.

`POST /batch` and the single endpoints parse into `Item`s and `Service.serve` turns them into an
`ItemBatch`; the simulator's in-process client builds one from its arrays directly, without an
object per request. Either way the same `serve_batch` answers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from botify.validation import Item
from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT


@dataclass(frozen=True, slots=True)
class ItemBatch:
    """Item i is `Item(MESSAGE_LAST if last[i] else MESSAGE_NEXT, users[i], tracks[i], times[i], sessions[i], ts[i])`.

    Attributes:
        last: whether the item is a 'last' (else a 'next'), bool, shape (n,).
        users: int64, shape (n,).
        tracks: the track just played, int64, shape (n,).
        times: the fraction of it listened, float64, shape (n,).
        sessions: the client's session ids (None where not sent).
        ts: the client's timestamps in epoch ms (None where not sent).
    """

    last: np.ndarray
    users: np.ndarray
    tracks: np.ndarray
    times: np.ndarray
    sessions: list[int | None]
    ts: list[int | None]

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def of(cls, items: Sequence[Item]) -> ItemBatch:
        """The columns of `items`."""
        n = len(items)
        return cls(
            np.array([item.message == MESSAGE_LAST for item in items], dtype=bool).reshape(n),
            np.array([item.user for item in items], dtype=np.int64).reshape(n),
            np.array([item.track for item in items], dtype=np.int64).reshape(n),
            np.array([item.time for item in items], dtype=np.float64).reshape(n),
            [item.session for item in items],
            [item.ts for item in items],
        )

    def items(self) -> list[Item]:
        """The batch as `Item`s."""
        messages = [MESSAGE_LAST if last else MESSAGE_NEXT for last in self.last.tolist()]
        return list(map(Item, messages, self.users.tolist(), self.tracks.tolist(), self.times.tolist(), self.sessions, self.ts))
