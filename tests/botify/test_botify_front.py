"""`server.front: nginx`: real nginx in front of a real service on loopback.

With nginx taking the clients, one request thread per worker must still leave good requests
unhurt by a slow body, nginx's own refusals must carry JSON, answered requests must be logged
once, and nginx must never outlive the service that started it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from botify import front
from botify.config import ServiceConfig
from tests.botify.live import HOST, Server, count_events
from tests.botify.test_botify_reliability import BAD_INPUT, send_bad_input


def front_config(tmp_path: Path, body_timeout: float = 1.0) -> Path:
    path = tmp_path / "botify.yml"
    path.write_text(f"server:\n  front: nginx\n  body_timeout: {body_timeout}\n")  # one request thread: the default behind nginx
    return path


def post(connection: http.client.HTTPConnection, user: int) -> tuple[int, float]:
    started = time.perf_counter()
    connection.request("POST", f"/next/{user}", json.dumps({"track": 10, "time": 0.3}), {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def nginx_pids() -> set[int]:
    """Every nginx process on this machine."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "nginx":
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def test_one_thread_behind_nginx_a_slow_body_delays_no_one_and_is_cut_off(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve("--config", front_config(tmp_path), "--world", small_world_dir, "--experiments", experiments_file, "--log", log)
    slow = socket.create_connection((HOST, server.port))
    slow.sendall(b'POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{"tra')
    time.sleep(0.2)

    good = http.client.HTTPConnection(HOST, server.port, timeout=10)
    answers = [post(good, user) for user in range(2, 12)]
    good.close()
    # With one request thread and no front, the good requests would wait for the slow body forever.
    assert [status for status, _ in answers] == [200] * 10
    assert max(seconds for _, seconds in answers) < 0.1, f"good requests took {[round(s * 1000) for _, s in answers]} ms"

    slow.settimeout(5.0)  # body_timeout is 1 s: nginx closes the connection (408, sent or not)
    started = time.monotonic()
    try:
        while slow.recv(4096):
            pass
    except ConnectionResetError:
        pass
    assert time.monotonic() - started < 4.0, "nginx did not cut off the stalled body"
    slow.close()
    assert server.stop() == 0
    assert count_events(log) == 10  # the slow request never reached the service


@pytest.mark.slow
def test_behind_nginx_every_kind_of_bad_input_gets_a_json_4xx_and_nothing_is_logged(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve("--config", front_config(tmp_path), "--world", small_world_dir, "--experiments", experiments_file, "--log", log)
    answers = send_bad_input(server.port)
    assert server.stop() == 0

    closed = [name for name, _raw, half_close, _json in BAD_INPUT if half_close and answers[name][0] == 0]
    for name, *_ in BAD_INPUT:  # granian's own refusals included: nginx makes them, with a body
        if name in closed:  # a body cut short by a half-close: nginx closes without an answer (docs/botify.md)
            continue
        status, headers, content = answers[name]
        assert 400 <= status < 500, f"{name}: {status}"
        assert headers.get("content-type", "").startswith("application/json"), f"{name}: {headers}"
        assert json.loads(content)["error"], name
    assert count_events(log) == 0
    print(f"\n{len(BAD_INPUT)} kinds of bad input behind nginx: {len(BAD_INPUT) - len(closed)} JSON 4xx, {len(closed)} closed unanswered ({closed}), 0 logged")


def test_behind_nginx_every_answered_request_is_logged_once(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.duckdb"
    server = serve("--config", front_config(tmp_path), "--world", small_world_dir, "--experiments", experiments_file, "--log", log)
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    statuses = [post(connection, user)[0] for user in range(500)]
    connection.close()
    assert server.stop() == 0
    assert statuses == [200] * 500
    assert count_events(log) == 500


def test_nginx_stops_with_the_service_and_dies_with_it(
    serve: Callable[..., Server], small_world_dir: Path, experiments_file: Path, tmp_path: Path
) -> None:
    before = nginx_pids()
    stopped = serve("--config", front_config(tmp_path), "--world", small_world_dir, "--experiments", experiments_file, "--log", tmp_path / "a.duckdb")
    assert nginx_pids() - before, "no nginx started"
    assert stopped.stop() == 0
    deadline = time.monotonic() + 10
    while nginx_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not nginx_pids() - before, "nginx outlived a clean stop"

    killed = serve("--config", front_config(tmp_path), "--world", small_world_dir, "--experiments", experiments_file, "--log", tmp_path / "b.duckdb")
    os.kill(killed.process.pid, signal.SIGKILL)  # the main process only: nginx is its child
    killed.process.wait(10)
    deadline = time.monotonic() + 10
    while nginx_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not nginx_pids() - before, "nginx outlived a killed service"
    with pytest.raises(OSError):
        socket.create_connection((HOST, killed.port), timeout=1).close()


def test_missing_nginx_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(front.shutil, "which", lambda _name: None)
    monkeypatch.setattr(front, "NGINX_PATHS", ())
    with pytest.raises(front.FrontError, match=r"needs nginx installed .*apt-get install nginx"):
        front.find_nginx()


def test_the_config_carries_the_limits_and_timeouts(tmp_path: Path) -> None:
    config = ServiceConfig.model_validate(
        {"server": {"front": "nginx", "port": 6000, "header_timeout": 2.5, "body_timeout": 0.75}, "limits": {"max_batch_body": 123456}}
    )
    text = front.render_config(config, tmp_path, tmp_path / "wsgi.sock")
    assert "listen 127.0.0.1:6000;" in text
    assert "client_header_timeout 2500ms;" in text and "client_body_timeout 750ms;" in text
    assert "client_max_body_size 123456;" in text
    assert f"server unix:{tmp_path / 'wsgi.sock'};" in text
    for status in front.REFUSALS:  # each refusal nginx makes is redirected to its JSON body
        assert f"error_page {status} {front.REFUSED}{status};" in text


def test_behind_nginx_one_request_thread_is_the_default_and_an_explicit_count_wins() -> None:
    assert ServiceConfig.model_validate({"server": {"front": "nginx"}}).server.threads == 1
    assert ServiceConfig.model_validate({"server": {"front": "nginx", "threads": 4}}).server.threads == 4
    assert ServiceConfig.model_validate({"server": {}}).server.threads == 8
