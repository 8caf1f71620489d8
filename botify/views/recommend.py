"""`POST /next/<user>`, `POST /last/<user>` and `POST /batch`: the recommendation API.

Single requests (compatible with the course's client, byte for byte)::

    POST /next/1  {"track": 10, "time": 0.3}   ->  {"user": 1, "track": 4242}
    POST /last/1  {"track": 10, "time": 0.3}   ->  {"user": 1}

Optional body fields `session` (int) and `ts` (epoch milliseconds) are logged instead of the
server's own. The batch endpoint takes many users' requests in one call::

    POST /batch  {"requests": [{"message": "next", "user": 1, "track": 10, "time": 0.3}, ...]}
              -> {"responses": [{"user": 1, "track": 4242}, ...]}

Each response is what the single endpoint would answer, in the same order; an invalid item
gets `{"error": "...", "status": 400}` and is not logged, while the others are served.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.sansio.utils import get_content_length

from botify.errors import JSON, error_response
from botify.service import ServeError
from botify.validation import BadRequest, Item, parse_batch, parse_batch_item, parse_single
from contracts.columns import MESSAGE_LAST, MESSAGE_NEXT

bp = Blueprint("recommend", __name__)

INTERNAL = "internal error while recommending (see the service log)"
DRAIN_MAX = 1 << 20  # bytes: a refused body up to this size is read and dropped, keeping the connection
DRAIN_CHUNK = 1 << 16  # bytes


def _read_body(limit: int) -> bytes:
    """The whole request body, or BadRequest: 413 beyond `limit` bytes (with a Content-Length or
    chunked), 400 when the body ends before its Content-Length (a client that gave up).

    It reads the server's input stream itself, with werkzeug's reading of the length headers:
    the request object's stream wrapper cost about as much as the rest of a request's route."""
    environ = request.environ
    length = get_content_length(environ.get("CONTENT_LENGTH"), environ.get("HTTP_TRANSFER_ENCODING"))
    stream = environ["wsgi.input"]
    if length is None:  # chunked (or no body): read at most one byte past the limit
        chunks, total = [], 0
        while total <= limit and (chunk := stream.read(min(DRAIN_CHUNK, limit + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise BadRequest(f"body too large: more than {limit} bytes", 413)
        return b"".join(chunks)
    if length > limit:
        if length <= DRAIN_MAX:
            # The WSGI servers drop a keep-alive connection whose request body was left unread,
            # so a client's next request would fail; reading it keeps the connection usable.
            while stream.read(DRAIN_CHUNK):
                pass
        raise BadRequest(f"body too large: {length} bytes, at most {limit}", 413)
    body = stream.read(length) if length else b""
    while 0 < len(body) < length and (more := stream.read(length - len(body))):  # a server may return part of it per read
        body += more
    if len(body) != length:
        raise BadRequest(f"body ended after {len(body)} of its {length} bytes (Content-Length): refused, nothing logged")
    return body


def _serve_single(message: str, user: int) -> int | None | ServeError | Response:
    service = current_app.extensions["botify"]
    limit = service.limits.max_body
    try:
        item = parse_single(message, user, _read_body(limit), service.catalog.n_tracks, limit)
    except BadRequest as error:
        return error_response(str(error), error.status)
    return service.serve([item])[0]


@bp.post("/next/<int(signed=True):user>")
def next_track(user: int) -> Response:
    """The next track for `user`, who just listened to `time` of `track`."""
    answer = _serve_single(MESSAGE_NEXT, user)
    if isinstance(answer, Response):
        return answer
    if isinstance(answer, ServeError) or answer is None:
        return error_response(INTERNAL, 500)
    return Response(b'{"user": %d, "track": %d}\n' % (user, answer), mimetype=JSON)


@bp.post("/last/<int(signed=True):user>")
def last_track(user: int) -> Response:
    """`user`'s session ended after `track`: log it and forget the session's history."""
    served = _serve_single(MESSAGE_LAST, user)
    if isinstance(served, Response):
        return served
    return Response(b'{"user": %d}\n' % user, mimetype=JSON)


@bp.post("/batch")
def batch() -> Response:
    """Many users' next/last requests in one call; see the module docstring for the shape."""
    service = current_app.extensions["botify"]
    limits = service.limits
    try:
        raw = parse_batch(_read_body(limits.max_batch_body), limits.max_batch_body, limits.max_batch)
    except BadRequest as error:
        return error_response(str(error), error.status)
    n_tracks = service.catalog.n_tracks
    responses: list[dict[str, object] | None] = [None] * len(raw)
    items: list[Item] = []
    positions: list[int] = []
    for position, data in enumerate(raw):
        try:
            items.append(parse_batch_item(data, n_tracks))
        except BadRequest as error:
            responses[position] = {"error": str(error), "status": error.status}
            continue
        positions.append(position)
    answers = service.serve(items)
    for position, item, answer in zip(positions, items, answers, strict=True):
        if isinstance(answer, ServeError):
            responses[position] = {"error": INTERNAL, "status": 500}
        elif item.message == MESSAGE_NEXT:
            responses[position] = {"user": item.user, "track": answer}
        else:
            responses[position] = {"user": item.user}
    return Response(orjson.dumps({"responses": responses}), mimetype=JSON)
