"""The Flask application factory: config, catalog, recommenders, history and event log wired into one app."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask

from botify import errors, eventlog
from botify.config import ConfigError, ServiceConfig, config_from_mapping, load_config
from botify.experiments import build_experiments, describe, load_experiments
from botify.history import make_history, service_namespace
from botify.service import Service
from botify.validation import AsciiIntegerConverter
from botify.views import catalog, experiments, health, recommend
from contracts.catalog import Catalog, CatalogError
from contracts.eventlog.writer import world_row

logger = logging.getLogger(__name__)

__all__ = ["ConfigError", "create_app"]


def load_catalog(config: ServiceConfig) -> Catalog:
    """The served world's public catalog, or `ConfigError` saying how to make one."""
    try:
        return Catalog(config.world)
    except CatalogError as error:
        raise ConfigError(f"world: {error}") from None


def create_app(config: ServiceConfig | Mapping[str, Any] | None = None, *, started_us: int | None = None) -> Flask:
    """Build the service from `config`: a `ServiceConfig`, a mapping (validated here, as tests
    pass one), or None for `config/botify.yml` (or the defaults when it does not exist).

    Everything slow or fallible happens here, once: a missing world, experiments file,
    recommender, artifact or Redis raises `ConfigError` with a clear message. `started_us`
    identifies the start in the log's `experiments` and `worlds` tables (workers of one start share it).
    """
    if config is None:
        config = load_config()
    elif not isinstance(config, ServiceConfig):
        config = config_from_mapping(config)
    started = time.perf_counter()
    app = Flask(__name__)
    app.url_map.converters["int"] = AsciiIntegerConverter
    app.config.from_mapping(BOTIFY=config, MAX_CONTENT_LENGTH=max(config.limits.max_body, config.limits.max_batch_body))

    catalog_ = load_catalog(config)
    experiments_config = load_experiments(config.experiments)
    experiments_ = build_experiments(experiments_config, catalog_)
    namespace = service_namespace(catalog_.fingerprint, experiments_config.model_dump_json(), config.seed)
    history = make_history(config.history, namespace)
    history.check()
    writer = eventlog.init_app(
        app, config.log, config.eventlog, experiments_.names, describe(experiments_config), started_us, world_row(catalog_)
    )
    app.extensions["botify"] = Service(
        catalog=catalog_,
        experiments=experiments_,
        history=history,
        writer=writer,
        limits=config.limits,
        seed=config.seed,
        day_zero=config.day_zero,
    )

    app.register_blueprint(health.bp)
    app.register_blueprint(catalog.bp)
    app.register_blueprint(recommend.bp)
    app.register_blueprint(experiments.bp)
    errors.init_app(app)
    logger.info(
        "botify ready in %.2f s: %d tracks, serving experiment %r (%s), log %s",
        time.perf_counter() - started,
        catalog_.n_tracks,
        experiments_.names[experiments_.serving],
        ", ".join(experiments_.recommender_names),
        config.log,
    )
    return app
