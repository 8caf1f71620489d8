"""`GET /experiments` (the active experiments) and `GET /experiments/<user>` (a user's assignments)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from botify.errors import error_response
from botify.experiments import treatment_label
from botify.validation import BadRequest, check_user

bp = Blueprint("experiments", __name__, url_prefix="/experiments")


@bp.get("")
def active() -> dict[str, object]:
    """Every active experiment with its treatments, as configured."""
    config = current_app.extensions["botify"].experiments.config
    return {"experiments": config.model_dump(mode="json")["experiments"]}


@bp.get("/<int(signed=True):user>")
def assignments(user: int) -> dict[str, object] | Response:
    """`user`'s treatment in every experiment, and the recommender that serves them."""
    try:
        check_user(user)
    except BadRequest as error:
        return error_response(str(error), error.status)
    experiments = current_app.extensions["botify"].experiments
    indices = experiments.assignments(user)
    return {
        "user": user,
        "experiments": {name: {"treatment": index, "label": treatment_label(index)} for name, index in zip(experiments.names, indices, strict=True)},
        "recommender": experiments.recommender_names[indices[experiments.serving]],
    }
