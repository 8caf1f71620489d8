"""`botify serve`: run the app under a production WSGI server, granian (default) or gunicorn.

The app is built once in the main process (catalog, recommenders, log checks) and the workers
are forked from it, so start-up costs one load however many workers there are, and a broken
config fails before anything listens. Each worker seals its own event segments; at shutdown
(SIGINT or SIGTERM) every worker seals what it buffered before it exits.

Why granian: on loopback with keep-alive clients a bare Flask route answers about twice as
many requests per second under granian as under gunicorn's gthread workers (figures in
docs/botify.md, `scripts/bench_botify.py`). granian writes each response in one go; gunicorn
writes headers and body separately but sets TCP_NODELAY, so neither stalls keep-alive clients.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing.util
import socket
import time
from pathlib import Path
from typing import Any

import click
from flask import Flask

from botify import eventlog
from botify.app import create_app
from botify.config import ConfigError, ServiceConfig, load_config
from botify.front import FrontError, NginxFront
from contracts.eventlog import LogError, LogLayout
from contracts.eventlog.layout import file_lock

logger = logging.getLogger(__name__)


def _close_in_worker(app: Flask) -> None:
    # granian's workers are multiprocessing children, which leave through os._exit: atexit
    # handlers do not run there, multiprocessing finalizers do.
    multiprocessing.util.Finalize(app, eventlog.close_log, args=(app,), exitpriority=100)


def run_granian(app: Flask, config: ServiceConfig, uds: Path | None = None) -> None:
    """Serve `app` with granian's WSGI interface until interrupted, on the Unix socket `uds` when given."""
    from granian.constants import Interfaces
    from granian.server import MPServer

    def load(_target: str) -> Any:
        _close_in_worker(app)
        return app

    from granian.http import HTTP1Settings

    server = MPServer(
        target="botify.app:create_app",
        address=config.server.host,
        port=config.server.port,
        uds=uds,
        interface=Interfaces.WSGI,
        workers=config.server.workers,
        blocking_threads=config.server.threads,
        # A client that sends its headers slowly is cut off after this; a body read has no
        # timeout in granian, so a slow body holds one request thread (docs/botify.md).
        http1_settings=HTTP1Settings(header_read_timeout=int(config.server.header_timeout * 1000)),
        log_access=False,
        respawn_failed_workers=True,
    )
    server.serve(target_loader=load)


GUNICORN_GRACE = 10  # seconds gunicorn's main process waits for its workers at shutdown, then kills them
GUNICORN_SEAL_MARGIN = 3  # seconds of that a worker keeps for sealing its events after draining its connections


def _drain_within_the_grace(_arbiter: Any, worker: Any) -> None:
    """In a forked gunicorn worker: drain open connections at shutdown for less than the main
    process's grace, so that the worker's exit (which seals its events) is not cut by its SIGKILL.

    gunicorn's gthread worker waits for its open connections for `graceful_timeout` before it
    exits, and the main process kills it after the same time: a connection that stays open (or
    that gunicorn still counts) made a clean stop leave the worker's events to the next start's
    recovery instead of sealing them.
    """
    worker.cfg.set("graceful_timeout", GUNICORN_GRACE - GUNICORN_SEAL_MARGIN)  # this worker's copy only


def run_gunicorn(app: Flask, config: ServiceConfig, uds: Path | None = None) -> None:
    """Serve `app` with gunicorn's gthread workers (keep-alive capable) until interrupted, on the Unix socket `uds` when given."""
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": f"unix:{uds}" if uds is not None else f"{config.server.host}:{config.server.port}",
                "workers": config.server.workers,
                "worker_class": "gthread",
                "threads": config.server.threads,
                "keepalive": 5,
                "timeout": 60,
                "graceful_timeout": GUNICORN_GRACE,
                "post_fork": _drain_within_the_grace,
                "accesslog": None,
                "control_socket_disable": True,  # gunicorn 23+ would open a shared socket under $HOME
                "worker_exit": lambda _arbiter, _worker: eventlog.close_log(app),
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return app

    Application().run()


ENGINES = {"granian": run_granian, "gunicorn": run_gunicorn}


