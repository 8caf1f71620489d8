"""Checks of request bodies: turn bytes into `Item`s, or say in one line what is wrong.

Every check runs before any work is done, so a bad request changes no history and logs no
event. Bodies are parsed with orjson, which refuses NaN, Infinity and integers beyond 64 bits
as invalid JSON. Booleans are not integers here, although Python says they are.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from werkzeug.routing import IntegerConverter

from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT

MAX_ID = 2**63 - 1  # ids are BIGINT in the log
MAX_TS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z in epoch milliseconds
SINGLE_FIELDS = ("track", "time", "session", "ts")
BATCH_FIELDS = ("message", "user", *SINGLE_FIELDS)
MESSAGES = (MESSAGE_NEXT, MESSAGE_LAST)
EXAMPLE = '{"track": 10, "time": 0.3}'
_MISSING = object()


class BadRequest(ValueError):
    """A request that is refused; `status` is the HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Item(NamedTuple):
    """One valid next/last request.

    Attributes:
        message: "next" or "last".
        user: the listener's id.
        track: the track just played (in the catalog).
        time: the fraction of it listened, in [0, 1].
        session: the client's session id, or None.
        ts: the client's timestamp in epoch milliseconds, or None.
    """

    message: str
    user: int
    track: int
    time: float
    session: int | None
    ts: int | None


class AsciiIntegerConverter(IntegerConverter):
    """The `int` of the routes, ASCII digits only: Python's `\\d` also matches Unicode digits
    (`/next/١٢`, fullwidth `/next/１２`), which would be served and logged under another id."""

    regex = "[0-9]+"


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def check_user(user: Any) -> int:
    """`user` as a valid id, or BadRequest."""
    if isinstance(user, bool) or not isinstance(user, int):
        raise BadRequest(f"user must be an integer, got {_show(user)}")
    if not 0 <= user <= MAX_ID:
        raise BadRequest(f"user {user} is out of range: ids are integers in 0..{MAX_ID}")
    return user


def _check_fields(body: dict[str, Any], fields: tuple[str, ...], n_tracks: int) -> tuple[int, float, int | None, int | None]:
    for key in body:
        if key not in fields:
            raise BadRequest(f"unknown field {_show(key)} (expected {', '.join(fields)})")
    track = body.get("track", _MISSING)
    if track is _MISSING:
        raise BadRequest("missing field 'track' (the track just played), e.g. " + EXAMPLE)
    if isinstance(track, bool) or not isinstance(track, int):
        raise BadRequest(f"track must be an integer, got {_show(track)}")
    if not 0 <= track < n_tracks:
        raise BadRequest(f"track {track} is not in the catalog (ids 0..{n_tracks - 1})")
    time = body.get("time", _MISSING)
    if time is _MISSING:
        raise BadRequest("missing field 'time' (the fraction of the track listened, 0..1), e.g. " + EXAMPLE)
    if isinstance(time, bool) or not isinstance(time, int | float):
        raise BadRequest(f"time must be a number in [0, 1], got {_show(time)}")
    if not 0.0 <= time <= 1.0:  # also refuses NaN
        raise BadRequest(f"time must be in [0, 1] (the fraction listened), got {_show(time)}")
    session = body.get("session")
    if session is not None:
        if isinstance(session, bool) or not isinstance(session, int):
            raise BadRequest(f"session must be an integer, got {_show(session)}")
        if not 0 <= session <= MAX_ID:
            raise BadRequest(f"session {session} is out of range: ids are integers in 0..{MAX_ID}")
    ts = body.get("ts")
    if ts is not None:
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise BadRequest(f"ts must be an integer (epoch milliseconds), got {_show(ts)}")
        if not 0 <= ts <= MAX_TS:
            raise BadRequest(f"ts {ts} is out of range: epoch milliseconds in 0..{MAX_TS}")
    return track, float(time), session, ts


def parse_json(body: bytes, limit: int) -> Any:
    """Decode a JSON body of at most `limit` bytes, or BadRequest (413 when too large)."""
    if len(body) > limit:
        raise BadRequest(f"body too large: {len(body)} bytes, at most {limit}", 413)
    if not body.strip():
        raise BadRequest("body is empty: expected a JSON object such as " + EXAMPLE)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON ({error}); NaN and Infinity are not JSON") from None


def parse_single(message: str, user: int, body: bytes, n_tracks: int, limit: int) -> Item:
    """The `Item` of a `POST /next/<user>` or `/last/<user>` with this body, or BadRequest."""
    check_user(user)
    data = parse_json(body, limit)
    if not isinstance(data, dict):
        raise BadRequest(f"body must be a JSON object such as {EXAMPLE}, got {type(data).__name__ if not isinstance(data, list) else 'an array'}")
    track, time, session, ts = _check_fields(data, SINGLE_FIELDS, n_tracks)
    return Item(message, user, track, time, session, ts)


def parse_batch_item(data: Any, n_tracks: int) -> Item:
    """One item of a `/batch` body as an `Item`, or BadRequest saying what is wrong with it."""
    # Fast path for the plain shape; anything else takes the checks below, which name the problem.
    if type(data) is dict and len(data) == 4:
        message, user, track, time = data.get("message"), data.get("user"), data.get("track"), data.get("time")
        if (
            (message == MESSAGE_NEXT or message == MESSAGE_LAST)
            and type(user) is int
            and 0 <= user <= MAX_ID
            and type(track) is int
            and 0 <= track < n_tracks
            and (type(time) is float or type(time) is int)
            and 0.0 <= time <= 1.0
        ):
            return Item(message, user, track, float(time), None, None)
    return _parse_batch_item(data, n_tracks)


def _parse_batch_item(data: Any, n_tracks: int) -> Item:
    if not isinstance(data, dict):
        raise BadRequest(f"each request must be a JSON object, got {_show(data) if not isinstance(data, list) else 'an array'}")
    message = data.get("message")
    if message is None:
        raise BadRequest("missing field 'message' ('next' or 'last')")
    if message not in MESSAGES:
        raise BadRequest(f"message must be 'next' or 'last', got {_show(message)}")
    if "user" not in data:
        raise BadRequest("missing field 'user'")
    user = check_user(data["user"])
    track, time, session, ts = _check_fields(data, BATCH_FIELDS, n_tracks)
    return Item(message, user, track, time, session, ts)


def parse_batch(body: bytes, limit: int, max_items: int) -> list[Any]:
    """The list of raw items of a `/batch` body, or BadRequest for the body as a whole."""
    data = parse_json(body, limit)
    if not isinstance(data, dict) or "requests" not in data:
        raise BadRequest('body must be a JSON object {"requests": [...]}')
    extra = [key for key in data if key != "requests"]
    if extra:
        raise BadRequest(f"unknown field {_show(extra[0])} (expected requests)")
    requests = data["requests"]
    if not isinstance(requests, list):
        raise BadRequest(f"requests must be a list, got {_show(requests)}")
    if len(requests) > max_items:
        raise BadRequest(f"too many requests in one batch: {len(requests)}, at most {max_items}", 413)
    return requests
