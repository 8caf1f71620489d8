"""The recommender and track pages: a Flask blueprint joined to `abtest serve` by `register(app)`.

Pages (each with a `.json` twin): `/recommenders` (the artifacts found: model.json facts,
training curves, recorded metrics) and `/tracks/<id>` (a track's neighbours by each model and
the tag model's probability per tag with the dynamic threshold). They appear when the dashboard
is given `--artifacts DIR`; `--world DIR` also marks each track's true tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request, url_for

from contracts.columns import WORLDS_TABLE
from contracts.eventlog import LogError, open_log
from lens import data

bp = Blueprint("lens", __name__, template_folder="templates", static_folder="static", static_url_path="/static/lens")


def register(app: Flask) -> None:
    """Add the pages to the dashboard `app` when it was given `ARTIFACTS` (the entry point's target)."""
    if not app.config.get("ARTIFACTS"):
        return
    world = Path(app.config["WORLD"]) if app.config.get("WORLD") else None
    catalog_dir = world or served_world(app.config["LOG"])
    if catalog_dir is None:
        raise data.LensError("the recommender pages need the catalog: pass --world DIR (the log names no world)")
    app.extensions["lens"] = data.Lab.open(Path(app.config["ARTIFACTS"]), catalog_dir, world)
    app.register_blueprint(bp)
    app.config["EXTRA_NAV"] = [*app.config.get("EXTRA_NAV", []), ("Recommenders", "/recommenders")]


def served_world(log: str) -> Path | None:
    """The world directory the log's service served last (its `worlds` table), if it still exists."""
    try:
        con = open_log(log)
    except LogError:
        return None
    try:
        row = con.execute(f"SELECT path FROM {WORLDS_TABLE} ORDER BY started DESC LIMIT 1").fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return Path(row[0]) if row and row[0] and Path(row[0]).is_dir() else None


def _lab() -> data.Lab:
    return current_app.extensions["lens"]


def _page(template: str, fmt: str, page: dict[str, Any]) -> Any:
    if fmt == "json":
        return jsonify(page)
    return render_template(template, page=page, poll=0)


def _error(message: str, fmt: str, status: int) -> Response:
    if fmt == "json":
        response = jsonify(error=message)
    else:
        response = Response(render_template("error.html", error=message), mimetype="text/html")
    response.status_code = status
    return response


@bp.route("/recommenders", defaults={"fmt": "html"})
@bp.route("/recommenders.json", defaults={"fmt": "json"})
def recommenders(fmt: str) -> Any:
    """The artifacts found under --artifacts, with their facts, training curves and metrics."""
    page = {"artifacts": data.artifacts(_lab()), "world": str(_lab().world) if _lab().world else None,
            "n_tracks": _lab().catalog.n_tracks}
    return _page("recommenders.html", fmt, page)


@bp.route("/tracks")
def track_form() -> Any:
    """`/tracks?track=ID` goes to that track's page."""
    value = request.args.get("track", "0")
    if not value.isdigit():
        return _error(f"track == {value!r}, must be a catalog id", "html", 400)
    return redirect(url_for("lens.track", track_id=int(value), fmt="html"))


@bp.route("/tracks/<int:track_id>", defaults={"fmt": "html"})
@bp.route("/tracks/<int:track_id>.json", defaults={"fmt": "json"})
def track(track_id: int, fmt: str) -> Any:
    """A track: its neighbours by each model and its tag probabilities with the dynamic threshold."""
    user = request.args.get("user", "0")
    if not user.lstrip("-").isdigit():
        return _error(f"user == {user!r}, must be an integer listener id", fmt, 400)
    try:
        page = data.track(_lab(), track_id, user=int(user))
    except data.LensError as error:
        return _error(str(error), fmt, 404)
    return _page("track.html", fmt, page)
