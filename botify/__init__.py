"""botify: the recommendation service of Botify Lab.

`create_app(config)` (in `app`) builds the Flask app: it validates the config, loads the world's public
catalog and every serving treatment's recommender once, opens the listen-history store and the
event log, and registers the blueprints. `botify serve` runs it under a production WSGI server.

Submodules: `app` (the factory), `config` (validated `config/botify.yml`), `experiments` (assignment and
treatments), `history` (listen history: memory or Redis), `validation` (request bodies),
`service` (serve items and log them), `eventlog` (the DuckDB log), `views` (blueprints),
`errors` (JSON errors), `server` (granian / gunicorn), `cli` (the `botify` command),
`columns` (the log's column contract).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botify.app import create_app
    from botify.config import ConfigError

__all__ = ["ConfigError", "create_app"]


def __getattr__(name: str) -> object:
    # Lazy, so that reading the log's column contract (`botify.columns`), as abtest and the
    # trainers do, does not import Flask, Redis and the service.
    if name == "create_app":
        from botify.app import create_app

        return create_app
    if name == "ConfigError":
        from botify.config import ConfigError

        return ConfigError
    raise AttributeError(f"module 'botify' has no attribute {name!r}")