def check_port_free(host: str, port: int) -> None:
    """Raise `click.ClickException` naming the port when something listens on it already.

    granian binds with SO_REUSEPORT, so a second service on a busy port would otherwise start
    and share the traffic with the first. A bind without SO_REUSEPORT (SO_REUSEADDR only lets
    it pass over connections in TIME_WAIT) fails while anything listens there.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise click.ClickException(f"server.host {host!r} is not an address to listen on: {error.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise click.ClickException(f"port {port} on {host} is already in use (another botify serve?); choose another --port") from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None


@click.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Service config YAML (default: config/botify.yml when present, else built-in defaults).")
@click.option("--world", type=click.Path(path_type=Path), default=None, help="World directory whose public catalog is served (config: world; default data/world).")
@click.option("--experiments", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Experiments YAML: who gets which treatment and which recommender serves it (config: experiments).")
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Event log LOG, a DuckDB file; segments go next to it (config: log; default data/events.duckdb).")
@click.option("--host", default=None, help="Address to listen on (config: server.host; default 127.0.0.1, loopback only).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to listen on (config: server.port; default 5001).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes (config: server.workers; default 1). More than one needs --history redis.")
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="Request threads per worker; a slow client holds one (config: server.threads; default 8).")
@click.option("--front", type=click.Choice(["none", "nginx"]), default=None, help="nginx: nginx takes the clients (header and body timeouts, JSON refusals) and passes whole requests to the WSGI server on a private socket (config: server.front; default none). See docs/botify.md, \"Slow clients\".")
@click.option("--server", "engine", type=click.Choice(sorted(ENGINES)), default=None, help="WSGI server (config: server.engine; default granian, the faster on our figures).")
@click.option("--history", type=click.Choice(["memory", "redis"]), default=None, help="Listen-history store: memory (one worker) or redis (shared by all workers) (config: history.store).")
@click.option("--redis-url", default=None, help="Redis for --history redis (config: history.redis_url; default redis://127.0.0.1:6390/0, see scripts/redis.sh).")
@click.option("--flush-window", type=click.FloatRange(min=0.001, max=3600), default=None, help="Seconds between event-log seals per worker; answered events are written ahead first, so a killed worker loses none (config: eventlog.flush_window; default 1).")
def serve_command(
    config_path: Path | None,
    world: Path | None,
    experiments: Path | None,
    log: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    front: str | None,
    engine: str | None,
    history: str | None,
    redis_url: str | None,
    flush_window: float | None,
) -> None:
    """Run the recommendation service until interrupted (Ctrl-C or SIGTERM).

    Loads the world's catalog and every serving recommender once, then answers the HTTP API
    (docs/botify.md) and logs every served request to LOG. Options override the config file.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        config = load_config(
            config_path,
            world=world,
            experiments=experiments,
            log=log,
            **{
                "server.host": host,
                "server.port": port,
                "server.workers": workers,
                "server.threads": threads,
                "server.front": front,
                "server.engine": engine,
                "history.store": history,
                "history.redis_url": redis_url,
                "eventlog.flush_window": flush_window,
            },
        )
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    server = config.server
    check_port_free(server.host, server.port)  # before anything is loaded or recorded in the log
    try:
        app = create_app(config, started_us=time.time_ns() // 1000)
    except (ConfigError, LogError) as error:
        raise click.ClickException(str(error)) from None
    front_server = NginxFront(config) if server.front == "nginx" else None
    if front_server is not None:
        try:
            front_server.start()
        except FrontError as error:
            eventlog.close_log(app)
            raise click.ClickException(str(error)) from None
    click.echo(
        f"botify: serving {config.world} on http://{server.host}:{server.port} with {server.engine}"
        f"{' behind nginx' if front_server is not None else ''} "
        f"({server.workers} worker{'s' if server.workers > 1 else ''} of {server.threads} thread{'s' if server.threads > 1 else ''}, "
        f"history {config.history.store}), log {config.log}; ready in {time.perf_counter() - started:.1f} s",
        err=True,
    )
    # A shared lock for as long as any process of this service lives: `botify compact` waits for it.
    with file_lock(LogLayout.of(config.log).serving_lock, shared=True):
        try:
            ENGINES[server.engine](app, config, front_server.upstream if front_server is not None else None)
        finally:
            if front_server is not None:
                front_server.stop()
            eventlog.close_log(app)
