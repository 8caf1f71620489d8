"""The lab in a browser: a read-only, live web dashboard over the event log (`abtest serve`).

Submodules, one job each:

* `data`: the one data layer: experiments, metrics with directions, cumulative effects, time series.
* `app`: the Flask app factory and its thin views; every HTML page has a `.json` twin.
* `server`: `abtest serve`: the app under granian, loopback by default.
"""
