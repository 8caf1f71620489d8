"""Recommenders for Botify Lab: the plugin contract, the registry, the built-ins and their tools.

Submodules: `base` (the contract: `Request`, `Recommendation`, `Recommender`, `Trainable`),
`registry` (names -> classes, built-ins and `botify.recommenders` entry points), `dataset` (the event log as interactions), `builtin` (random,
sticky_artist, top_pop, indexed, i2i), `testing` (the contract kit for plugin authors), `cli`
(the `recommenders` command). The public catalog of a world is `contracts.catalog.Catalog`.
"""
