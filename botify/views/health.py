"""`GET /`: is the service alive, which experiment serves, and which world."""

from __future__ import annotations

from flask import Blueprint, current_app

bp = Blueprint("health", __name__)

WELCOME = "welcome to botify, the best toy music recommender"


@bp.get("/")
def hello() -> dict[str, object]:
    """`{"status": "alive", "message": ...}` plus the serving experiment's name and the served world.

    A simulator compares `world` (the catalog's fingerprint) with its own world before it runs.
    """
    service = current_app.extensions["botify"]
    return {
        "status": "alive",
        "message": WELCOME,
        "serving": service.experiments.names[service.experiments.serving],
        "world": service.catalog.fingerprint,
        "tracks": service.catalog.n_tracks,
    }
