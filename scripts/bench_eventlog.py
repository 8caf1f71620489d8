"""Benchmark of the event writer alone: CPU microseconds per event of writing ahead and sealing.

One `EventWriter` on a fresh log in a temporary directory, fed rows shaped like the service's
(`contracts.eventlog.writer.Row`): single `append` calls (the single endpoints' path) and
`extend` calls of --batch rows (the batch endpoint's), each followed by one `flush` that seals
them. CPU time of the whole process (`time.process_time`, the writer's thread included), the
best of --rounds, so that other jobs on a shared machine take less from the figures. Run it from
the checkout to measure with `PYTHONPATH=.` (another checkout's path measures that one).

    .venv/bin/python scripts/bench_eventlog.py
    PYTHONPATH=. .venv/bin/python scripts/bench_eventlog.py --rows 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from contracts.eventlog import EventWriter, init_log
from contracts.eventlog.writer import Row


def rows_of(n: int) -> list[Row]:
    """`n` events in the declared column order, as `botify.service` builds them."""
    return [
        (1_764_770_000_000_000 + i * 1000, i, None, "last" if i % 8 == 7 else "next", i % 3000, (i % 100) / 100,
         None if i % 8 == 7 else (i * 7) % 3000, "sticky_artist", 4.2e-05 + i * 1e-9, (i % 2,), None, None, None, None)
        for i in range(n)
    ]  # fmt: skip


def measure(rows: list[Row], batch: int, rounds: int) -> dict[str, float]:
    """Best-of-`rounds` CPU microseconds per row: append alone, append + seal, extend + seal."""
    best = {"append_us": float("inf"), "append_seal_us": float("inf"), "batch_seal_us": float("inf")}
    n = len(rows)
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as scratch:
            writer = EventWriter(init_log(Path(scratch) / "events.duckdb"), ["bench"], flush_window=3600.0, flush_events=10**9)
            writer.append(rows[0])  # the thread started and the first file open: not what is measured
            writer.flush()
            tick = time.process_time()
            for row in rows:
                writer.append(row)
            appended = time.process_time()
            writer.flush()
            sealed = time.process_time()
            for start in range(0, n, batch):
                writer.extend(rows[start : start + batch])
            writer.flush()
            batched = time.process_time()
            writer.close()
        best["append_us"] = min(best["append_us"], (appended - tick) / n * 1e6)
        best["append_seal_us"] = min(best["append_seal_us"], (sealed - tick) / n * 1e6)
        best["batch_seal_us"] = min(best["batch_seal_us"], (batched - sealed) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="events per round")
    parser.add_argument("--batch", type=int, default=1000, help="events per extend call")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.rows < 1 or args.batch < 1 or args.rounds < 1:
        parser.error(f"--rows, --batch and --rounds must be at least 1 (got {args.rows}, {args.batch}, {args.rounds})")
    load = os.getloadavg()[0]
    best = measure(rows_of(args.rows), args.batch, args.rounds)
    print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.rows:,} events, best of {args.rounds}")
    print("| path | CPU us/event |")
    print("|---|---|")
    print(f"| append (write ahead, buffer) | {best['append_us']:.2f} |")
    print(f"| append, then seal | {best['append_seal_us']:.2f} |")
    print(f"| extend of {args.batch}, then seal | {best['batch_seal_us']:.2f} |")


if __name__ == "__main__":
    main()
