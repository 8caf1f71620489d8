"""`GET /track/<track>`: a track's public catalog record."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from botify.errors import error_response

bp = Blueprint("catalog", __name__)


@bp.get("/track/<int(signed=True):track>")
def track_record(track: int) -> dict[str, object] | Response:
    """The record of `track` (track, artist, title, duration, tags, ...), or 404 when unknown."""
    catalog = current_app.extensions["botify"].catalog
    if not catalog.contains(track):
        return error_response(f"track {track} is not in the catalog (ids 0..{catalog.n_tracks - 1})", 404)
    return catalog.record(track)
