"""The dashboard's Flask app: thin views over `abtest.dashboard.data`, every HTML page with a JSON twin.

Add `.json` to a page's URL for the numbers it draws; `.csv` gives a chart's table as CSV. The log
is opened read-only per request (as flaskr's `db.py` opens its database) and closed on teardown,
so the service can keep writing. An answer is reused while the log's files are unchanged
(`contracts.eventlog.reader.log_state`), so a page, its twin and its polls compute it once per
change of the log, and an open page of a finished experiment costs nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import io
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, redirect, render_template, request, send_from_directory, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from abtest.dashboard import data
from abtest.dashboard.increments import SessionGroups
from abtest.errors import AbtestError
from abtest.log import EventLog
from abtest.metrics import METRIC_NAMES
from abtest.sessionize import DAY_ZERO, Filters
from contracts.eventlog.reader import log_state

bp = Blueprint("experiments", __name__)
logger = logging.getLogger(__name__)

POLL_SECONDS = 5  # how often an open page asks its JSON twin for new numbers
POLL_HEADER = "X-Dashboard-Poll"  # sent by an open page's polls: the latest answer now beats the current one later
CACHE_ENTRIES = 64  # answers kept per server worker (pages x query arguments), least recently used dropped
CSV_PARTS = ("metrics", "cumulative", "sessions", "latency")
# Entry point group of page plugins: `register(app)` callables that add blueprints (the
# recommender and track pages of `lens`, which `abtest` may not import by name).
PLUGIN_GROUP = "botify_lab.dashboard"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The dashboard app; `config` must name the event log as `LOG` (tests pass a mapping here).

    Other keys: `POLL_SECONDS` (page refresh period), `CACHE` (False: compute every answer from
    every event, never reuse one nor keep the sessions of a log's segments), `ARTIFACTS` and `WORLD` (read by the page plugins of `PLUGIN_GROUP`, which add their pages).
    """
    app = Flask(__name__)
    app.config.update(POLL_SECONDS=POLL_SECONDS, CACHE=True, LOG=None, ARTIFACTS=None, WORLD=None)
    app.config.update(config or {})
    if not app.config["LOG"]:
        raise AbtestError("the dashboard needs an event log: pass --log PATH")
    app.extensions["dashboard_cache"] = StateCache()
    # Without the cache nothing is kept between requests, but the segments' summaries are still read:
    # every page is then the first page after a start.
    app.extensions["dashboard_groups"] = SessionGroups() if app.config["CACHE"] else SessionGroups(size=0)
    app.teardown_appcontext(close_log)
    app.register_blueprint(bp)
    app.add_url_rule("/static/plotly.min.js", "plotly_js", plotly_js)
    app.config.setdefault("EXTRA_NAV", [])
    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()(app)
    return app


