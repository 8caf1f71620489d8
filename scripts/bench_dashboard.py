"""Benchmark the dashboard's pages as a browser asks for them: `abtest serve` in its own process,
each page fetched over loopback, wall time per answer.

Each page is timed twice: computed afresh on every request (`--no-cache`), and answered again
while the log is unchanged (the default cache, keyed by the log's files). With `--baseline REV`
the same pages are also timed on the code of git revision REV (exported to a temporary
directory), served at the same time and asked in turn with this checkout's, and the ratio of
the medians is printed.

Targets: the experiment page of a 10^7-event log in under 2 s; pages of the demo's log
(`./scripts/demo.sh` writes data/demo/events.duckdb) in under 200 ms. Synthetic logs come from
`abtest.synthetic` (as in scripts/bench_abtest.py: about 10 tracks per session, 5 sessions per
user, 3 treatments) and are kept under --dir.

    .venv/bin/python scripts/bench_dashboard.py                          # 1e7 events and the demo's log
    .venv/bin/python scripts/bench_dashboard.py --baseline main          # the same against branch main
    .venv/bin/python scripts/bench_dashboard.py --sizes 1e5,1e6 --repeat 3
    .venv/bin/python scripts/bench_dashboard.py --baseline main --segments 200   # also a log of 200 segments, growing
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import urllib3

from abtest.synthetic import SyntheticExperiment, release, write_synthetic_log, write_synthetic_segments

EXPERIMENT = SyntheticExperiment("exp", effects=(0.0, 0.02, -0.01))
TARGET_LARGE_S = 2.0  # the experiment page of a 10^7-event log
TARGET_DEMO_S = 0.2  # every page of the demo's log
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def group_cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group `group`
    (the server and its workers), read from /proc: on a shared machine the CPU a page costs is a
    steadier figure than its wall time, which waits on everyone else's jobs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


class Served:
    """`abtest serve` on `log`: with `cache` False every request computes its page; `code` is a
    directory of another revision's packages to serve instead of this checkout's."""

    def __init__(self, log: Path, *, cache: bool = False, code: Path | None = None) -> None:
        self.url = f"http://{HOST}:{free_port()}"
        env = dict(os.environ)
        if code is not None:
            env["PYTHONPATH"] = str(code)
        # `python -m` puts the working directory first on the path, before PYTHONPATH: the other
        # revision's server runs in its own directory, or it would import this checkout's packages.
        cwd = str(code) if code is not None else None
        command = [sys.executable, "-m", "abtest", "serve", "--log", str(log.absolute()), "--port", self.url.rsplit(":", 1)[1]]
        if not cache:
            options = subprocess.run([*command[:3], "serve", "--help"], env=env, cwd=cwd, capture_output=True, text=True, check=True).stdout
            command += ["--no-cache"] if "--no-cache" in options else ["--cache-ttl", "0"]  # older revisions: a TTL cache
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.http = urllib3.PoolManager(retries=False, timeout=120.0)
        self.cpu: list[float] = []  # CPU seconds of each timed request, server and workers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.http.request("GET", self.url + "/experiments.json", timeout=60.0).status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                time.sleep(0.2)
        self.close()
        raise SystemExit(f"abtest serve did not answer on {log}")

    def time(self, path: str, repeat: int, *, warm: bool = True) -> list[float]:
        """Wall seconds of `repeat` requests of `path` (after one untimed request that warms imports, if `warm`)."""
        if warm:
            self.http.request("GET", self.url + path)
        out = []
        for _ in range(repeat):
            cpu = group_cpu_seconds(self.process.pid)
            start = time.perf_counter()
            response = self.http.request("GET", self.url + path)
            out.append(time.perf_counter() - start)
            self.cpu.append(group_cpu_seconds(self.process.pid) - cpu)
            if response.status != 200:
                raise SystemExit(f"{path}: HTTP {response.status}: {response.data[:300]!r}")
        return out

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)


def report(
    label: str, path: str, times: list[float], target: float, baseline: list[float] | None = None,
    cpu: list[float] | None = None, baseline_cpu: list[float] | None = None,
) -> float:
    """Print one line of figures (wall time, and the server's CPU time when given); returns the median."""
    best, median = min(times), statistics.median(times)
    verdict = "within" if median < target else "OVER"
    ratio = f"  baseline median {statistics.median(baseline) * 1000:8.1f} ms, {statistics.median(baseline) / median:5.1f}x" if baseline else ""
    if cpu:
        ratio += f"  cpu median {statistics.median(cpu) * 1000:8.1f} ms"
    if cpu and baseline_cpu:
        ratio += f", baseline {statistics.median(baseline_cpu) * 1000:8.1f} ms"
    print(f"{label:<26} {path:<40} best {best * 1000:8.1f} ms  median {median * 1000:8.1f} ms  ({verdict} {target * 1000:.0f} ms){ratio}", flush=True)
    return median


def export(revision: str, into: Path) -> Path:
    """The packages of git `revision`, written under `into` (read by `Served(code=...)`); a
    directory (another git checkout, such as ../main) stands for the revision checked out there."""
    command = ["git", "-C", revision, "archive", "HEAD"] if Path(revision).is_dir() else ["git", "archive", revision]
    archive = subprocess.run(command, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def bench_log(log: Path, paths: list[str] | None, target: float, label: str, repeat: int, code: Path | None) -> None:
    """Time `paths` (None: the list page and every experiment's page and twin) on `log`: computed
    afresh, against the baseline `code` when given (both served at once and asked in turn, so
    that both sides see the same load), then from the cache of an unchanged log."""
    served = Served(log)
    baseline = Served(log, code=code) if code is not None else None
    try:
        paths = paths or page_paths(served)
        for path in paths:
            warm(served, baseline, path)
            times: list[float] = []
            before: list[float] = []
            for i in range(repeat):
                in_turn(served, baseline, path, i, times, before)
            report(f"{label}, computed", path, times, target, before or None, served.cpu, baseline.cpu if baseline else None)
    finally:
        close(served, baseline)
    served = Served(log, cache=True)
    try:
        for path in paths:
            report(f"{label}, unchanged log", path, served.time(path, repeat), target)
    finally:
        served.close()


def close(*sides: Served | None) -> None:
    """Stop each server that was started."""
    for side in sides:
        if side is not None:
            side.close()


def warm(served: Served, baseline: Served | None, path: str) -> None:
    """Ask each side for `path` once, untimed, then forget the CPU seconds counted so far."""
    for side in (served, baseline):
        if side is not None:
            side.time(path, 0)
            side.cpu.clear()


def in_turn(served: Served, baseline: Served | None, path: str, i: int, times: list[float], before: list[float]) -> None:
    """Time `path` once on each side, appending to `times` and `before`; the baseline goes first
    every other round: a server still freeing the memory of its last answer slows the next
    request, whoever serves it."""
    if baseline is not None and i % 2 == 0:
        before += baseline.time(path, 1, warm=False)
    times += served.time(path, 1, warm=False)
    if baseline is not None and i % 2 == 1:
        before += baseline.time(path, 1, warm=False)


def bench_growth(log: Path, held: list[Path], path: str, label: str, repeat: int, code: Path | None) -> None:
    """Time `path` on a log of segments right after each of `repeat` new segments is sealed (the page
    of a running simulation's log, refreshed), with the cache on: this checkout keeps the session
    groups of the segments it has read (`abtest.dashboard.increments`), the baseline `code` as it does."""
    served = Served(log, cache=True)
    baseline = Served(log, cache=True, code=code) if code is not None else None
    try:
        warm(served, baseline, path)  # the first answer groups every segment
        times: list[float] = []
        before: list[float] = []
        for i in range(min(repeat, len(held))):
            release(held[i], log)  # the segment and its summary, as the service seals them
            in_turn(served, baseline, path, i, times, before)
        report(f"{label}, new segment", path, times, TARGET_LARGE_S, before or None, served.cpu, baseline.cpu if baseline else None)
    finally:
        close(served, baseline)


def page_paths(served: Served) -> list[str]:
    names = [e["name"] for e in served.http.request("GET", served.url + "/experiments.json").json()["experiments"]]
    return ["/experiments", *(f"/experiments/{name}" for name in names), *(f"/experiments/{name}.json" for name in names)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e7", help="synthetic log sizes in events, comma-separated ('' for none)")
    parser.add_argument("--dir", type=Path, default=Path("data/bench"), help="where synthetic logs are kept")
    parser.add_argument("--demo-log", default="data/demo/events.duckdb", help="the demo's log (skipped if missing; '' to skip)")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per page")
    parser.add_argument("--baseline", default="", metavar="REV", help="also time the pages computed by git revision REV (e.g. main), or by the revision checked out in directory REV")
    parser.add_argument("--segments", type=int, default=0, metavar="N",
                        help="also write each size as a log of N segments (as botify writes one) and time its pages, afresh and as segments are sealed")
    args = parser.parse_args()
    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        code = export(args.baseline, Path(tmp)) if args.baseline else None
        for size in [int(float(s)) for s in args.sizes.split(",") if s]:
            log = args.dir / f"events_{size:.0e}_session-id.duckdb".replace("+", "")
            if not log.exists():
                write_synthetic_log(log, size, [EXPERIMENT], seed=0, session_ids=True)
            paths = ["/experiments/exp", "/experiments/exp.json", "/experiments"]
            bench_log(log, paths, TARGET_LARGE_S, f"{size:.0e} events", args.repeat, code)
            if args.segments:
                # Rewritten each run: the growth seals the held-back segments into the log.
                segmented = args.dir / f"segments_{size:.0e}".replace("+", "") / "events.duckdb"
                held = write_synthetic_segments(segmented, size, [EXPERIMENT], segments=args.segments, held_back=args.repeat, seed=0)
                label = f"{size:.0e} events, {args.segments - args.repeat} segments"
                bench_log(segmented, paths[:1], TARGET_LARGE_S, label, args.repeat, code)
                bench_growth(segmented, held, paths[0], label, args.repeat, code)
        if not args.demo_log:
            pass
        elif Path(args.demo_log).exists():
            bench_log(Path(args.demo_log), None, TARGET_DEMO_S, "demo", args.repeat, code)
        else:
            print(f"{args.demo_log} is missing: run ./scripts/demo.sh for the demo's figures", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
