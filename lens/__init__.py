"""Dashboard pages that look into trained recommenders and the world, for `abtest serve --artifacts DIR`.

`abtest` reads only the event log (its floor is `contracts`), so these pages live in their own
top-floor package, which may import `recommenders` (the models' public APIs) and, for the true
tags only, `sim` (the hidden world). They join the dashboard through the entry point group
`botify_lab.dashboard` (`pyproject.toml`): `abtest.dashboard.app` loads the group and never
imports this package by name.

Submodules, one job each:

* `data`: the pages' data layer: artifacts found, a track's neighbours per model, its tag probabilities.
* `pages`: the Flask blueprint (HTML pages and their `.json` twins) and `register(app)`.
"""
