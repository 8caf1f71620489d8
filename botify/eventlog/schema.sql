-- The event log's tables and column types. botify/columns.py (DUCKDB_TYPES and
-- EXPERIMENTS_DUCKDB_TYPES) must agree with this file; tests/botify/test_eventlog.py checks it.
--
-- The rows live in Parquet segments next to LOG (see botify/eventlog/layout.py): this file is
-- run in an in-memory DuckDB to derive the segments' Arrow schema, and LOG holds views of the
-- same names over the segments. Changing a column is a migration, not an edit.

-- One row per served request.
CREATE TABLE events (
    ts TIMESTAMP,                         -- when it was served, UTC (the client's `ts` when sent)
    "user" BIGINT,
    "session" BIGINT,                     -- the client's session id, NULL when not sent
    message VARCHAR,                      -- 'next' or 'last'
    track BIGINT,                         -- the track just played
    "time" DOUBLE,                        -- fraction of `track` listened, 0..1
    recommendation BIGINT,                -- NULL for 'last'
    recommender VARCHAR,                  -- registry name of the serving treatment's recommender
    latency DOUBLE,                       -- seconds spent serving
    experiments MAP(VARCHAR, INTEGER),    -- experiment name -> treatment index, every active one
    propensity DOUBLE                     -- probability of `recommendation`, NULL when unknown
);

-- One row per (experiment, treatment), written at every service start.
CREATE TABLE experiments (
    experiment VARCHAR,
    treatment INTEGER,                    -- 0 is the control "C", i is "T{i}"
    recommender VARCHAR,
    serving BOOLEAN,                      -- true for the experiment that decides who serves
    started TIMESTAMP                     -- when that service started, UTC
);

-- One row per service start: the world it served (its catalog's fingerprint), so that
-- training can tell a log of another world.
CREATE TABLE worlds (
    started TIMESTAMP,                    -- when that service started, UTC (as in experiments)
    fingerprint VARCHAR,                  -- the world's catalog fingerprint
    path VARCHAR,                         -- the world directory the service read
    tracks BIGINT                         -- tracks in its catalog
);
