"""The real service: `botify serve` on loopback with 2 workers, Redis history and a real DuckDB
log, driven by keep-alive clients with the course's exact payloads."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from botify.cli import main
from tests.botify.conftest import experiment, write_experiments
from tests.botify.live import Load, Server, count_events, logged

FLUSH = 0.25  # seconds: the flush window of these tests


@pytest.fixture
def mixed_experiments(tmp_path: Path) -> Path:
    """Control answers the history length (a probe), T1 is sticky_artist; one recorded experiment."""
    return write_experiments(
        tmp_path / "mixed.yml",
        experiment("serving", "history_probe", "sticky_artist", serving=True),
        experiment("recorded", "random", "random", "random"),
    )


def server_args(world: Path, experiments: Path, log: Path, redis_url: str, *extra: str) -> list[str | Path]:
    return ["--world", world, "--experiments", experiments, "--log", log, "--workers", "2", "--history", "redis", "--redis-url", redis_url, *extra]


def expected(load: Load) -> Counter:
    return Counter(sent.key() for sent in load.ok())


def wait_for_rows(log: Path, n: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := count_events(log)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["granian", "gunicorn"])
def test_concurrent_load_on_two_workers_logs_every_answer_once(
    serve: Callable[..., Server], small_world_dir: Path, mixed_experiments: Path, fresh_redis: str, tmp_path: Path, engine: str
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve(*server_args(small_world_dir, mixed_experiments, log, fresh_redis, "--server", engine, "--flush-window", str(FLUSH)))
    course = Load(server.url, clients=3, duration=1.5).start()
    newer = Load(server.url, clients=2, duration=1.5, with_sessions=True, user_base=10**7).start()

    time.sleep(0.75)
    seen_while_serving = count_events(log)  # a reader, while the workers write
    course.stop()
    newer.stop()
    answered = len(course.ok()) + len(newer.ok())
    rows = wait_for_rows(log, answered)

    assert not course.errors and not newer.errors
    assert all(sent.status == 200 for sent in course.sent + newer.sent)
    assert 0 < seen_while_serving <= answered
    assert rows == answered
    assert logged(log) == expected(course) + expected(newer)
    probe_users = users_served_by(log, "history_probe")
    probe_answers = [(s.user, s.answer["track"]) for s in course.sent + newer.sent if s.message == "next" and s.user in probe_users]
    steps: Counter = Counter()
    for user, length in probe_answers:  # both workers share the history: the k-th next of a session sees k tracks
        steps[user] += 1
        assert length == steps[user]
    assert probe_answers
    server.stop()


def users_served_by(log: Path, recommender: str) -> set[int]:
    connection = duckdb.connect(str(log), read_only=True)
    try:
        return {u for (u,) in connection.execute('SELECT DISTINCT "user" FROM events WHERE recommender = ?', [recommender]).fetchall()}
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["granian", "gunicorn"])
def test_kill_9_loses_no_answered_event_and_a_restart_appends(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, redis_url: str, tmp_path: Path, engine: str
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve(*server_args(small_world_dir, experiments_file, log, redis_url, "--server", engine, "--flush-window", str(FLUSH)))
    before = Load(server.url, clients=2, duration=0.6).run()
    during = Load(server.url, clients=2, duration=30, user_base=10**7).start()
    time.sleep(0.6)

    server.kill()
    killed_at = time.monotonic()
    during.stop()

    assert wait_for_rows(log, len(before.ok()), timeout=2) >= len(before.ok())
    rows = logged(log)  # the log opens and reads after a crash
    assert not (expected(before) - rows), "events sealed before the kill went missing"
    assert not (rows - expected(before) - expected(during)), "the log holds events nobody was answered"
    sealed_by_age = [s.key() for s in during.ok() if s.at < killed_at - 2 * FLUSH - 0.5]
    assert not (Counter(sealed_by_age) - rows), f"events older than the flush window ({FLUSH} s) were lost"
    count_after_kill = sum(rows.values())

    restarted = serve(*server_args(small_world_dir, experiments_file, log, redis_url, "--server", engine, "--flush-window", "3600"))
    recovered = logged(log)  # the start sealed what the killed workers had written ahead
    assert not (expected(before) + expected(during) - recovered), "answered events were lost"
    assert count_after_kill <= sum(recovered.values())
    after = Load(restarted.url, clients=2, duration=0.5, user_base=2 * 10**7).run()
    assert restarted.stop() == 0  # a clean stop seals what the workers hold, however long the window

    assert count_events(log) == sum(recovered.values()) + len(after.ok())
    connection = duckdb.connect(str(log), read_only=True)
    (starts,) = connection.execute("SELECT count(DISTINCT started) FROM experiments").fetchone()
    (first_new,) = connection.execute('SELECT min(ts) FROM events WHERE "user" >= 20000000').fetchone()
    (last_old,) = connection.execute('SELECT max(ts) FROM events WHERE "user" < 20000000').fetchone()
    connection.close()
    assert starts == 2
    assert first_new > last_old


@pytest.mark.slow
def test_keep_alive_clients_never_stall(serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path) -> None:
    server = serve("--world", small_world_dir, "--experiments", experiments_file, "--log", tmp_path / "events.duckdb")
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    body = json.dumps({"track": 10, "time": 0.3})
    connection.request("POST", "/next/1", body, {"Content-Type": "application/json"})
    connection.getresponse().read()

    durations = []
    for _ in range(50):
        started = time.perf_counter()
        connection.request("POST", "/next/1", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        durations.append(time.perf_counter() - started)
        assert response.status == 200 and not response.will_close

    # A delayed-ACK stall (headers and body in two small segments, Nagle on) costs about 40 ms on
    # every request; a healthy server answers in a millisecond or two. The median ignores the odd
    # request slowed by a busy machine, so this checks the stall, not the speed.
    median = statistics.median(durations)
    assert median < 0.02, f"median keep-alive request took {median * 1000:.1f} ms: responses stall"
    connection.close()
    server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--world", "{tmp}/none"], "is not a world directory"),
        (["--experiments", "{tmp}/none.yml"], "cannot read experiments file"),
        (["--workers", "2"], "server.workers == 2 with history.store == 'memory'"),
        (["--history", "redis", "--redis-url", "redis://127.0.0.1:1/0"], "cannot reach Redis"),
    ],
)
def test_serve_fails_fast_with_a_clear_message(small_world_dir: Path, experiments_file: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = ["serve", "--world", str(small_world_dir), "--experiments", str(experiments_file), "--log", str(tmp_path / "e.duckdb")]

    result = CliRunner().invoke(main, base + [arg.format(tmp=tmp_path) for arg in args])

    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_serve_fails_fast_on_a_missing_artifact(small_world_dir: Path, tmp_path: Path) -> None:
    experiments = tmp_path / "e.yml"
    experiments.write_text(
        "experiments:\n  - name: e\n    serving: true\n    treatments:\n      - {recommender: random}\n      - {recommender: random, artifact: missing/dir}\n"
    )

    result = CliRunner().invoke(main, ["serve", "--world", str(small_world_dir), "--experiments", str(experiments), "--log", str(tmp_path / "e.duckdb")])

    assert result.exit_code == 1
    assert "treatment 1 (T1): artifact missing/dir of recommender 'random' does not exist" in result.output


def test_serve_help_explains_every_option() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])

    assert result.exit_code == 0
    for option in ("--config", "--world", "--experiments", "--log", "--host", "--port", "--workers", "--server", "--history", "--flush-window"):
        assert option in result.output


REAL_SERVER_BAD = [
    ("POST", "/next/1", b"track=10&time=0.3", 400, "not valid JSON"),
    ("POST", "/next/1", b'{"track": 10}', 400, "missing field 'time'"),
    ("POST", "/next/1", b'{"track": 10, "time": 1.5}', 400, "time must be in [0, 1]"),
    ("POST", "/next/1", b'{"track": 2999999, "time": 0.3}', 400, "is not in the catalog"),
    ("POST", "/next/-1", b'{"track": 10, "time": 0.3}', 400, "user -1 is out of range"),
    ("POST", "/last/99999999999999999999", b'{"track": 10, "time": 0.3}', 400, "is out of range"),
    ("POST", "/next/1", b'{"track": 10, "time": 0.3, "pad": "' + b"x" * 100_000 + b'"}', 413, "body too large"),
    ("POST", "/batch", b'{"requests": [{"message": "next"}]', 400, "not valid JSON"),
    ("GET", "/experiments/-3", None, 400, "user -3 is out of range"),
    ("GET", "/track/abc", None, 404, "not found"),
    ("GET", "/next/1", None, 405, "not allowed"),
]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["granian", "gunicorn"])
def test_the_real_server_answers_bad_input_with_json_4xx_and_logs_none_of_it(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path, engine: str
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve("--world", small_world_dir, "--experiments", experiments_file, "--log", log, "--server", engine)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    answers = []
    for method, path, body, _status, _message in REAL_SERVER_BAD:
        # One keep-alive connection throughout, with a good request after each bad one: a refused
        # body (even one the server did not read) must not spoil the connection.
        connection.request(method, path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Content-Type"), json.loads(response.read())))
        if response.will_close:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/next/7", json.dumps({"track": 10, "time": 0.3}), {"Content-Type": "application/json"})
        good = connection.getresponse()
        assert good.status == 200 and set(json.loads(good.read())) == {"user", "track"}, f"after {method} {path}"
    connection.close()
    assert server.stop() == 0

    for (method, path, _body, status, message), (got, content_type, answer) in zip(REAL_SERVER_BAD, answers, strict=True):
        assert got == status, f"{method} {path}"
        assert content_type.startswith("application/json")
        assert message in answer["error"], f"{method} {path}: {answer}"
    assert logged(log) == Counter({(7, None, "next", 10, 0.3): len(REAL_SERVER_BAD)})


@pytest.mark.slow
def test_a_clean_stop_under_gunicorn_seals_while_a_connection_is_held_open(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve("--world", small_world_dir, "--experiments", experiments_file, "--log", log, "--server", "gunicorn", "--flush-window", "3600")
    answered = Load(server.url, clients=1, duration=0.5).run().ok()
    held = socket.create_connection(("127.0.0.1", server.port))  # a body that never completes: gunicorn keeps draining it
    held.sendall(b'POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{"tra')
    time.sleep(0.2)

    stopped = time.monotonic()
    assert server.stop() == 0
    took = time.monotonic() - stopped
    held.close()

    # The worker drains the held connection for less than the main process's grace, then exits and
    # seals: before, both lasted 10 s and the SIGKILL cut the seal.
    assert answered and count_events(log) == len(answered), f"stopped after {took:.1f} s"
    assert not list((tmp_path / "events.segments" / "wal").glob("*.wal"))
