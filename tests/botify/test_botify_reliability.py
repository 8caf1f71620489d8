"""Reliability of the real service: no answered event lost to kill -9, no client stalls the
others, bad HTTP input of every kind refused and never logged, a busy port refused at start.

Real servers (`python -m botify serve` of this checkout) on loopback, real logs, a private Redis;
every loop is bounded in time or count.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from tests.botify.live import HOST, Server, count_events, logged

TARGET = 10_000  # answered requests per kill test
LOAD_LIMIT = 120.0  # seconds: the most a load may run before the test gives up


@dataclass
class Players:
    """Clients playing the course's sessions (a fresh user each, 5 x /next then /last) over
    keep-alive connections; a client whose connection fails reconnects and plays on."""

    port: int
    clients: int = 4
    user_base: int = 0
    answered: list[tuple] = field(default_factory=list)  # keys of requests answered 200
    unanswered: list[tuple] = field(default_factory=list)  # keys sent whose answer never came
    refused: list[tuple] = field(default_factory=list)  # answered, but not 200
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Players:
        for index in range(self.clients):
            thread = threading.Thread(target=self._play, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_for(self, n: int, timeout: float = LOAD_LIMIT) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def finish(self) -> Players:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
        return self

    def _play(self, index: int) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        session = 0
        deadline = time.monotonic() + LOAD_LIMIT
        while not self.stop.is_set() and time.monotonic() < deadline:
            session += 1
            user = self.user_base + index * 1_000_000 + session
            track = user % 1000
            for step in range(6):
                message = "last" if step == 5 else "next"
                time_ = round(0.1 + 0.1 * step, 2)
                key = (user, None, message, track, time_)
                try:
                    connection.request("POST", f"/{message}/{user}", json.dumps({"track": track, "time": time_}), {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    self.unanswered.append(key)
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
                    time.sleep(0.02)
                    break
                if response.status != 200:
                    self.refused.append(key)
                    break
                self.answered.append(key)
                if message == "next":
                    track = json.loads(answer)["track"]
        connection.close()


def worker_pids(server: Server) -> list[int]:
    """The pids of the server's worker processes (children of its main process)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def wait_for_workers(server: Server, n: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(server)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def assert_answered_are_logged_once(log: Path, players: Players) -> Counter:
    """Every answered request is a row, once; a row beyond them is a request in flight at the kill."""
    rows = logged(log)
    answered = Counter(players.answered)
    assert not answered - rows, f"{sum((answered - rows).values())} answered events are missing from the log"
    extra = rows - answered
    assert not extra - Counter(players.unanswered), "the log holds events that were never sent"
    assert all(count == 1 for count in rows.values()), "an event is logged twice"
    duplicates = sum(count - 1 for count in rows.values())
    print(  # the Proof's figures, shown with `pytest -s`
        f"\n{len(players.answered):,} answered 200, {sum(rows.values()):,} rows logged "
        f"({sum(extra.values())} of them in flight at the kill, unanswered), {duplicates} duplicates"
    )
    return rows


def two_workers(world: Path, experiments: Path, log: Path, redis_url: str) -> list[str | Path]:
    return ["--world", world, "--experiments", experiments, "--log", log, "--workers", "2", "--history", "redis", "--redis-url", redis_url]


