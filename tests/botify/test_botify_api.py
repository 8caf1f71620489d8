"""The HTTP API through Flask's test client: answers, bad input, history, batch, logging."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from flask import Flask
from flask.testing import FlaskClient

from botify import eventlog
from tests.botify.conftest import experiment, logged_rows, write_experiments

COURSE_BODY = {"track": 10, "time": 0.3}


def events(app: Flask) -> list[dict]:
    """Seal the app's buffered events and read them back from LOG in the order served."""
    return logged_rows(app)


def test_health_says_alive(client: FlaskClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.get_json()["status"] == "alive"
    assert response.get_json()["serving"] == "cold_start"


def test_next_answers_the_course_shape_byte_for_byte(client: FlaskClient, app: Flask) -> None:
    response = client.post("/next/1", json=COURSE_BODY)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    track = response.get_json()["track"]
    assert response.data == b'{"user": 1, "track": %d}\n' % track
    assert 0 <= track < app.extensions["botify"].catalog.n_tracks


def test_last_answers_the_user_only(client: FlaskClient) -> None:
    response = client.post("/last/7", json=COURSE_BODY)

    assert response.status_code == 200
    assert response.data == b'{"user": 7}\n'


def test_body_without_content_type_is_still_json(client: FlaskClient, app: Flask) -> None:
    response = client.post("/next/1", data=b'{"track": 10, "time": 0.3}')

    assert response.status_code == 200
    track = response.get_json()["track"]
    assert response.data == b'{"user": 1, "track": %d}\n' % track
    [row] = events(app)
    assert (row["user"], row["message"], row["track"], row["time"], row["recommendation"]) == (1, "next", 10, 0.3, track)


def test_served_requests_are_logged_with_every_assignment(client: FlaskClient, app: Flask) -> None:
    answer = client.post("/next/3", json=COURSE_BODY).get_json()
    client.post("/last/3", json={"track": answer["track"], "time": 0.5, "session": 77, "ts": 1_704_067_200_000})

    rows = events(app)

    assert [row["message"] for row in rows] == ["next", "last"]
    first, last = rows
    assert (first["user"], first["track"], first["time"], first["recommendation"]) == (3, 10, 0.3, answer["track"])
    assert first["session"] is None
    # MurmurHash3 x86_32 (unsigned): "cold_start:3" -> 2277861799, % 2 = 1; "recorded:3" -> 806908633, % 3 = 1.
    assert first["experiments"] == {"cold_start": 1, "recorded": 1}
    assert first["recommender"] == "sticky_artist"
    assert 0 < first["propensity"] <= 1 and first["latency"] > 0
    assert last["recommendation"] is None and last["propensity"] is None
    assert last["session"] == 77
    assert last["ts"].isoformat() == "2024-01-01T00:00:00"


def test_track_returns_the_catalog_record(client: FlaskClient) -> None:
    response = client.get("/track/5")

    assert response.status_code == 200
    record = response.get_json()
    assert record["track"] == 5 and {"artist", "title"} <= set(record)


@pytest.mark.parametrize("track", [3000, -1, 10**30])
def test_unknown_track_is_404(client: FlaskClient, track: int) -> None:
    response = client.get(f"/track/{track}")

    assert response.status_code == 404
    assert "not in the catalog" in response.get_json()["error"]


def test_experiments_endpoint_shows_a_users_assignments(client: FlaskClient) -> None:
    response = client.get("/experiments/3")
    other = client.get("/experiments/7")

    # MurmurHash3 x86_32 (unsigned) % 2: "cold_start:3" -> 2277861799 -> 1, "cold_start:7" -> 390436836 -> 0.
    assert response.get_json()["experiments"]["cold_start"]["treatment"] == 1
    assert other.get_json()["experiments"]["cold_start"]["treatment"] == 0
    assert client.get("/experiments").get_json()["experiments"][0]["name"] == "cold_start"


BAD_SINGLE = [
    (b"", 400, "body is empty"),
    (b"track=10&time=0.3", 400, "not valid JSON"),
    (b'{"track": 10, "time": NaN}', 400, "not valid JSON"),
    (b'{"track": 10, "time": Infinity}', 400, "not valid JSON"),
    (b'{"track": 10, "time": 0.3', 400, "not valid JSON"),
    (b"[10, 0.3]", 400, "must be a JSON object"),
    (b'"track"', 400, "must be a JSON object"),
    (b'{"time": 0.3}', 400, "missing field 'track'"),
    (b'{"track": 10}', 400, "missing field 'time'"),
    (b'{"track": null, "time": 0.3}', 400, "track must be an integer, got null"),
    (b'{"track": "10", "time": 0.3}', 400, 'track must be an integer, got "10"'),
    (b'{"track": 10.0, "time": 0.3}', 400, "track must be an integer, got 10.0"),
    (b'{"track": true, "time": 0.3}', 400, "track must be an integer, got true"),
    (b'{"track": 3000, "time": 0.3}', 400, "track 3000 is not in the catalog (ids 0..2999)"),
    (b'{"track": -1, "time": 0.3}', 400, "track -1 is not in the catalog"),
    (b'{"track": 99999999999999999999999, "time": 0.3}', 400, "track must be an integer, got 1e+23"),
    (b'{"track": 10, "time": 1e999}', 400, "number is infinity"),
    (b'{"track": 10, "time": "0.3"}', 400, 'time must be a number in [0, 1], got "0.3"'),
    (b'{"track": 10, "time": false}', 400, "time must be a number in [0, 1], got false"),
    (b'{"track": 10, "time": 1.5}', 400, "time must be in [0, 1] (the fraction listened), got 1.5"),
    (b'{"track": 10, "time": -0.1}', 400, "time must be in [0, 1]"),
    (b'{"track": 10, "time": 0.3, "session": "a"}', 400, "session must be an integer"),
    (b'{"track": 10, "time": 0.3, "session": -4}', 400, "session -4 is out of range"),
    (b'{"track": 10, "time": 0.3, "ts": 1.5}', 400, "ts must be an integer (epoch milliseconds)"),
    (b'{"track": 10, "time": 0.3, "ts": -1}', 400, "ts -1 is out of range"),
    (b'{"track": 10, "time": 0.3, "sesion": 1}', 400, 'unknown field "sesion"'),
    (b'{"track": 10, "time": 0.3, "pad": "' + b"x" * 5000 + b'"}', 413, "body too large"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_SINGLE)
@pytest.mark.parametrize("endpoint", ["next", "last"])
def test_bad_bodies_get_a_4xx_naming_the_problem_and_log_nothing(
    client: FlaskClient, app: Flask, endpoint: str, body: bytes, status: int, message: str
) -> None:
    response = client.post(f"/{endpoint}/1", data=body, content_type="application/json")

    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert app.extensions[eventlog.EXTENSION].pending() == 0
    assert len(app.extensions["botify"].history) == 0


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/next/-1", 400, "user -1 is out of range"),
        ("/next/9223372036854775808", 400, "user 9223372036854775808 is out of range"),
        ("/next/abc", 404, "not found: POST /next/abc"),
        ("/nowhere", 404, "not found"),
    ],
)
def test_bad_user_ids_and_paths_get_json_errors(client: FlaskClient, app: Flask, path: str, status: int, message: str) -> None:
    response = client.post(path, json=COURSE_BODY)

    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert app.extensions[eventlog.EXTENSION].pending() == 0


