"""Benchmark of the botify service on loopback: requests/s and latency of POST /next, the bare
Flask floor under the same WSGI server, start-up time and the batch endpoint's events/s.

For each WSGI server (granian, gunicorn) and worker count (1, 2; two workers share the
history through a private redis-server), it starts `botify serve` with one recommender in
every treatment (random, sticky_artist) and drives it with keep-alive clients at concurrency
1, 4 and 8: `wrk` (Debian's, with scripts/wrk_post.lua) and a Python client (threads over
http.client; client-bound, shown for comparison). Both play the course's sessions: seven
`/next` then one `/last`, a fresh user per session. Every run is bounded by --duration.

The issue's reference figures (same kind of machine, wrk at 4-8 connections): the course's
service does 1,300-1,400 requests/s in one process and 2,300 with two workers; targets are at
most 25% overhead over the bare route, p99 under 5 ms at concurrency 4, start-up in a few
seconds and a batch endpoint of at least 50,000 events/s.

Usage:
    .venv/bin/python scripts/bench_botify.py                 # everything, 3 s per point
    .venv/bin/python scripts/bench_botify.py --quick         # granian only, fewer points
    .venv/bin/python scripts/bench_botify.py --json out.json
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import yaml

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
WRK_SCRIPT = REPO / "scripts" / "wrk_post.lua"
COURSE_SINGLE = 1350.0  # requests/s of the course's service, one process (the figure)
COURSE_TWO = 2300.0  # the same with two gunicorn gevent workers
SESSION_LENGTH = 8  # requests per session: 7 x /next, then /last
TRACKS = 3000  # track ids drawn from 0..2999, valid in every world


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 120.0) -> float:
    """Seconds until `GET /` answers on `port`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=1)
            connection.request("GET", "/")
            if connection.getresponse().status in (200, 404):
                connection.close()
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"server on port {port} did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


# --- clients -------------------------------------------------------------------------------


def run_threads(client: Callable[[int], None], concurrency: int) -> float:
    """Run `client(0..concurrency-1)` in as many threads; the seconds until all have finished."""
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def python_client(port: int, concurrency: int, duration: float) -> dict[str, float]:
    """Threads with one keep-alive http.client connection each; returns req/s, p50, p99 (ms)."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    deadline = time.perf_counter() + duration

    def client(index: int) -> None:
        rng = np.random.default_rng(index)
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        headers = {"Content-Type": "application/json"}
        own = latencies[index]
        step, user = 0, 0
        while time.perf_counter() < deadline:
            if step == 0:
                user = int(rng.integers(10**7)) + index * 10**7
            step += 1
            message = "last" if step == SESSION_LENGTH else "next"
            body = b'{"track": %d, "time": %.2f}' % (rng.integers(TRACKS), 1.0 if step == 1 else rng.random())
            step %= SESSION_LENGTH
            tick = time.perf_counter()
            connection.request("POST", f"/{message}/{user}", body, headers)
            response = connection.getresponse()
            response.read()
            own.append(time.perf_counter() - tick)
            if response.status != 200:
                errors[index] += 1
        connection.close()

    elapsed = run_threads(client, concurrency)
    flat = np.concatenate([np.array(x) for x in latencies]) if any(latencies) else np.zeros(1)
    return {
        "rps": len(flat) / elapsed,
        "p50_ms": float(np.percentile(flat, 50) * 1e3),
        "p99_ms": float(np.percentile(flat, 99) * 1e3),
        "errors": float(sum(errors)),
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def wrk_client(port: int, concurrency: int, duration: float) -> dict[str, float]:
    """wrk with the Lua POST script; returns req/s, p50, p99 (ms)."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "-s", str(WRK_SCRIPT), "--latency", f"http://{HOST}:{port}"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"non-2xx: (\d+)", output)
    socket_errors = re.search(r"Socket errors: .*", output)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": _wrk_latency(output, "50"),
        "p99_ms": _wrk_latency(output, "99"),
        "errors": float(errors.group(1)) if errors else float("nan"),
        **({"socket_errors": socket_errors.group(0)} if socket_errors else {}),  # type: ignore[dict-item]
    }


def batch_bodies(rng: np.random.Generator, index: int, batch_size: int) -> list[bytes]:
    """The /batch bodies of one session's steps for `batch_size` users (client `index`'s), in order."""
    users = range(index * batch_size, (index + 1) * batch_size)
    bodies = []
    for step in range(SESSION_LENGTH):
        message = "last" if step == SESSION_LENGTH - 1 else "next"
        tracks, times = rng.integers(TRACKS, size=batch_size), rng.random(batch_size)
        requests = [
            {"message": message, "user": user, "track": int(track), "time": 1.0 if step == 0 else round(float(x), 2)}
            for user, track, x in zip(users, tracks, times, strict=True)
        ]
        bodies.append(orjson.dumps({"requests": requests}))
    return bodies


