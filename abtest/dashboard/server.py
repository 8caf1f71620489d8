"""`abtest serve`: the dashboard under granian (the production WSGI server botify uses), loopback by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from abtest.cli.options import DEFAULT_LOG, user_errors

THREADS = 4  # threads per worker: a page and its polls; DuckDB parallelises each query itself


def run_granian(app: Any, host: str, port: int, workers: int) -> None:
    """Serve `app` with granian's WSGI interface until interrupted."""
    from granian.constants import Interfaces
    from granian.server import MPServer

    server = MPServer(
        target="abtest.dashboard.app:create_app",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=THREADS,
        log_access=False,
        respawn_failed_workers=True,
    )
    server.serve(target_loader=lambda _target: app)


@click.command()
@click.option("--log", "log_path", default=DEFAULT_LOG, show_default=True, help="Event log to show (opened read-only per request).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback: only this machine).")
@click.option("--port", type=click.IntRange(1, 65535), default=5002, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="granian worker processes.")
@click.option("--poll", type=click.FloatRange(min=0.5), default=5.0, show_default=True, help="Seconds between a page's refreshes.")
@click.option("--cache/--no-cache", default=True, show_default=True, help="Reuse a page's answer while the log's files are unchanged (--no-cache: compute every answer).")
@click.option("--artifacts", type=click.Path(exists=True, file_okay=False), default=None, help="Directory of trained models (recommenders train ... --out): adds the recommender and track pages.")
@click.option("--world", type=click.Path(exists=True, file_okay=False), default=None, help="World directory: the catalog of those pages (default: the world the log's service served) and each track's true tags.")
def serve(log_path: str, host: str, port: int, workers: int, poll: float, cache: bool, artifacts: str | None, world: str | None) -> None:
    """Serve the dashboard: experiments, metrics, effects and time series of the log, live while botify writes.

    Every page has a JSON twin (add .json to its URL). The log is checked before the server starts.
    With --artifacts, the recommender pages show the trained models, a track's neighbours by each
    model and its tag probabilities; with --world, its true tags too.
    """
    from abtest.dashboard.app import create_app
    from abtest.log import EventLog

    if not Path(log_path).exists() and not any(c in log_path for c in "*?["):
        raise click.ClickException(f"log {log_path!r} does not exist; pass --log PATH (the service's event log)")
    with user_errors():
        EventLog.open(log_path).close()
        try:
            app = create_app(
                {"LOG": log_path, "POLL_SECONDS": poll, "CACHE": cache, "ARTIFACTS": artifacts, "WORLD": world}
            )
        except ValueError as error:  # a page plugin's one-line complaint (no catalog, bad artifacts)
            raise click.ClickException(str(error)) from error
    click.echo(f"dashboard of {log_path} on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    run_granian(app, host, port, workers)