def test_wrong_method_is_405_json(client: FlaskClient) -> None:
    response = client.get("/next/1")

    assert response.status_code == 405
    assert "not allowed" in response.get_json()["error"]


@pytest.fixture
def probe_client(make_app: Callable[..., Flask], probe_experiments: Path) -> FlaskClient:
    return make_app(experiments=probe_experiments).test_client()


def test_recommender_sees_the_session_so_far(probe_client: FlaskClient) -> None:
    lengths = [probe_client.post("/next/1", json={"track": t, "time": 0.5}).get_json()["track"] for t in (4, 5, 6)]

    assert lengths == [1, 2, 3]


def test_last_ends_the_session(probe_client: FlaskClient) -> None:
    probe_client.post("/next/1", json=COURSE_BODY)
    probe_client.post("/last/1", json=COURSE_BODY)

    assert probe_client.post("/next/1", json=COURSE_BODY).get_json()["track"] == 1


def test_a_new_session_id_starts_a_new_history(probe_client: FlaskClient) -> None:
    probe_client.post("/next/1", json={**COURSE_BODY, "session": 1})
    probe_client.post("/next/1", json={**COURSE_BODY, "session": 1})

    assert probe_client.post("/next/1", json={**COURSE_BODY, "session": 2}).get_json()["track"] == 1
    assert probe_client.post("/next/1", json={**COURSE_BODY, "session": 1}).get_json()["track"] == 3


def test_histories_of_users_are_apart(probe_client: FlaskClient) -> None:
    probe_client.post("/next/1", json=COURSE_BODY)

    assert probe_client.post("/next/2", json=COURSE_BODY).get_json()["track"] == 1