class StateCache:
    """Answers by key, each kept with the log state it was computed from and reused only while the
    log is in that state; thread-safe, one per app (one per server worker), the least recently
    used dropped beyond `size` answers.

    A caller that would rather have an answer now than a current one (an open page's poll) may
    take the answer of an earlier state: it is returned at once and the current one is computed
    in a background thread (one per key at a time) for the next call, the "stale while
    revalidate" of HTTP caches (RFC 5861).
    """

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self._items: OrderedDict[Any, tuple[Any, Any]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._refreshing: set[Any] = set()

    def get(self, key: Any, state: Any, compute: Callable[[], Any], *, stale: bool = False) -> Any:
        """The answer stored for `key` if it was computed in `state`, else `compute()`, stored with `state`.

        With `stale`, an answer stored for another state is returned instead, and `compute()`
        runs in a background thread unless it already runs for `key`.
        """
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (hit[0] == state or stale):
                self._items.move_to_end(key)
                if hit[0] != state and key not in self._refreshing:
                    self._refreshing.add(key)
                    threading.Thread(target=self._refresh, args=(key, state, compute), daemon=True).start()
                return hit[1]
        value = compute()
        self._store(key, state, value)
        return value

    def _refresh(self, key: Any, state: Any, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, state, compute())
        except Exception:  # the next request computes it again and answers the error itself
            logger.exception("refreshing the dashboard's answer for %r failed", key)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _store(self, key: Any, state: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (state, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def get_log() -> EventLog:
    """The request's read-only connection to the log, opened on first use."""
    if "log" not in g:
        g.log = EventLog.open(current_app.config["LOG"])
    return g.log


def close_log(_exc: BaseException | None = None) -> None:
    """Close the request's connection, if one was opened."""
    log = g.pop("log", None)
    if log is not None:
        log.close()


def plotly_js() -> Response:
    """plotly.min.js from the installed `plotly` package, so charts draw with no network."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        abort(404, "the plotly package is not installed: pip install plotly")
    folder = Path(next(iter(spec.submodule_search_locations))) / "package_data"
    return send_from_directory(folder, "plotly.min.js", max_age=3600)


class BadRequest(AbtestError):
    """A query argument the page cannot use; answered with 400 and this message."""


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} == {value!r}, must be an integer treatment index") from None


def view_options(args: MultiDict[str, str]) -> data.ViewOptions:
    """The page's query arguments (the options of `abtest report`, same names) as `ViewOptions`."""
    control = _int("control", args.get("control", "0"))
    treatments = tuple(_int("treatment", t) for t in args.getlist("treatment"))
    metrics = tuple(args.getlist("metric"))
    for metric in metrics:
        if metric not in METRIC_NAMES:
            raise BadRequest(f"metric == {metric!r}, must be one of {', '.join(METRIC_NAMES)}")
    days = None
    if args.get("days"):
        first, sep, last = args["days"].partition(":")
        try:
            if not sep:
                raise ValueError
            days = (float(first), float(last))
        except ValueError:
            raise BadRequest(f"days == {args['days']!r}, must be FIRST:LAST such as 1:8") from None
    day_zero: dt.date | None = DAY_ZERO
    if args.get("day_zero"):
        text = args["day_zero"].strip().lower()
        try:
            day_zero = None if text == "first" else dt.date.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"day_zero == {args['day_zero']!r}, must be a date YYYY-MM-DD or 'first'") from None
    since = _datetime("since", args.get("since"))
    until = _datetime("until", args.get("until"))
    alpha = None
    if args.get("alpha"):
        try:
            alpha = float(args["alpha"])
        except ValueError:
            raise BadRequest(f"alpha == {args['alpha']!r}, must be a number in (0, 1)") from None
    choices = {"relative": ("fieller", "delta"), "estimand": ("user-mean", "ratio-of-sums"),
               "correction": ("holm", "bonferroni", "fdr_bh", "none")}
    chosen = {}
    for key, allowed in choices.items():
        value = args.get(key) or None
        if value is not None and value not in allowed:
            raise BadRequest(f"{key} == {value!r}, must be one of {', '.join(allowed)}")
        chosen[key] = value
    filters = Filters(
        since=since,
        until=until,
        days=days,
        day_zero=day_zero,
        recommenders=tuple(args.getlist("recommender")),
        include_open=args.get("include_open_sessions", "") in ("1", "true", "yes"),
    )
    return data.ViewOptions(control, treatments, filters, metrics, alpha, **chosen)


def _datetime(name: str, value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} == {value!r}, must be a date or date-time such as 2026-01-01T06:00:00") from None


def cached(page: tuple[str, ...], compute: Callable[[], Any]) -> Any:
    """`compute()` for `page` and the request's arguments, reused while the log's files are
    unchanged (the HTML page, its JSON twin and its CSV tables share one answer).

    An open page's polls (header `POLL_HEADER`) take the latest answer at once while the current
    one is computed in the background, so a page of a large log that is being written stays
    responsive and shows each new answer at the poll after it is ready.
    """
    if not current_app.config["CACHE"]:
        return compute()
    key = (page, tuple(sorted(request.args.items(multi=True))))
    # The state is read before computing: a segment sealed during the computation changes the
    # state, so the next request recomputes rather than keep an answer that may have missed it.
    state = log_state(current_app.config["LOG"])
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def in_context() -> Any:
        with app.app_context():  # its own connection to the log, closed when the context ends
            return compute()

    stale = request.headers.get(POLL_HEADER) == "1"
    return current_app.extensions["dashboard_cache"].get(key, state, in_context, stale=stale)


def _error(error: AbtestError, fmt: str, status: int) -> Response:
    if fmt == "json":
        response = jsonify(error=str(error))
    else:
        response = Response(render_template("error.html", error=str(error)), mimetype="text/html")
    response.status_code = status
    return response


def _status(error: AbtestError) -> int:
    return 404 if str(error).startswith("unknown experiment") else 400


@bp.route("/")
def index() -> ResponseReturnValue:
    """The list of experiments is the front page."""
    return redirect(url_for("experiments.experiment_list", fmt="html"))


@bp.route("/experiments", defaults={"fmt": "html"})
@bp.route("/experiments.json", defaults={"fmt": "json"})
def experiment_list(fmt: str) -> Any:
    """Every experiment in the log, with arms, recommenders, listeners and the sample-ratio check."""
    try:
        items = cached(("experiments",), lambda: data.experiments(get_log()))
    except AbtestError as error:
        return _error(error, fmt, 400)
    payload = {"log": current_app.config["LOG"], "experiments": items}
    if fmt == "json":
        return jsonify(payload)
    return render_template("experiments.html", page=payload, poll=current_app.config["POLL_SECONDS"])


@bp.route("/experiments/<name>", defaults={"fmt": "html"})
@bp.route("/experiments/<name>.json", defaults={"fmt": "json"})
@bp.route("/experiments/<name>/<part>.csv", defaults={"fmt": "csv"})
def experiment_page(name: str, fmt: str, part: str | None = None) -> Any:
    """One experiment: metrics table, forest plots, cumulative effect, sessions and latency over time."""
    if fmt == "csv" and part not in CSV_PARTS:
        return _error(BadRequest(f"{part}.csv: the charts' tables are {', '.join(p + '.csv' for p in CSV_PARTS)}"), "html", 404)
    try:
        options = view_options(request.args)
        kept = current_app.extensions["dashboard_groups"]
        page = cached(("experiment", name), lambda: data.experiment(get_log(), name, options, kept))
    except AbtestError as error:
        return _error(error, fmt, _status(error))
    if fmt == "json":
        return jsonify(page)
    if fmt == "csv":
        return _csv(page, part or "metrics", name)
    return render_template(
        "experiment.html",
        page=page,
        poll=current_app.config["POLL_SECONDS"],
        query=request.query_string.decode(),
        parts=CSV_PARTS,
    )


def _csv(page: dict[str, Any], part: str, name: str) -> Response:
    rows = page[part]["rows"] if isinstance(page[part], dict) else page[part]
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-{part}.csv"'},
    )


def format_pct(x: float | None) -> str:
    """An effect or bound in % as the report prints it ('+1.234%'); '' for a missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:+.3f}%"


def format_p(p: float | None) -> str:
    """A p-value as the report prints it."""
    if p is None:
        return ""
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def format_num(x: float | None) -> str:
    """A mean to 6 significant digits, as the report prints it."""
    return "" if x is None else f"{x:.6g}"


@bp.app_template_filter("pct")
def _pct_filter(x: float | None) -> str:
    return format_pct(x)


@bp.app_template_filter("pvalue")
def _p_filter(p: float | None) -> str:
    return format_p(p)


@bp.app_template_filter("num")
def _num_filter(x: float | None) -> str:
    return format_num(x)