@pytest.mark.slow
def test_kill_9_of_every_worker_under_load_loses_no_answered_event_and_a_restart_appends(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, fresh_redis: str, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    args = two_workers(small_world_dir, experiments_file, log, fresh_redis)
    server = serve(*args)
    players = Players(server.port).start()
    players.wait_for(TARGET)

    server.kill()  # SIGKILL to the main process and both workers, mid-load
    players.finish()
    assert len(players.answered) >= TARGET
    restarted = serve(*args)  # its start recovers what the dead workers had written

    recovered = assert_answered_are_logged_once(log, players)
    after = Players(restarted.port, user_base=10**8).start()
    after.wait_for(500)
    after.finish()
    assert restarted.stop() == 0

    rows = logged(log)
    assert rows == recovered + Counter(after.answered)
    print(f"restart: {sum(recovered.values()):,} rows recovered, then {len(after.answered):,} answered and appended after them")
    connection = duckdb.connect(str(log), read_only=True)
    (first_new,) = connection.execute('SELECT min(ts) FROM events WHERE "user" >= ?', [10**8]).fetchone()
    (last_old,) = connection.execute('SELECT max(ts) FROM events WHERE "user" < ?', [10**8]).fetchone()
    connection.close()
    assert first_new > last_old


@pytest.mark.slow
def test_a_worker_killed_under_load_and_respawned_loses_no_answered_event(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, fresh_redis: str, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve(*two_workers(small_world_dir, experiments_file, log, fresh_redis))
    victim, survivor = wait_for_workers(server, 2)[:2]
    players = Players(server.port).start()
    players.wait_for(TARGET // 2)

    os.kill(victim, signal.SIGKILL)
    players.wait_for(TARGET)
    respawned = wait_for_workers(server, 2)
    players.finish()
    assert server.stop() == 0  # the workers' clean stop seals what the dead one left

    assert len(players.answered) >= TARGET
    assert victim not in respawned and survivor in respawned
    assert_answered_are_logged_once(log, players)
    assert not list((tmp_path / "events.segments" / "wal").glob("*.wal"))


def test_a_slow_body_does_not_delay_a_concurrent_good_request(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve("--world", small_world_dir, "--experiments", experiments_file, "--log", log)
    slow = socket.create_connection((HOST, server.port))
    slow.sendall(b'POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{"tra')
    time.sleep(0.2)  # its request thread now waits for the rest of the body

    good = http.client.HTTPConnection(HOST, server.port, timeout=10)
    latencies = []
    for user in range(2, 12):
        started = time.perf_counter()
        good.request("POST", f"/next/{user}", json.dumps({"track": 10, "time": 0.3}), {"Content-Type": "application/json"})
        response = good.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        assert response.status == 200
    slow.close()
    good.close()

    # While the slow body is held (it never completes), every good request is answered on its own
    # time: a stalled service would make them wait for the slow client, indefinitely.
    assert max(latencies) < 0.1, f"good requests took {[round(x * 1000) for x in latencies]} ms"
    print(f"\nwhile a slow body is held: good requests answered in {[round(x * 1000, 1) for x in latencies]} ms")
    assert server.stop() == 0
    assert count_events(log) == 10


JSON_BODY = b'{"track": 10, "time": 0.3}'


def request(method: str, path: str, body: bytes | None = JSON_BODY, headers: dict[str, str] | None = None) -> bytes:
    """A raw HTTP/1.1 request with a correct Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b"")


def body(text: str) -> bytes:
    return request("POST", "/next/1", text.encode())


def chunked(method: str, path: str, payload: bytes, chunk: int = 1 << 16) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    parts = [b"%x\r\n%s\r\n" % (len(payload[i : i + chunk]), payload[i : i + chunk]) for i in range(0, len(payload), chunk)]
    return head + b"".join(parts) + b"0\r\n\r\n"


def big_batch(n: int) -> bytes:
    item = b'{"message": "next", "user": 1, "track": 1, "time": 0.5}'
    return b'{"requests": [' + b",".join([item] * n) + b"]}"


# (name, raw request, half-close after sending, whether the answer can be JSON). The last flag is
# False where granian itself refuses the request before the app sees it (docs/botify.md).
BAD_INPUT: list[tuple[str, bytes, bool, bool]] = [
    ("not json", body("track=10&time=0.3"), False, True),
    ("nan", body('{"track": 10, "time": NaN}'), False, True),
    ("infinity", body('{"track": 10, "time": Infinity}'), False, True),
    ("array", body("[10, 0.3]"), False, True),
    ("string", body('"next"'), False, True),
    ("number", body("10"), False, True),
    ("null", body("null"), False, True),
    ("empty body", request("POST", "/next/1", b""), False, True),
    ("blank body", body("   \n"), False, True),
    ("no body at all", request("POST", "/next/1", None), False, True),
    ("missing track", body('{"time": 0.3}'), False, True),
    ("missing time", body('{"track": 10}'), False, True),
    ("unknown field", body('{"track": 10, "time": 0.3, "x": 1}'), False, True),
    ("track bool", body('{"track": true, "time": 0.3}'), False, True),
    ("track float", body('{"track": 10.5, "time": 0.3}'), False, True),
    ("track string", body('{"track": "10", "time": 0.3}'), False, True),
    ("track negative", body('{"track": -1, "time": 0.3}'), False, True),
    ("track beyond catalog", body('{"track": 2999999, "time": 0.3}'), False, True),
    ("track beyond 64 bits", body('{"track": 99999999999999999999, "time": 0.3}'), False, True),
    ("time negative", body('{"track": 10, "time": -0.1}'), False, True),
    ("time above 1", body('{"track": 10, "time": 1.5}'), False, True),
    ("time string", body('{"track": 10, "time": "0.3"}'), False, True),
    ("time bool", body('{"track": 10, "time": false}'), False, True),
    ("time null", body('{"track": 10, "time": null}'), False, True),
    ("session bool", body('{"track": 10, "time": 0.3, "session": true}'), False, True),
    ("session negative", body('{"track": 10, "time": 0.3, "session": -5}'), False, True),
    ("session string", body('{"track": 10, "time": 0.3, "session": "5"}'), False, True),
    ("session beyond 63 bits", body('{"track": 10, "time": 0.3, "session": 9223372036854775808}'), False, True),
    ("ts negative", body('{"track": 10, "time": 0.3, "ts": -1}'), False, True),
    ("ts float", body('{"track": 10, "time": 0.3, "ts": 1.5}'), False, True),
    ("ts beyond year 9999", body('{"track": 10, "time": 0.3, "ts": 253402300800000}'), False, True),
    ("last with bad time", request("POST", "/last/1", b'{"track": 10, "time": 2}'), False, True),
    ("user negative", request("POST", "/next/-1"), False, True),
    ("user beyond 63 bits", request("POST", "/last/99999999999999999999"), False, True),
    ("user not a number", request("POST", "/next/abc"), False, True),
    ("user a fraction", request("POST", "/next/1.5"), False, True),
    ("arabic-indic digits on next", request("POST", "/next/\u0661\u0662".encode("utf-8").decode("latin-1")), False, True),
    ("fullwidth digits on next", request("POST", "/next/\uff11\uff12".encode("utf-8").decode("latin-1")), False, True),
    ("arabic-indic digits on last", request("POST", "/last/\u0661\u0662".encode("utf-8").decode("latin-1")), False, True),
    ("arabic-indic digits on track", request("GET", "/track/\u0661\u0662".encode("utf-8").decode("latin-1"), None), False, True),
    ("fullwidth digits on experiments", request("GET", "/experiments/\uff11\uff12".encode("utf-8").decode("latin-1"), None), False, True),
    ("superscript digit", request("POST", "/next/\u00b2".encode("utf-8").decode("latin-1")), False, True),
    ("percent-encoded unicode digits", request("POST", "/next/%D9%A1%D9%A2"), False, True),
    ("experiments user negative", request("GET", "/experiments/-3", None), False, True),
    ("unknown path", request("GET", "/nothing", None), False, True),
    ("trailing path", request("POST", "/next/1/2"), False, True),
    ("get on next", request("GET", "/next/1", None), False, True),
    ("put on batch", request("PUT", "/batch"), False, True),
    ("delete on experiments", request("DELETE", "/experiments", None), False, True),
    ("single body over max_body", body('{"track": 10, "time": 0.3, "pad": "' + "x" * 5000 + '"}'), False, True),
    ("content-length far over the limit", b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{}", False, True),
    ("chunked single body over max_body", chunked("POST", "/next/1", b'{"track": 10, "time": 0.3, "pad": "' + b"x" * 5000 + b'"}'), False, True),
    ("chunked batch over max_batch_body", chunked("POST", "/batch", big_batch(160_000)), False, True),
    ("batch with too many items", request("POST", "/batch", big_batch(10_001)), False, True),
    ("batch not an object", request("POST", "/batch", b"[]"), False, True),
    ("batch without requests", request("POST", "/batch", b'{"items": []}'), False, True),
    ("batch requests not a list", request("POST", "/batch", b'{"requests": {}}'), False, True),
    ("batch extra field", request("POST", "/batch", b'{"requests": [], "x": 1}'), False, True),
    ("batch not json", request("POST", "/batch", b'{"requests": [}'), False, True),
    ("truncated next body", b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n" + JSON_BODY, True, True),
    ("truncated last body", b"POST /last/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n" + JSON_BODY, True, True),
    ("truncated batch body", b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + b'{"requests": [{"message": "next", "user": 1, "track": 1, "time": 0.5}]}', True, True),
    ("body cut one byte short", b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\n" + JSON_BODY, True, True),
    ("content-length not a number", b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n" + JSON_BODY, False, False),
    ("content-length negative", b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: -26\r\n\r\n" + JSON_BODY, False, False),
    ("two different content-lengths", b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\nContent-Length: 20\r\n\r\n" + JSON_BODY, False, False),
    ("bad chunk size", b"POST /next/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + JSON_BODY + b"\r\n0\r\n\r\n", False, True),
    ("url of 100 kB", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", False, False),
    ("header of 1 MB", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", False, False),
    ("not a request line", b"GARBAGE\r\n\r\n", False, False),
    ("space in header name", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", False, False),
]


def exchange(port: int, raw: bytes, half_close: bool) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a new connection and read one response: (status, headers, body); status 0
    when the server closed the connection without answering."""
    with socket.create_connection((HOST, port), timeout=20) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused before reading everything; its answer is still there
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        if not data:
            return 0, {}, b""
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(status_line.split()[1]), headers, rest


def send_bad_input(port: int) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Every kind of BAD_INPUT on its own connection, each followed by a good `GET /` that must be answered 200."""
    answers = {}
    for name, raw, half_close, _json in BAD_INPUT:
        answers[name] = exchange(port, raw, half_close)
        status, _headers, _body = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False)
        assert status == 200, f"the service is down after {name!r}"
    return answers


@pytest.mark.slow
def test_every_kind_of_bad_http_input_gets_a_4xx_is_not_logged_and_the_service_stays_up(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve("--world", small_world_dir, "--experiments", experiments_file, "--log", log)
    answers = send_bad_input(server.port)
    assert server.stop() == 0

    assert len(BAD_INPUT) >= 60
    for name, _raw, _half_close, can_be_json in BAD_INPUT:
        status, headers, content = answers[name]
        assert 400 <= status < 500, f"{name}: {status}"
        if can_be_json:
            assert headers.get("content-type", "").startswith("application/json"), f"{name}: {headers}"
            assert json.loads(content)["error"], name
        else:
            assert content == b"", f"{name}: granian's own refusal, documented as carrying no body"
    assert count_events(log) == 0
    statuses = Counter(answers[name][0] for name, *_ in BAD_INPUT)
    with_json = sum(1 for *_, can_be_json in BAD_INPUT if can_be_json)
    print(f"\n{len(BAD_INPUT)} kinds of bad input, statuses {dict(sorted(statuses.items()))}, {with_json} with a JSON error, 0 logged")


def test_a_second_serve_on_a_busy_port_exits_naming_the_port(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    first = serve("--world", small_world_dir, "--experiments", experiments_file, "--log", tmp_path / "first.duckdb")
    command = [sys.executable, "-m", "botify", "serve", "--world", str(small_world_dir), "--experiments", str(experiments_file)]
    command += ["--log", str(tmp_path / "second.duckdb"), "--host", HOST, "--port", str(first.port)]

    second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=first.env)

    assert second.returncode != 0
    assert second.stderr.strip().splitlines()[-1] == (
        f"Error: port {first.port} on {HOST} is already in use (another botify serve?); choose another --port"
    )
    assert "Traceback" not in second.stderr
    assert not (tmp_path / "second.segments").exists()  # refused before anything was recorded
    assert first.stop() == 0
