"""`GET /`: is the service alive, and which experiment serves."""

from __future__ import annotations

from flask import Blueprint, current_app

bp = Blueprint("health", __name__)

WELCOME = "welcome to botify, the best toy music recommender"


@bp.get("/")
def hello() -> dict[str, object]:
    """`{"status": "alive", "message": ...}` plus the serving experiment's name."""
    service = current_app.extensions["botify"]
    return {"status": "alive", "message": WELCOME, "serving": service.experiments.names[service.experiments.serving]}
