"""JSON errors: every 4xx answers `{"error": "..."}` saying what was wrong; a 5xx says little.

Unexpected exceptions are logged with their traceback and answered with a generic message, so
internals never leak to clients.
"""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

JSON = "application/json"


def error_response(message: str, status: int) -> Response:
    """`{"error": message}` with `status`."""
    return Response(orjson.dumps({"error": message}) + b"\n", status=status, mimetype=JSON)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        message = f"not found: {request.method} {request.path}"
    elif status == 405:
        message = f"method {request.method} not allowed on {request.path}"
    elif status == 413:
        message = "body too large"
    else:
        message = error.description or error.name
    return error_response(message, status)


def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error serving %s %s", request.method, request.path)
    return error_response("internal server error (see the service log)", 500)


def init_app(app: Flask) -> None:
    """Answer HTTP errors and unexpected exceptions as JSON."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