def batch_client(port: int, batch_size: int, duration: float, concurrency: int) -> dict[str, float]:
    """POST /batch with `batch_size` sessions in flight per client, one step of each per call;
    returns the events served per second."""
    rng = np.random.default_rng(0)
    all_bodies = [batch_bodies(rng, index, batch_size) for index in range(concurrency)]
    counts = [0] * concurrency
    deadline = time.perf_counter() + duration

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        step = 0
        while time.perf_counter() < deadline:
            connection.request("POST", "/batch", all_bodies[index][step % SESSION_LENGTH], {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            if response.status == 200:
                counts[index] += sum(1 for item in orjson.loads(data)["responses"] if "error" not in item)
            step += 1
        connection.close()

    elapsed = run_threads(client, concurrency)
    return {"events_per_s": sum(counts) / elapsed, "batch_size": float(batch_size)}


CLIENTS = {"wrk": wrk_client, "python": python_client}


# --- servers -------------------------------------------------------------------------------


def bare_app():
    """The floor: a bare Flask route that parses the JSON body and answers, nothing else."""
    from flask import Flask, jsonify, request

    app = Flask("bare")

    @app.post("/next/<int:user>")
    @app.post("/last/<int:user>")
    def answer(user: int):
        body = request.get_json(force=True)
        return jsonify(user=user, track=body["track"])

    return app


def serve_bare(engine: str, port: int, workers: int) -> None:
    """Run the bare app under exactly the settings `botify serve` uses (blocks)."""
    from botify.config import config_from_mapping
    from botify.server import ENGINES

    config = config_from_mapping({"server": {"engine": engine, "host": HOST, "port": port, "workers": workers}, "history": {"store": "redis"}})
    ENGINES[engine](bare_app(), config)


def _wsgi_call(app, path: str, body: bytes) -> bytes:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "5001",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
    }
    return b"".join(app.wsgi_app(environ, lambda _status, _headers: None))


CHUNK = 10 * SESSION_LENGTH  # requests per timed chunk of the in-process figure: whole sessions
BATCH_IN_PROCESS = 1000  # sessions per /batch call of the in-process batch figure


def _chunk_cpu(app, chunk: list[tuple[str, bytes]]) -> float:
    """CPU seconds of this process (`time.process_time`: other jobs on a shared machine take less
    from it than from wall time) to serve `chunk` with `app` called as WSGI."""
    tick = time.process_time()
    for path, body in chunk:
        _wsgi_call(app, path, body)
    return time.process_time() - tick


def in_process(world: Path, recommender: str, scratch: Path, duration: float) -> dict[str, float]:
    """The service's own work (recommender, history, logging) against the bare route, both
    called as WSGI apps in this process: no server and no client, so far less noise than over
    the network. Returns microseconds per request of each and the overhead in %.

    The two apps take turns chunk by chunk (`CHUNK` requests), for as many rounds as `duration`
    allows, and each chunk counts at its best round, so that a burst of load elsewhere hits
    both alike and a chunk hit by it in one round counts at another. Sealing is timed apart:
    the writer seals only when asked (after each round, in this thread), and the service's
    figure is its requests' best plus the seal's CPU per row at its best round. Then the service
    alone serves a session's steps of 1,000 users as /batch calls, sealing included: events per
    CPU second, best of 3, the batch endpoint's own ceiling without a server or a client."""
    from botify import eventlog
    from botify.app import create_app

    label = spec_slug(recommender)
    experiments = scratch / f"inproc-{label}.yml"
    experiments.write_text(experiment_yaml(recommender))
    log = scratch / f"inproc-{label}" / "events.duckdb"
    app = create_app({"world": str(world), "experiments": str(experiments), "log": str(log), "eventlog": {"flush_window": 3600.0}})
    writer = app.extensions["botify"].writer
    bare = bare_app()
    rng = np.random.default_rng(0)
    requests = []
    for i in range(2000):
        step = i % SESSION_LENGTH
        message = "last" if step == SESSION_LENGTH - 1 else "next"
        body = b'{"track": %d, "time": %.2f}' % (rng.integers(TRACKS), 1.0 if step == 0 else rng.random())
        requests.append((f"/{message}/{i // SESSION_LENGTH}", body))
    chunks = [requests[k : k + CHUNK] for k in range(0, len(requests), CHUNK)]
    bodies = batch_bodies(rng, 0, BATCH_IN_PROCESS)
    floor = [float("inf")] * len(chunks)
    service = [float("inf")] * len(chunks)
    seal = float("inf")
    try:
        deadline = time.perf_counter() + duration
        rounds = 0
        while rounds < 3 or time.perf_counter() < deadline:
            for k, chunk in enumerate(chunks):
                floor[k] = min(floor[k], _chunk_cpu(bare, chunk))
                service[k] = min(service[k], _chunk_cpu(app, chunk))
            pending = writer.pending()
            tick = time.process_time()
            writer.flush()
            seal = min(seal, (time.process_time() - tick) / pending)
            rounds += 1
        batch = float("inf")  # CPU seconds per event of /batch calls of 1,000 sessions' steps, sealing included
        for _ in range(3):
            tick = time.process_time()
            for body in bodies:
                _wsgi_call(app, "/batch", body)
            writer.flush()
            batch = min(batch, (time.process_time() - tick) / (len(bodies) * BATCH_IN_PROCESS))
    finally:
        eventlog.close_log(app)
    bare_us = sum(floor) / len(requests) * 1e6
    requests_us = sum(service) / len(requests) * 1e6
    service_us = requests_us + seal * 1e6
    return {
        "bare_us": bare_us, "service_us": service_us, "requests_us": requests_us, "seal_us": seal * 1e6,
        "rounds": float(rounds), "overhead_pct": (service_us / bare_us - 1) * 100, "batch_events_per_s": 1 / batch,
    }


def parse_spec(spec: str) -> tuple[str, str, dict[str, object]]:
    """("name", "artifact dir" or "", params) of a --recommenders item: "name", "name=artifact dir",
    either followed by ";key=value" serving parameters (e.g. "dssm=data/demo/artifacts/dssm;index=ivf")."""
    head, *pairs = spec.split(";")
    name, _, artifact = head.partition("=")
    params = {key: yaml.safe_load(value) for key, _, value in (pair.partition("=") for pair in pairs)}
    return name, artifact, params


def spec_label(spec: str) -> str:
    """How results name a --recommenders item: its registry name, with its parameters if any."""
    name, _, params = parse_spec(spec)
    return name + "".join(f"[{key}={value}]" for key, value in params.items())


def spec_slug(spec: str) -> str:
    """`spec_label` as a file name: no glob characters, which a log path may not hold."""
    return re.sub(r"[^\w.-]+", "-", spec_label(spec))


def experiment_yaml(recommender: str) -> str:
    """One serving experiment with `recommender` (a --recommenders item) in both treatments."""
    name, artifact, params = parse_spec(recommender)
    treatment = {"recommender": name, **({"artifact": str(Path(artifact).resolve())} if artifact else {}), **({"params": params} if params else {})}
    treatments = [treatment, json.loads(json.dumps(treatment))]  # two copies: plain YAML, no anchors
    return yaml.safe_dump({"experiments": [{"name": "bench", "serving": True, "treatments": treatments}]})


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is missing: run ./scripts/setup.sh")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while True:  # ready when it accepts a connection
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    return process, f"redis://{HOST}:{port}/0"


def measure(port: int, clients: list[str], levels: list[int], duration: float) -> list[dict]:
    rows = []
    for client in clients:
        for concurrency in levels:
            result = CLIENTS[client](port, concurrency, duration)
            rows.append({"client": client, "concurrency": concurrency, **result})
    return rows


def main() -> None:
    sys.path.insert(0, str(REPO))  # the in-process figure times this checkout's packages, not an installed copy's
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=REPO / "data" / "world", help="world directory (python -m sim.world --out data/world)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured point")
    parser.add_argument("--engines", default="granian,gunicorn")
    parser.add_argument("--recommenders", default="random,sticky_artist", help="comma-separated registry names; a trained one as name=artifact_dir (e.g. dssm=data/demo/artifacts/dssm), "
                        "serving parameters after semicolons (e.g. 'dssm=data/demo/artifacts/dssm;index=ivf')")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--clients", default="wrk,python")
    parser.add_argument("--threads", default="8", help="comma-separated request threads per worker (`botify serve --threads`) to measure the service at")
    parser.add_argument("--front", default="none", help="comma-separated `botify serve --front` values to measure the service at (none, nginx)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="granian only, wrk only, concurrency 1 and 4")
    parser.add_argument("--in-process", type=float, default=6.0, help="seconds per recommender of the in-process overhead figure (0: skip)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--serve-bare", nargs=3, metavar=("ENGINE", "PORT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        engine, port, workers = args.serve_bare
        serve_bare(engine, int(port), int(workers))
        return
    if args.quick:
        args.engines, args.clients, args.concurrency = "granian", "wrk", "1,4"
    if not (args.world / "public").is_dir():
        sys.exit(f"no world at {args.world}: generate one with `.venv/bin/python -m sim.world --out {args.world}`")
    clients = args.clients.split(",")
    if "wrk" in clients and shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk): skipping the wrk points, the Python client still runs", flush=True)
        clients = [c for c in clients if c != "wrk"] or ["python"]
    levels = [int(c) for c in args.concurrency.split(",")]
    results: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="bench_botify_"))
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    if args.in_process > 0:
        for recommender in args.recommenders.split(","):
            results.append({"target": spec_label(recommender), "client": "in-process", **in_process(args.world, recommender, scratch, args.in_process)})
            print(json.dumps(results[-1]), flush=True)
    redis_process, redis_url = start_redis(scratch)
    python = sys.executable
    try:
        for engine in args.engines.split(","):
            for workers in [int(w) for w in args.workers.split(",")]:
                port = free_port()
                process = start([python, __file__, "--serve-bare", engine, str(port), str(workers)], scratch / "bare.out")
                try:
                    wait_ready(port, process)
                    for row in measure(port, clients, levels, args.duration):
                        results.append({"engine": engine, "workers": workers, "target": "bare", **row})
                        print(json.dumps(results[-1]), flush=True)
                finally:
                    stop(process)
                points = [(spec, int(t), front) for spec in args.recommenders.split(",") for t in args.threads.split(",") for front in args.front.split(",")]
                for spec, threads, front in points:
                    recommender = spec_label(spec) if args.threads == "8" else f"{spec_label(spec)} threads={threads}"
                    recommender += f" front={front}" if front != "none" else ""
                    slug = spec_slug(spec)
                    experiments = scratch / f"{slug}.yml"
                    experiments.write_text(experiment_yaml(spec))
                    port = free_port()
                    log = scratch / f"{engine}-{workers}-{slug}" / "events.duckdb"
                    command = [python, "-m", "botify", "serve", "--world", str(args.world), "--experiments", str(experiments), "--log", str(log)]
                    command += ["--port", str(port), "--workers", str(workers), "--threads", str(threads), "--server", engine, "--front", front]
                    if workers > 1:
                        command += ["--history", "redis", "--redis-url", redis_url]
                    spawned = time.monotonic()
                    process = start(command, scratch / "botify.out")
                    try:
                        wait_ready(port, process)
                        startup = time.monotonic() - spawned  # process start to first answer
                        results.append({"engine": engine, "workers": workers, "target": recommender, "startup_s": startup})
                        print(json.dumps(results[-1]), flush=True)
                        for row in measure(port, clients, levels, args.duration):
                            results.append({"engine": engine, "workers": workers, "target": recommender, **row})
                            print(json.dumps(results[-1]), flush=True)
                        batch = batch_client(port, args.batch_size, args.duration, concurrency=workers)
                        results.append({"engine": engine, "workers": workers, "target": recommender, "client": "batch", **batch})
                        print(json.dumps(results[-1]), flush=True)
                    finally:
                        stop(process)
    finally:
        redis_process.terminate()
        redis_process.wait(10)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


