"""The ground floor of Botify Lab: the contracts that `sim`, `botify`, `recommenders` and `abtest` share.

It imports none of them, and they read what they share only from here:

- `columns`: the event log's schema (tables, columns, DuckDB types, format version).
- `eventlog`: the log on disk: its layout, its one writer, its one reader (`open_log`), export.
- `catalog`: the world's public catalog format (`Catalog`, `world_fingerprint`).
- `config`: the strict config base, YAML reading, validation and its error wording.
- `seeds`: the seed of a request, shared by the service and in-process runs.
- `murmur`: MurmurHash3 of many byte strings at once, in numpy (a batch's request seeds).
- `assignment`: who gets which treatment of an experiment (MurmurHash3).
"""
