"""Benchmark `abtest report` end to end on synthetic logs of 10^5, 10^6 and 10^7 events.

Each log is generated once inside DuckDB (`abtest.synthetic`: about 10 tracks per session,
5 sessions per user, 3 treatments) and kept under --dir. The report runs as its own process,
as a user runs it, so the figures include Python start-up and imports; wall time, CPU time and
peak memory (max RSS) come from that process's rusage. "analysis alone" is the same analysis in
this process with everything imported: the DuckDB query plus the statistics.

The baseline is the course's way: load the events into pandas, sort them, walk them row by row
(`iterrows`) closing a session at each 'last', then average per user and per arm. The script
measures that on the first --baseline-rows events (in user order) of the 10^5 log, on this
machine, and states every speed-up against the measured rate (the course quoted about 10,000
events/s). The target is 1000x the baseline: 10^7 events in under 5 s.

    .venv/bin/python scripts/bench_abtest.py                     # 1e5, 1e6, 1e7 with session ids
    .venv/bin/python scripts/bench_abtest.py --course            # also logs without session ids
    .venv/bin/python scripts/bench_abtest.py --sizes 1e5 --repeat 1 --baseline-rows 0   # no baseline
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import mmh3
import numpy as np
import pandas as pd

from abtest import EventLog, Experiment
from abtest.hashing import aa_salts, iter_resalted_buckets
from abtest.synthetic import SyntheticExperiment, write_synthetic_log

COURSE_ROWS_PER_S = 10_000  # the course's pandas sessionizer, as quoted; the script measures its own
TARGET_S = 5.0  # for 10^7 events
EXPERIMENT = SyntheticExperiment("exp", effects=(0.0, 0.02, -0.01))


def run_report(log: Path) -> dict[str, float]:
    """Run `abtest report` on `log` in a child process: its wall time, CPU time and peak RSS (os.wait4)."""
    command = [sys.executable, "-m", "abtest", "report", "--log", str(log), "--format", "json"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    err = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"abtest report failed on {log}: {err}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def course_sessionizer(events: pd.DataFrame) -> pd.DataFrame:
    """The course's analysis: a row-by-row pass that closes sessions at 'last', then per-user and per-arm means."""
    events = events.sort_values(["user", "ts"], kind="stable")
    open_sessions: dict[int, dict[str, float]] = {}
    sessions = []
    for _, row in events.iterrows():
        current = open_sessions.setdefault(row["user"], {"time": 0.0, "tracks": 0, "latency": 0.0})
        current["time"] += row["time"]
        current["tracks"] += 1
        current["latency"] += row["latency"]
        if row["message"] == "last":
            sessions.append({"user": row["user"], "arm": row["arm"], **open_sessions.pop(row["user"])})
    frame = pd.DataFrame(sessions)
    frame["mean_latency"] = frame["latency"] / frame["tracks"]
    users = frame.groupby("user").agg(
        arm=("arm", "min"), time=("time", "sum"), sessions=("time", "size"), tracks=("tracks", "sum"),
        mean_request_latency=("mean_latency", "mean"),
    )
    users["mean_time_per_session"] = users["time"] / users["sessions"]
    users["mean_tracks_per_session"] = users["tracks"] / users["sessions"]
    return users.groupby("arm").mean()


def baseline_rows_per_s(log: Path, rows: int) -> dict[str, float]:
    """Events/s of `course_sessionizer` on the first `rows` events of `log` in (user, ts) order (loading excluded)."""
    with duckdb.connect(str(log), read_only=True) as con:
        events = con.execute(
            'SELECT "user", ts, message, time, latency, experiments[\'exp\'] AS arm FROM events '
            'ORDER BY "user", ts LIMIT ?',
            [rows],
        ).df()
    start = time.perf_counter()
    course_sessionizer(events)
    seconds = time.perf_counter() - start
    return {"rows": len(events), "seconds": seconds, "rows_per_s": len(events) / seconds}


def analysis_seconds(log: Path, repeat: int) -> float:
    """Best wall time of the analysis alone (DuckDB query and statistics), with every module already imported."""
    best = float("inf")
    with EventLog.open(log) as opened:
        Experiment().analyze(opened)  # imports and warms the caches once
        for _ in range(repeat):
            start = time.perf_counter()
            Experiment().analyze(opened)
            best = min(best, time.perf_counter() - start)
    return best


def log_size(log: Path) -> tuple[int, int]:
    with duckdb.connect(str(log), read_only=True) as con:
        events, users = con.execute('SELECT count(*), count(DISTINCT "user") FROM events').fetchone()
    return int(events), int(users)


