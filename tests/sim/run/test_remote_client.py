"""RemoteClient against a scripted HTTP server on loopback: retries, backoff, errors that name who failed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sim.config import ServiceOptions
from sim.run.clients import LAST, NEXT, Item, RemoteClient, ServiceError

# A scripted answer: (status, JSON body), or None to drop the connection without answering.
Answer = tuple[int, object] | None


class ScriptedServer:
    """Answers POSTs from a script of (status, body) pairs, then with `default(path, body)`; records each call."""

    def __init__(self, script: list[Answer], default: Callable[[str, dict], Answer]) -> None:
        self.script, self.default, self.calls = list(script), default, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botify's servers

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.calls.append((self.path, body))
                answer = server.script.pop(0) if server.script else server.default(self.path, body)
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def botify_like(path: str, body: dict) -> Answer:
    """A well-behaved service: track = user * 10 for every 'next'."""
    if path == "/batch":
        return 200, {"responses": [{"user": r["user"], "track": r["user"] * 10} for r in body["requests"]]}
    return 200, {"user": int(path.rsplit("/", 1)[1]), "track": int(path.rsplit("/", 1)[1]) * 10}


ITEMS = [Item(NEXT, 7, 1, 0.5, 70, 1_000), Item(LAST, 8, 2, 0.1, 80, 1_000), Item(NEXT, 9, 3, 1.0, 90, 1_000)]


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[ScriptedServer, RemoteClient]]]:
    started: list[tuple[ScriptedServer, RemoteClient]] = []

    def start(script: list[Answer], default: Callable[[str, dict], Answer] = botify_like, retries: int = 3):
        server = ScriptedServer(script, default)
        client = RemoteClient(ServiceOptions(port=server.port, retries=retries, backoff_s=0.001, timeout_s=5.0))
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.close()


def test_a_batch_answers_each_next_and_logs_each_item(serve: Callable) -> None:
    server, client = serve([])

    assert client.serve(ITEMS) == [70, None, 90]
    assert [c[0] for c in server.calls] == ["/batch"]
    assert server.calls[0][1]["requests"][1] == {"message": LAST, "user": 8, "track": 2, "time": 0.1, "session": 80, "ts": 1_000}


def test_server_errors_and_dropped_connections_are_retried(serve: Callable) -> None:
    server, client = serve([(503, {"error": "busy"}), None, (429, {"error": "slow down"})])

    assert client.serve(ITEMS) == [70, None, 90]
    assert len(server.calls) == 4  # 503, dropped, 429, then the answer
    assert all(call == server.calls[0] for call in server.calls)  # the same batch each time


def test_a_lasting_failure_names_the_users_sessions_and_status(serve: Callable) -> None:
    server, client = serve([], default=lambda path, body: (500, {"error": "boom"}), retries=2)

    with pytest.raises(ServiceError, match=r"POST /batch failed after 3 tries \(user 7 session 70, user 8 session 80, "
                                           r"user 9 session 90\): status 500: .*boom"):
        client.serve(ITEMS)
    assert len(server.calls) == 3


def test_a_client_error_is_not_retried(serve: Callable) -> None:
    server, client = serve([(400, {"error": "field 'time' must be in [0, 1]"})])

    with pytest.raises(ServiceError, match=r"failed after 1 tries .*status 400: .*must be in \[0, 1\]"):
        client.serve(ITEMS)
    assert len(server.calls) == 1


def test_an_item_rejected_inside_a_batch_is_reported(serve: Callable) -> None:
    rejected = {"responses": [{"user": 7, "track": 70}, {"error": "unknown track 2", "status": 422}, {"user": 9, "track": 90}]}
    _, client = serve([(200, rejected)])

    with pytest.raises(ServiceError, match="rejected last for user 8, session 80: 422 unknown track 2"):
        client.serve(ITEMS)


def test_without_a_batch_endpoint_it_falls_back_to_one_request_per_item(serve: Callable) -> None:
    server, client = serve([(404, {"error": "not found"})])

    assert client.serve(ITEMS) == [70, None, 90]
    assert client.serve(ITEMS[:1]) == [70]  # and stays on single requests
    assert [c[0] for c in server.calls] == ["/batch", "/next/7", "/last/8", "/next/9", "/next/7"]
    assert server.calls[1][1] == {"track": 1, "time": 0.5, "session": 70, "ts": 1_000}


def test_url_lists_name_replicas_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sim.run.__main__ import main as run_cli

    runner = CliRunner()
    bad = runner.invoke(run_cli, ["--url", "http://127.0.0.1:9,ftp://x:1", "--episodes", "5", "--quiet"])
    assert bad.exit_code == 1 and "--url 'ftp://x:1' is not a botify address" in bad.output and "Traceback" not in bad.output
    both = runner.invoke(run_cli, ["--url", "127.0.0.1:9", "--port", "9", "--episodes", "5", "--quiet"])
    assert both.exit_code == 1 and "leave out --host and --port" in both.output
    down = runner.invoke(run_cli, ["--url", "http://127.0.0.1:9", "--url", "127.0.0.1:10", "--episodes", "5", "--quiet"])
    assert down.exit_code == 1 and "no botify service answers at http://127.0.0.1:9" in down.output


def test_a_listener_stays_on_one_replica_and_batches_are_split_in_order() -> None:
    from sim.run.clients import ReplicaClient

    class Echo:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def describe(self) -> None:
            return None

        def serve(self, items: Sequence[Item]) -> list[int | None]:
            self.seen.extend(item.user for item in items)
            return [item.track for item in items]

        def close(self) -> None:
            pass

    replicas = [Echo(), Echo(), Echo()]
    client = ReplicaClient(replicas)  # type: ignore[list-item]
    items = [Item("next", user, 100 + i, 1.0, user, None) for i, user in enumerate(list(range(60)) * 2)]
    assert client.serve(items) == [100 + i for i in range(120)]
    client.close()
    for index, replica in enumerate(replicas):
        assert replica.seen and all(client.replica_of(user) == index for user in replica.seen)
        assert replica.seen == [u for u in list(range(60)) * 2 if client.replica_of(u) == index]
