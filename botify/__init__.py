"""botify: the recommendation service of Botify Lab.

`create_app(config)` (in `app`) builds the Flask app: it validates the config, loads the world's public
catalog and every serving treatment's recommender once, opens the listen-history store and the
event log, and registers the blueprints. `botify serve` runs it under a production WSGI server.

Submodules: `app` (the factory), `config` (validated `config/botify.yml`), `experiments` (assignment and
treatments), `history` (listen history: memory or Redis), `validation` (request bodies),
`service` (serve items and log them), `eventlog` (the DuckDB log), `views` (blueprints),
`errors` (JSON errors), `server` (granian / gunicorn), `export` (the export and compact
commands), `cli` (the `botify` command). What it shares with the other packages (the log's
schema, writer and reader, the catalog, config helpers, request seeds) lives in `contracts`.
"""