def bench_hashing(users: int = 100_000, salts: int = 100) -> dict[str, float]:
    """ns per key: vectorised re-salted MurmurHash3 against mmh3 called in a Python loop."""
    ids = np.arange(users) * 7919 + 10_000
    names = aa_salts("exp", salts)
    start = time.perf_counter()
    for _ in iter_resalted_buckets(names, ids, 2):
        pass
    vectorised = (time.perf_counter() - start) / (users * salts) * 1e9
    start = time.perf_counter()
    salt = names[0]
    for user in ids.tolist():
        mmh3.hash(f"{salt}:{user}", signed=False) % 2
    loop = (time.perf_counter() - start) / users * 1e9
    return {"vectorised_ns_per_key": vectorised, "mmh3_loop_ns_per_key": loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="comma-separated event counts")
    parser.add_argument("--dir", type=Path, default=Path("data/bench_abtest"), help="where the logs are kept")
    parser.add_argument("--repeat", type=int, default=3, help="report runs per log (best and median are shown)")
    parser.add_argument("--course", action="store_true", help="also logs without session ids (closed by 'last')")
    parser.add_argument("--regenerate", action="store_true", help="generate the logs even if they exist")
    parser.add_argument(
        "--baseline-rows", type=int, default=50_000, help="events for the measured course baseline (0: skip it)"
    )
    args = parser.parse_args()

    baseline = None
    if args.baseline_rows > 0:
        base_log = args.dir / "events_1e05_session-id.duckdb"
        if args.regenerate or not base_log.exists():
            write_synthetic_log(base_log, 100_000, [EXPERIMENT], seed=0, session_ids=True)
        baseline = baseline_rows_per_s(base_log, args.baseline_rows)
        print(
            f"baseline: course-style pandas row-by-row sessionizer {baseline['rows_per_s']:,.0f} events/s "
            f"({baseline['rows']:,d} events in {baseline['seconds']:.2f} s)",
            flush=True,
        )
    reference = baseline["rows_per_s"] if baseline else COURSE_ROWS_PER_S

    sizes = [int(float(s)) for s in args.sizes.split(",")]
    variants = [("session-id", True)] + ([("course", False)] if args.course else [])
    results = []
    for events in sizes:
        for variant, session_ids in variants:
            log = args.dir / f"events_{events:.0e}_{variant}.duckdb".replace("+", "")
            generation = None
            if args.regenerate or not log.exists():
                start = time.perf_counter()
                write_synthetic_log(log, events, [EXPERIMENT], seed=0, session_ids=session_ids)
                generation = time.perf_counter() - start
            n_events, n_users = log_size(log)
            runs = [run_report(log) for _ in range(args.repeat)]
            walls = [r["wall_s"] for r in runs]
            best = min(walls)
            analysis = analysis_seconds(log, args.repeat)
            row = {
                "variant": variant,
                "events": n_events,
                "users": n_users,
                "generate_s": generation,
                "report_wall_best_s": best,
                "report_wall_median_s": statistics.median(walls),
                "report_cpu_s": min(r["cpu_s"] for r in runs),
                "analysis_only_s": analysis,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "events_per_s": n_events / best,
                "speedup_vs_course": n_events / best / reference,
                "analysis_speedup_vs_course": n_events / analysis / reference,
            }
            results.append(row)
            gen = f"{generation:6.1f}s" if generation is not None else "  kept"
            print(
                f"{variant:10s} {n_events:>10,d} events {n_users:>8,d} users  gen {gen}  "
                f"report best {best:5.2f}s median {row['report_wall_median_s']:5.2f}s cpu {row['report_cpu_s']:5.2f}s "
                f"(analysis alone {analysis:5.2f}s)  "
                f"peak {row['peak_rss_mb']:6.0f} MB  {row['events_per_s']:>12,.0f} events/s  "
                f"x{row['speedup_vs_course']:,.0f} vs {'measured' if baseline else 'quoted'} course "
                f"(analysis alone x{row['analysis_speedup_vs_course']:,.0f})",
                flush=True,
            )
    hashing = bench_hashing()
    print(
        f"A/A re-salting: vectorised MurmurHash3 {hashing['vectorised_ns_per_key']:.1f} ns/key, "
        f"mmh3 in a Python loop {hashing['mmh3_loop_ns_per_key']:.0f} ns/key"
    )
    biggest = max(results, key=lambda r: r["events"])
    if biggest["events"] >= 9_000_000:
        for row in results:
            if row["events"] == biggest["events"]:
                verdict = "meets" if row["report_wall_best_s"] < TARGET_S else "misses"
                print(
                    f"target: 10^7 events in < {TARGET_S:g} s ({row['variant']}): {verdict} "
                    f"({row['report_wall_best_s']:.2f} s, x{row['speedup_vs_course']:,.0f} the baseline; "
                    f"analysis alone {row['analysis_only_s']:.2f} s, x{row['analysis_speedup_vs_course']:,.0f})"
                )
    args.dir.mkdir(parents=True, exist_ok=True)
    out = args.dir / "bench_abtest.json"
    out.write_text(json.dumps({"baseline": baseline, "reports": results, "hashing": hashing}, indent=2))
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