def report(results: list[dict]) -> None:
    """Markdown tables: throughput and latency per point, overhead over the bare floor."""
    print(f"\nload average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    inproc = [r for r in results if r.get("client") == "in-process"]
    if inproc:
        print("\nIn process (WSGI calls, no server; each chunk of requests at its best of the rounds): the service's own work over the bare route")
        print("\n| recommender | rounds | bare route us/request | service us/request (requests + seal per row) | overhead (target <= 25%) | /batch events per CPU s |")
        print("|---|---|---|---|---|---|")
        for r in inproc:
            print(
                f"| {r['target']} | {r['rounds']:.0f} | {r['bare_us']:.0f} | {r['service_us']:.0f} ({r['requests_us']:.0f} + {r['seal_us']:.1f}) "
                f"| {r['overhead_pct']:+.0f}% | {r['batch_events_per_s']:,.0f} |"
            )
    floors = {(r["engine"], r["workers"], r["client"], r["concurrency"]): r["rps"] for r in results if r["target"] == "bare" and "rps" in r}
    print("\n| server | workers | target | client | conc | req/s | p50 ms | p99 ms | overhead vs bare | x course |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "rps" not in r:
            continue
        floor = floors.get((r["engine"], r["workers"], r["client"], r["concurrency"]))
        overhead = "" if r["target"] == "bare" or not floor else f"{(floor / r['rps'] - 1) * 100:+.0f}%"
        course = COURSE_SINGLE if r["workers"] == 1 else COURSE_TWO
        print(
            f"| {r['engine']} | {r['workers']} | {r['target']} | {r['client']} | {r['concurrency']} | {r['rps']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {overhead} | {r['rps'] / course:.1f} |"
        )
    print("\n| server | workers | recommender | start-up s | batch events/s |")
    print("|---|---|---|---|---|")
    for r in results:
        if "startup_s" in r:
            batch = next((b for b in results if b.get("client") == "batch" and b["engine"] == r["engine"] and b["workers"] == r["workers"] and b["target"] == r["target"]), None)
            print(f"| {r['engine']} | {r['workers']} | {r['target']} | {r['startup_s']:.2f} | {batch['events_per_s']:,.0f} |" if batch else "")


if __name__ == "__main__":
    main()