@pytest.mark.parametrize(("name", "kind"), [("broken", "exception"), ("out_of_catalog", "out_of_range")])
def test_a_failing_recommender_without_fallback_gives_500_without_details_and_logs_an_error_event(
    make_app: Callable[..., Flask], tmp_path: Path, name: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(experiments=write_experiments(tmp_path / "x.yml", experiment("e", name, name, serving=True)))

    response = app.test_client().post("/next/1", json=COURSE_BODY)

    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error while recommending (see the service log)"}
    segment = app.extensions[eventlog.EXTENSION].flush()
    assert segment is not None
    events = pq.read_table(segment).to_pylist()
    assert [(e["recommendation"], e["recommender"], e["error"]) for e in events] == [(None, name, kind)]
    assert events[0]["error_message"].startswith(f"recommender {name!r} fails ")
    assert any(record.levelname == "ERROR" and name in record.getMessage() for record in caplog.records)


# --- batch -------------------------------------------------------------------------------


def course_session(user: int, tracks: list[int], session: int | None = None, ts: int | None = None) -> list[dict]:
    """A session as the course's client plays it, optionally with the newer client's fields."""
    items = [{"message": "next", "user": user, "track": t, "time": 1.0 if i == 0 else 0.4} for i, t in enumerate(tracks)]
    items.append({"message": "last", "user": user, "track": tracks[-1], "time": 0.2})
    for step, item in enumerate(items):
        if session is not None:
            item["session"] = session
        if ts is not None:
            item["ts"] = ts + 1000 * step
    return items


def test_batch_answers_exactly_what_single_requests_would(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    # Seeds come from (session, ts) when the client sends ts; without ts the clock would seed them.
    items = [
        item for user in range(12) for item in course_session(user, [user, user + 1, user + 2], session=user % 3 or None, ts=1_704_153_600_000 + user)
    ]
    single_app = make_app()
    batch_app = make_app(log=tmp_path / "batch" / "events.duckdb")

    singles = []
    for item in items:
        body = {key: value for key, value in item.items() if key not in ("message", "user")}
        response = single_app.test_client().post(f"/{item['message']}/{item['user']}", json=body)
        singles.append(orjson.loads(response.data))
    batch = batch_app.test_client().post("/batch", json={"requests": items})

    assert batch.status_code == 200
    assert batch.get_json()["responses"] == singles
    columns = ["user", "session", "message", "track", "time", "recommendation", "recommender", "experiments", "propensity"]
    strip = [{key: row[key] for key in columns} for row in events(batch_app)]
    assert sorted(map(repr, strip)) == sorted(map(repr, ({key: row[key] for key in columns} for row in events(single_app))))


def test_batch_keeps_the_order_of_one_users_steps(make_app: Callable[..., Flask], probe_experiments: Path) -> None:
    client = make_app(experiments=probe_experiments).test_client()
    items = course_session(5, [1, 2, 3]) + course_session(5, [4, 5])

    responses = client.post("/batch", json={"requests": items}).get_json()["responses"]

    assert responses == [{"user": 5, "track": 1}, {"user": 5, "track": 2}, {"user": 5, "track": 3}, {"user": 5}] + [
        {"user": 5, "track": 1},
        {"user": 5, "track": 2},
        {"user": 5},
    ]


def test_batch_answers_invalid_items_alone_and_serves_the_rest(client: FlaskClient, app: Flask) -> None:
    items = [
        {"message": "next", "user": 1, "track": 10, "time": 0.3},
        {"message": "skip", "user": 1, "track": 10, "time": 0.3},
        {"message": "next", "user": -2, "track": 10, "time": 0.3},
        {"message": "next", "user": 3, "track": 10, "time": 2.0},
        {"message": "last", "user": 4, "track": 10},
        [1, 2],
        {"message": "last", "user": 5, "track": 10, "time": 0.3},
    ]

    responses = client.post("/batch", json={"requests": items}).get_json()["responses"]

    assert responses[0]["user"] == 1 and "track" in responses[0]
    assert responses[1] == {"error": "message must be 'next' or 'last', got \"skip\"", "status": 400}
    assert "user -2 is out of range" in responses[2]["error"]
    assert "time must be in [0, 1]" in responses[3]["error"]
    assert "missing field 'time'" in responses[4]["error"]
    assert "must be a JSON object" in responses[5]["error"]
    assert responses[6] == {"user": 5}
    assert [(row["user"], row["message"]) for row in events(app)] == [(1, "next"), (5, "last")]


GOOD_ITEM = {"message": "next", "user": 1, "track": 10, "time": 0.3}
BAD_ITEMS = [
    ({"message": "next", "track": 10, "time": 0.3}, "missing field 'user'"),
    ({"message": "next", "user": "1", "track": 10, "time": 0.3}, 'user must be an integer, got "1"'),
    ({"message": "next", "user": 2**63, "track": 10, "time": 0.3}, "user 9223372036854775808 is out of range"),
    ({"message": "next", "user": 1, "track": 3000, "time": 0.3}, "track 3000 is not in the catalog"),
    ({"message": "next", "user": 1, "track": "10", "time": 0.3}, 'track must be an integer, got "10"'),
    ({"message": "next", "user": 1, "track": 10, "time": None}, "time must be a number in [0, 1], got null"),
    ({"message": "next", "user": 1, "track": 10, "time": 0.3, "sesion": 1}, 'unknown field "sesion"'),
    ({"message": "next", "user": 1, "track": 10, "time": 0.3, "session": -1}, "session -1 is out of range"),
    ({"message": "next", "user": 1, "track": 10, "time": 0.3, "ts": 1.5}, "ts must be an integer"),
    ({"user": 1, "track": 10, "time": 0.3}, "missing field 'message'"),
    ({"message": 1, "user": 1, "track": 10, "time": 0.3}, "message must be 'next' or 'last', got 1"),
    ("next", "must be a JSON object"),
]


@pytest.mark.parametrize(("item", "message"), BAD_ITEMS, ids=[message for _, message in BAD_ITEMS])
def test_each_bad_batch_item_gets_its_own_400_naming_the_problem(
    client: FlaskClient, app: Flask, item: object, message: str
) -> None:
    responses = client.post("/batch", json={"requests": [item, GOOD_ITEM]}).get_json()["responses"]

    assert responses[0]["status"] == 400
    assert message in responses[0]["error"]
    assert responses[1]["user"] == 1 and "track" in responses[1]
    assert [(row["user"], row["message"]) for row in events(app)] == [(1, "next")]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"nope", 400, "not valid JSON"),
        (b"[]", 400, 'body must be a JSON object {"requests": [...]}'),
        (b'{"items": []}', 400, 'body must be a JSON object {"requests": [...]}'),
        (b'{"requests": {}}', 400, "requests must be a list"),
        (b'{"requests": [], "extra": 1}', 400, 'unknown field "extra"'),
    ],
)
def test_bad_batch_bodies_are_refused_whole(client: FlaskClient, app: Flask, body: bytes, status: int, message: str) -> None:
    response = client.post("/batch", data=body, content_type="application/json")

    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert app.extensions[eventlog.EXTENSION].pending() == 0


