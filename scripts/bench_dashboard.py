"""Benchmark the dashboard's pages as a browser asks for them: `abtest serve` (granian, cache off)
in its own process, each page fetched over loopback, wall time per answer.

Targets: the experiment page of a 10^7-event log in under 2 s; pages of the demo's log
(`./scripts/demo.sh` writes data/demo/events.duckdb) in under 200 ms. Synthetic logs come from
`abtest.synthetic` (as in scripts/bench_abtest.py: about 10 tracks per session, 5 sessions per
user, 3 treatments) and are kept under --dir.

    .venv/bin/python scripts/bench_dashboard.py                          # 1e7 events and the demo's log
    .venv/bin/python scripts/bench_dashboard.py --sizes 1e5,1e6 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import urllib3

from abtest.synthetic import SyntheticExperiment, write_synthetic_log

EXPERIMENT = SyntheticExperiment("exp", effects=(0.0, 0.02, -0.01))
TARGET_LARGE_S = 2.0  # the experiment page of a 10^7-event log
TARGET_DEMO_S = 0.2  # every page of the demo's log
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Served:
    """`abtest serve --cache-ttl 0` on `log`, so that every request computes its page."""

    def __init__(self, log: Path) -> None:
        self.url = f"http://{HOST}:{free_port()}"
        command = [sys.executable, "-m", "abtest", "serve", "--log", str(log), "--port", self.url.rsplit(":", 1)[1], "--cache-ttl", "0"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.http = urllib3.PoolManager(retries=False, timeout=120.0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.http.request("GET", self.url + "/experiments.json", timeout=60.0).status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                time.sleep(0.2)
        self.close()
        raise SystemExit(f"abtest serve did not answer on {log}")

    def time(self, path: str, repeat: int) -> list[float]:
        """Wall seconds of `repeat` requests of `path` (after one untimed request that warms imports)."""
        self.http.request("GET", self.url + path)
        out = []
        for _ in range(repeat):
            start = time.perf_counter()
            response = self.http.request("GET", self.url + path)
            out.append(time.perf_counter() - start)
            if response.status != 200:
                raise SystemExit(f"{path}: HTTP {response.status}: {response.data[:300]!r}")
        return out

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)


def report(label: str, path: str, times: list[float], target: float) -> None:
    best, median = min(times), statistics.median(times)
    verdict = "within" if median < target else "OVER"
    print(f"{label:<28} {path:<48} best {best * 1000:8.1f} ms  median {median * 1000:8.1f} ms  ({verdict} {target * 1000:.0f} ms)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e7", help="synthetic log sizes in events, comma-separated ('' for none)")
    parser.add_argument("--dir", type=Path, default=Path("data/bench"), help="where synthetic logs are kept")
    parser.add_argument("--demo-log", type=Path, default=Path("data/demo/events.duckdb"), help="the demo's log (skipped if missing)")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per page")
    args = parser.parse_args()
    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)

    for size in [int(float(s)) for s in args.sizes.split(",") if s]:
        log = args.dir / f"events_{size:.0e}_session-id.duckdb".replace("+", "")
        if not log.exists():
            write_synthetic_log(log, size, [EXPERIMENT], seed=0, session_ids=True)
        served = Served(log)
        try:
            for path in ("/experiments/exp", "/experiments/exp.json", "/experiments"):
                report(f"{size:.0e} events", path, served.time(path, args.repeat), TARGET_LARGE_S)
        finally:
            served.close()

    if args.demo_log.exists():
        served = Served(args.demo_log)
        try:
            names = [e["name"] for e in served.http.request("GET", served.url + "/experiments.json").json()["experiments"]]
            paths = ["/experiments", *(f"/experiments/{name}" for name in names), *(f"/experiments/{name}.json" for name in names)]
            for path in paths:
                report("demo", path, served.time(path, args.repeat), TARGET_DEMO_S)
        finally:
            served.close()
    else:
        print(f"{args.demo_log} is missing: run ./scripts/demo.sh for the demo's figures", flush=True)


if __name__ == "__main__":
    main()
