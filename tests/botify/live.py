"""Helpers for tests against the real service: start `botify serve` on loopback, drive it with
the course's exact payloads from a few keep-alive clients, read the log as analysis would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import urllib3

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]  # `python -m botify` from here runs this checkout
START_TIMEOUT = 60.0  # seconds; start-up takes about 2 s, more on a loaded machine


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Server:
    """`python -m botify serve ...` in its own process group, so a test can kill all of it."""

    def __init__(self, args: list[str], log_file: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_file = log_file
        self.env = env
        command = [sys.executable, "-m", "botify", "serve", "--host", HOST, "--port", str(self.port), *args]
        with open(log_file, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Poll `GET /` until it answers; returns the seconds it took."""
        http = urllib3.PoolManager(retries=False, timeout=1.0)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"botify serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if http.request("GET", self.url + "/").status == 200:
                    return time.monotonic() - started
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"botify serve did not answer within {timeout} s:\n{self.output()}")

    def signal(self, number: int) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, number)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a clean shutdown."""
        self.signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and workers): a crash."""
        self.signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()


@dataclass
class Sent:
    """What a client sent and what it got back."""

    message: str
    user: int
    track: int
    time: float
    session: int | None
    status: int
    answer: dict | None
    at: float  # time.monotonic() when the answer arrived

    def key(self) -> tuple:
        return (self.user, self.session, self.message, self.track, self.time)


@dataclass
class Load:
    """Several keep-alive clients playing sessions against a server until told to stop."""

    url: str
    clients: int = 4
    with_sessions: bool = False  # send `session` ids (the newer client) instead of none (the course's)
    session_length: int = 5
    duration: float = 1.0  # seconds, an upper bound
    user_base: int = 0
    sent: list[Sent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self

    def run(self) -> Load:
        self.start()
        self._stop.wait(self.duration)
        return self.stop()

    def ok(self) -> list[Sent]:
        return [sent for sent in self.sent if sent.status == 200]

    def _client(self, index: int) -> None:
        http = urllib3.PoolManager(maxsize=1, retries=False, timeout=5.0)  # one keep-alive connection
        try:
            self._play(index, http)
        finally:
            http.clear()

    def _play(self, index: int, http: urllib3.PoolManager) -> None:
        headers = {"Content-Type": "application/json"}
        deadline = time.monotonic() + self.duration
        session_number = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            session_number += 1
            user = self.user_base + index * 100_000 + session_number  # a fresh user per session
            session = (index + 1) * 1_000_000 + session_number if self.with_sessions else None
            track = (user * 7) % 1000
            for step in range(self.session_length + 1):
                message = "last" if step == self.session_length else "next"
                time_ = 1.0 if step == 0 else round(0.1 + 0.8 * ((user + step) % 10) / 10, 2)
                body: dict[str, object] = {"track": track, "time": time_}
                if session is not None:
                    body["session"] = session
                try:
                    response = http.request("POST", f"{self.url}/{message}/{user}", body=json.dumps(body), headers=headers)
                except urllib3.exceptions.HTTPError as error:
                    self.errors.append(f"{type(error).__name__}: {error}")
                    return
                answer = json.loads(response.data) if response.data else None
                self.sent.append(Sent(message, user, track, time_, session, response.status, answer, time.monotonic()))
                if response.status != 200:
                    return
                if message == "next":
                    track = answer["track"]
                if self._stop.is_set():
                    return


def logged(log: Path) -> Counter:
    """The events of LOG as a multiset of (user, session, message, track, time), read as analysis does."""
    connection = duckdb.connect(str(log), read_only=True)
    try:
        rows = connection.execute('SELECT "user", "session", message, track, "time" FROM events').fetchall()
    finally:
        connection.close()
    return Counter(rows)


def count_events(log: Path) -> int:
    connection = duckdb.connect(str(log), read_only=True)
    try:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        connection.close()