def test_batch_over_the_size_limit_is_refused(make_app: Callable[..., Flask]) -> None:
    client = make_app(**{"limits.max_batch": 3}).test_client()
    items = [{"message": "next", "user": u, "track": 1, "time": 0.5} for u in range(4)]

    response = client.post("/batch", json={"requests": items})

    assert response.status_code == 413
    assert "too many requests in one batch: 4, at most 3" in response.get_json()["error"]


def test_empty_batch_is_fine(client: FlaskClient) -> None:
    assert client.post("/batch", json={"requests": []}).get_json() == {"responses": []}


def test_same_ts_and_session_give_the_same_answers(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    items = [item for user in range(20) for item in course_session(user, [user, user + 7], session=1000 + user, ts=1_704_153_600_000)]
    first = make_app().test_client().post("/batch", json={"requests": items}).get_json()
    second = make_app(log=tmp_path / "again" / "events.duckdb").test_client().post("/batch", json={"requests": items}).get_json()

    assert first == second


EVERY_ENDPOINT_BAD = [
    ("GET", "/track/abc", None, 404, "not found: GET /track/abc"),
    ("GET", "/track/50000", None, 404, "track 50000"),
    ("POST", "/track/1", None, 405, "method POST not allowed on /track/1"),
    ("GET", "/experiments/-1", None, 400, "user -1 is out of range"),
    ("GET", "/experiments/9223372036854775808", None, 400, "user 9223372036854775808 is out of range"),
    ("GET", "/experiments/abc", None, 404, "not found: GET /experiments/abc"),
    ("DELETE", "/experiments", None, 405, "method DELETE not allowed"),
    ("POST", "/", None, 405, "method POST not allowed on /"),
    ("POST", "/next/1", b"\xff\xfe", 400, "not valid JSON"),
    ("POST", "/last/-5", orjson.dumps(COURSE_BODY), 400, "user -5 is out of range"),
    ("POST", "/last/abc", orjson.dumps(COURSE_BODY), 404, "not found: POST /last/abc"),
    ("GET", "/last/1", None, 405, "method GET not allowed on /last/1"),
    ("POST", "/batch", b"", 400, "body is empty"),
    ("POST", "/batch", b"\xff\xfe", 400, "not valid JSON"),
    ("POST", "/batch", b'{"requests": [1', 400, "not valid JSON"),
    ("POST", "/batch", b'{"requests": [' + b" " * 9_000_000 + b"]}", 413, "body too large"),
    ("GET", "/batch", None, 405, "method GET not allowed on /batch"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), EVERY_ENDPOINT_BAD, ids=[f"{m} {p}" for m, p, *_ in EVERY_ENDPOINT_BAD])
def test_every_endpoint_answers_bad_input_with_a_json_4xx(
    client: FlaskClient, app: Flask, method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    response = client.open(path, method=method, data=body, content_type="application/json")

    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert message in response.get_json()["error"]
    assert app.extensions[eventlog.EXTENSION].pending() == 0
